"""The arithmetic and checks of keras_signflip's own pruning schedules, for both families.

Each family has its `GeometricSparsity` and `ScaledSparsity` (tf_keras's are
TF-MOT `PruningSchedule`s evaluated in the graph; Keras 3's are plain Python
on the host); what they compute and refuse is written here once:

    GeometricSparsity: at the m-th pruning step, min(1 - (1 - fraction) ** m, max_sparsity),
        pruning steps begin_step + j * frequency >= 1 up to end_step (-1: no end),
        in float32 (`xp`: `keras_signflip.array_namespace`)
    ScaledSparsity:    another schedule's sparsity times `factor`, refused when
        it could reach 1
"""
from keras_signflip import arguments

__all__ = ["check_geometric", "geometric_sparsity", "check_factor", "max_sparsity",
           "unknown_schedule"]


def check_geometric(fraction, frequency, begin_step, end_step, max_sparsity_value):
  """GeometricSparsity's arguments in their canonical types, or a ValueError naming one."""
  fraction = arguments.check_number("fraction", fraction, 0, 1, False, False)
  max_sparsity_value = arguments.check_number("max_sparsity", max_sparsity_value, 0, 1,
                                              False, False)
  frequency = arguments.check_integer("frequency", frequency, minimum=1)
  begin_step = arguments.check_integer("begin_step", begin_step, minimum=0)
  end_step = arguments.check_integer("end_step", end_step, minimum=begin_step, allowed=(-1,))
  return fraction, frequency, begin_step, end_step, max_sparsity_value


def geometric_sparsity(step, fraction, frequency, begin_step, end_step, max_sparsity_value,
                       xp):
  """min(1 - (1 - fraction) ** events, max_sparsity), float32; `step` an integer (tensor)."""
  # Pruning steps j = 0, 1, ... at begin + j * frequency that are >= 1.
  first_j = max(-(-(1 - begin_step) // frequency), 0)
  last_j = xp.floor_divide(step - begin_step, frequency)
  if end_step >= 0:
    last_j = xp.minimum(last_j, (end_step - begin_step) // frequency)
  events = xp.maximum(last_j - first_j + 1, 0)
  sparsity = 1.0 - xp.power(xp.cast(1.0 - fraction, "float32"), xp.cast(events, "float32"))
  return xp.cast(xp.minimum(sparsity, xp.cast(max_sparsity_value, "float32")), "float32")


def max_sparsity(schedule):
  """The largest sparsity a built-in schedule (either family's, or TF-MOT's) asks
  for, or None when unknown (a user's own schedule)."""
  if type(schedule).__name__ == "ScaledSparsity":
    top = max_sparsity(schedule.schedule)
    return None if top is None else top * schedule.factor
  for attr in ("max_sparsity", "target_sparsity", "final_sparsity"):
    if hasattr(schedule, attr):
      return float(getattr(schedule, attr))
  return None


def check_factor(schedule, factor):
  """ScaledSparsity's `factor` as a float > 0 that keeps `schedule`'s sparsity below 1."""
  factor = arguments.check_number("factor", factor, low=0, low_inclusive=False)
  top = max_sparsity(schedule)
  if top is not None and factor * top >= 1.0:
    raise ValueError(f"factor={factor} would take the schedule's {top} to {factor * top}, "
                     "not below 1.")
  return factor


def unknown_schedule(received, known, where):
  """The ValueError for a schedule (or config) neither family's `get` knows."""
  return ValueError(
      f"Received an invalid value for `pruning_schedule`, expected one of {sorted(known)} "
      f"({where}). Received: pruning_schedule={received!r}")
