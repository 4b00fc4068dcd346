"""Pruning schedules beyond TF-MOT's `ConstantSparsity` and `PolynomialDecay`.

A schedule is TF-MOT's protocol: `schedule(step) -> (should_prune, sparsity)`,
evaluated in the graph. The arithmetic and checks are
`keras_signflip.sparsity_schedules`', shared with the Keras 3 family.
"""
from keras_signflip import sparsity_schedules
from keras_signflip.tf_keras._framework import keras, tf, tfmot, xp

__all__ = ["GeometricSparsity", "ScaledSparsity", "get"]

PruningSchedule = tfmot.sparsity.keras.PruningSchedule


@keras.utils.register_keras_serializable(package="keras_signflip")
class GeometricSparsity(PruningSchedule):
  """Prune a fixed fraction of the remaining weights every `frequency` steps.

  At the m-th pruning step (m = 1, 2, ...) the target sparsity is
  `min(1 - (1 - fraction) ** m, max_sparsity)`: the FlipOut rhythm (50% of
  the remaining weights every few epochs) and the lottery-ticket one (20% a
  round). Pruning steps are `begin_step + j * frequency`, j >= 0, up to
  `end_step` (-1: no end). Training steps count from 1 (TF-MOT's
  `pruning_step`), so with `begin_step=0` the first pruning step is
  `frequency`.

  Args:
    fraction: fraction of the remaining weights pruned each time, in (0, 1).
    frequency: steps between pruning events, an integer >= 1.
    begin_step: first pruning step, an integer >= 0. Defaults to 0.
    end_step: last step at which pruning may happen (an integer >= begin_step),
      or -1 for none. Defaults to -1.
    max_sparsity: cap on the sparsity, in (0, 1). Defaults to 0.999.

  Example:
    >>> schedule = GeometricSparsity(0.5, frequency=1000)
    >>> # step 0 -> 50%, step 1000 -> 75%, step 2000 -> 87.5%, ...
  """

  def __init__(self, fraction, frequency, begin_step=0, end_step=-1,
               max_sparsity=0.999):
    (self.fraction, self.frequency, self.begin_step, self.end_step,
     self.max_sparsity) = sparsity_schedules.check_geometric(
         fraction, frequency, begin_step, end_step, max_sparsity)

  def __call__(self, step):
    step = tf.cast(step, tf.int64)
    sparsity = sparsity_schedules.geometric_sparsity(
        step, self.fraction, self.frequency, self.begin_step, self.end_step,
        self.max_sparsity, xp)
    should_prune = self._should_prune_in_step(
        step, self.begin_step, self.end_step, self.frequency)
    return should_prune, sparsity

  def get_config(self):
    return {"class_name": type(self).__name__, "config": {
        "fraction": self.fraction, "frequency": self.frequency,
        "begin_step": self.begin_step, "end_step": self.end_step,
        "max_sparsity": self.max_sparsity}}

  @classmethod
  def from_config(cls, config):
    return cls(**config.get("config", config))


# Deliberately parallel to keras3/schedules.py's: the arguments are checked once
# (`sparsity_schedules.check_factor`); evaluation is this family's (graph or host).
@keras.utils.register_keras_serializable(package="keras_signflip")
class ScaledSparsity(PruningSchedule):
  """Another schedule's steps, its sparsity times `factor`: one layer's share of a
  model-wide schedule under a sparsity distribution (`distributions`).

  `schedule(step) = (should_prune, factor * sparsity)`; a layer whose final
  sparsity is s_l under a model-wide target s gets factor = s_l / s.
  """

  def __init__(self, schedule, factor):
    self.schedule = get(schedule)
    self.factor = sparsity_schedules.check_factor(self.schedule, factor)

  def __call__(self, step):
    should_prune, sparsity = self.schedule(step)
    return should_prune, sparsity * self.factor

  def get_config(self):
    return {"class_name": type(self).__name__, "config": {
        "schedule": self.schedule.get_config(), "factor": self.factor}}

  @classmethod
  def from_config(cls, config):
    return cls(**config.get("config", config))


_SCHEDULES = {
    "ConstantSparsity": tfmot.sparsity.keras.ConstantSparsity,
    "PolynomialDecay": tfmot.sparsity.keras.PolynomialDecay,
    "GeometricSparsity": GeometricSparsity,
    "ScaledSparsity": ScaledSparsity,
}


def get(config):
  """Rebuilds a schedule from `schedule.get_config()` (TF-MOT's shape)."""
  if isinstance(config, PruningSchedule):
    return config
  name = config.get("class_name") if isinstance(config, dict) else None
  if name not in _SCHEDULES:
    raise sparsity_schedules.unknown_schedule(config, _SCHEDULES, "a TF-MOT PruningSchedule "
                                              "or the config of one")
  return _SCHEDULES[name].from_config(config["config"])


max_sparsity = sparsity_schedules.max_sparsity
