"""TF-MOT's pruning schedules, in plain Python, for the Keras 3 family.

Same protocol, arguments and float32 arithmetic as
`tfmot.sparsity.keras.ConstantSparsity` / `PolynomialDecay` and
`keras_signflip.tf_keras.schedules.GeometricSparsity`, but evaluated on the host with
NumPy: the Keras 3 family updates masks outside the compiled train step, so a
schedule is `schedule(step: int) -> (should_prune: bool, sparsity: np.float32)`
and needs neither TensorFlow nor TF-MOT. `get` also accepts the configs of
TF-MOT's schedules, so a TF-MOT schedule object or config carries over.
Validation is TF-MOT's, plus types (steps are integers, never bools or
floats) and finiteness (`power`, `factor`), through `keras_signflip.arguments`.
"""
import numpy as np

from keras_signflip import arguments
from keras_signflip import array_namespace
from keras_signflip import sparsity_schedules

__all__ = ["PruningSchedule", "ConstantSparsity", "PolynomialDecay",
           "GeometricSparsity", "ScaledSparsity", "get"]

_F = np.float32


class PruningSchedule:
  """Base: `__call__(step) -> (bool, np.float32)`, `get_config`, `from_config`."""

  @staticmethod
  def _should_prune_in_step(step, begin_step, end_step, frequency):
    """begin <= step (<= end unless end == -1) and (step - begin) % frequency == 0."""
    in_range = step >= begin_step and (step <= end_step or end_step < 0)
    return bool(in_range and (step - begin_step) % frequency == 0)

  @staticmethod
  def _validate_step(begin_step, end_step, frequency, allow_negative_1):
    arguments.check_integer("begin_step", begin_step, minimum=0)
    arguments.check_integer("frequency", frequency, minimum=1)
    if end_step == -1 and not allow_negative_1 and type(end_step) is int:
      raise ValueError("Received an invalid value for `end_step`, expected an integer >= "
                       f"begin_step ({begin_step}): this schedule needs an end. "
                       f"Received: end_step={end_step!r}")
    arguments.check_integer("end_step", end_step, minimum=begin_step,
                            allowed=(-1,) if allow_negative_1 else ())

  @staticmethod
  def _validate_sparsity(value, name):
    arguments.check_sparsity(value, name)
    return value if type(value) in (int, float) else float(value)

  def __call__(self, step):
    raise NotImplementedError

  def _config(self):
    raise NotImplementedError

  def get_config(self):
    return {"class_name": type(self).__name__, "config": self._config()}

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def __eq__(self, other):
    return type(self) is type(other) and self._config() == other._config()

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
    return f"{type(self).__name__}({args})"


class ConstantSparsity(PruningSchedule):
  """`target_sparsity` every `frequency` steps in [begin_step, end_step]."""

  def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
    self._validate_step(begin_step, end_step, frequency, True)
    target_sparsity = self._validate_sparsity(target_sparsity, "target_sparsity")
    self.target_sparsity, self.begin_step = target_sparsity, begin_step
    self.end_step, self.frequency = end_step, frequency

  def __call__(self, step):
    return (self._should_prune_in_step(int(step), self.begin_step, self.end_step,
                                       self.frequency), _F(self.target_sparsity))

  def _config(self):
    return {"target_sparsity": self.target_sparsity, "begin_step": self.begin_step,
            "end_step": self.end_step, "frequency": self.frequency}


class PolynomialDecay(PruningSchedule):
  """final + (initial - final) * (1 - p)**power, p = clip((step - begin) / (end - begin), 0, 1)."""

  def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step,
               power=3, frequency=100):
    self._validate_step(begin_step, end_step, frequency, False)
    initial_sparsity = self._validate_sparsity(initial_sparsity, "initial_sparsity")
    final_sparsity = self._validate_sparsity(final_sparsity, "final_sparsity")
    # TF-MOT leaves `power` unchecked; NaN, Inf or <= 0 gives no decay to speak of.
    arguments.check_number("power", power, low=0, low_inclusive=False)
    self.initial_sparsity, self.final_sparsity = initial_sparsity, final_sparsity
    self.begin_step, self.end_step = begin_step, end_step
    self.power, self.frequency = power, frequency

  def __call__(self, step):
    step = int(step)
    # float32 throughout, in TF-MOT's order of operations.
    p = _F(step - self.begin_step) / _F(self.end_step - self.begin_step)
    p = np.minimum(_F(1.0), np.maximum(_F(0.0), p))
    sparsity = (_F(self.initial_sparsity - self.final_sparsity)
                * np.power(_F(1.0) - p, _F(self.power)) + _F(self.final_sparsity))
    return (self._should_prune_in_step(step, self.begin_step, self.end_step,
                                       self.frequency), _F(sparsity))

  def _config(self):
    return {"initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity, "begin_step": self.begin_step,
            "end_step": self.end_step, "power": self.power, "frequency": self.frequency}


class GeometricSparsity(PruningSchedule):
  """min(1 - (1 - fraction)**m, max_sparsity) at the m-th pruning step.

  The same schedule as `keras_signflip.tf_keras.schedules.GeometricSparsity` (see its
  docstring); pruning steps are begin_step + j * frequency >= 1.
  """

  def __init__(self, fraction, frequency, begin_step=0, end_step=-1, max_sparsity=0.999):
    (self.fraction, self.frequency, self.begin_step, self.end_step,
     self.max_sparsity) = sparsity_schedules.check_geometric(
         fraction, frequency, begin_step, end_step, max_sparsity)

  def __call__(self, step):
    step = int(step)
    sparsity = sparsity_schedules.geometric_sparsity(
        step, self.fraction, self.frequency, self.begin_step, self.end_step,
        self.max_sparsity, array_namespace.NUMPY)
    return (self._should_prune_in_step(step, self.begin_step, self.end_step,
                                       self.frequency), _F(sparsity))

  def _config(self):
    return {"fraction": self.fraction, "frequency": self.frequency,
            "begin_step": self.begin_step, "end_step": self.end_step,
            "max_sparsity": self.max_sparsity}


# Deliberately parallel to tf_keras/schedules.py's: the arguments are checked once
# (`sparsity_schedules.check_factor`); evaluation is this family's (host or graph).
class ScaledSparsity(PruningSchedule):
  """Another schedule's steps, its sparsity times `factor` (see the tf_keras
  `ScaledSparsity`): one layer's share under a sparsity distribution."""

  def __init__(self, schedule, factor):
    self.schedule = get(schedule)
    self.factor = sparsity_schedules.check_factor(self.schedule, factor)

  def __call__(self, step):
    should_prune, sparsity = self.schedule(step)
    return should_prune, _F(sparsity * _F(self.factor))

  def _config(self):
    return {"schedule": self.schedule.get_config(), "factor": self.factor}


_SCHEDULES = {c.__name__: c for c in (ConstantSparsity, PolynomialDecay, GeometricSparsity,
                                      ScaledSparsity)}


def get(schedule):
  """A Keras 3 family schedule from one of ours, a TF-MOT schedule, or a config.

  TF-MOT's `ConstantSparsity`/`PolynomialDecay` and the tf_keras
  `GeometricSparsity` convert through their `get_config()` (same shape).

  Raises:
    ValueError: an unknown schedule; user-written TF-MOT schedules cannot be
      converted (subclass `PruningSchedule` here instead).
  """
  if schedule is None:
    return ConstantSparsity(0.5, 0)
  if isinstance(schedule, PruningSchedule):
    return schedule
  config = schedule if isinstance(schedule, dict) else getattr(schedule, "get_config", dict)()
  name = config.get("class_name") if isinstance(config, dict) else None
  if name not in _SCHEDULES:
    raise sparsity_schedules.unknown_schedule(
        schedule, _SCHEDULES, "keras_signflip.keras3.schedules; TF-MOT's versions convert too")
  return _SCHEDULES[name].from_config(config["config"])


max_sparsity = sparsity_schedules.max_sparsity
