"""Pruning schedules beyond TF-MOT's `ConstantSparsity` and `PolynomialDecay`.

A schedule is TF-MOT's protocol: `schedule(step) -> (should_prune, sparsity)`.
"""
from keras_signflip import arguments
from keras_signflip.tf_keras._compat import keras, tf, tfmot

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
    self.fraction = arguments.check_number("fraction", fraction, 0, 1, False, False)
    self.max_sparsity = arguments.check_number("max_sparsity", max_sparsity, 0, 1, False, False)
    self.frequency = arguments.check_integer("frequency", frequency, minimum=1)
    self.begin_step = arguments.check_integer("begin_step", begin_step, minimum=0)
    self.end_step = arguments.check_integer("end_step", end_step, minimum=begin_step,
                                            allowed=(-1,))

  def __call__(self, step):
    step = tf.cast(step, tf.int64)
    # Pruning steps j = 0, 1, ... at begin + j * frequency that are >= 1.
    first_j = max(-(-(1 - self.begin_step) // self.frequency), 0)
    last_j = tf.math.floordiv(step - self.begin_step, self.frequency)
    if self.end_step >= 0:
      last_j = tf.math.minimum(last_j, (self.end_step - self.begin_step) // self.frequency)
    events = tf.math.maximum(last_j - first_j + 1, 0)
    sparsity = 1.0 - tf.math.pow(1.0 - self.fraction, tf.cast(events, tf.float32))
    sparsity = tf.math.minimum(sparsity, self.max_sparsity)
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


@keras.utils.register_keras_serializable(package="keras_signflip")
class ScaledSparsity(PruningSchedule):
  """Another schedule's steps, its sparsity times `factor`: one layer's share of a
  model-wide schedule under a sparsity distribution (`distributions`).

  `schedule(step) = (should_prune, factor * sparsity)`; a layer whose final
  sparsity is s_l under a model-wide target s gets factor = s_l / s.
  """

  def __init__(self, schedule, factor):
    self.schedule = get(schedule)
    factor = arguments.check_number("factor", factor, low=0, low_inclusive=False)
    top = max_sparsity(self.schedule)
    if top is not None and factor * top >= 1.0:
      raise ValueError(f"factor={factor} would take the schedule's {top} to {factor * top}, "
                       "not below 1.")
    self.factor = float(factor)

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
  name = config.get("class_name")
  if name not in _SCHEDULES:
    raise ValueError(f"Unknown pruning schedule {name!r}. Expected one of "
                     f"{sorted(_SCHEDULES)}.")
  return _SCHEDULES[name].from_config(config["config"])


def max_sparsity(schedule):
  """The largest sparsity a built-in schedule can ask for, or None if unknown."""
  if isinstance(schedule, GeometricSparsity):
    return schedule.max_sparsity
  if isinstance(schedule, ScaledSparsity):
    top = max_sparsity(schedule.schedule)
    return None if top is None else top * schedule.factor
  for attr in ("target_sparsity", "final_sparsity"):
    if hasattr(schedule, attr):
      return float(getattr(schedule, attr))
  return None
