"""Checks on a pruning schedule's timing, shared by the tf_keras and Keras 3 families.

A built-in schedule (`ConstantSparsity`, `PolynomialDecay`, `GeometricSparsity`,
and `ScaledSparsity` of one of them) prunes at the steps
`begin_step + k * frequency` (k = 0, 1, ...) up to `end_step` (-1: no end).
Training steps count from 1 (TF-MOT's `pruning_step`; the Keras 3 callback
counts the same way), so step 0 never prunes.

`check` refuses, at `prune_sign_flip` time, a schedule whose timing arguments
are not integers (TF-MOT checks their ranges, not their types) or whose
pruning steps never come. `warn_if_unreachable` is the fit-start warning of
`UpdatePruningStep`: a schedule that reaches its final sparsity only after the
steps of this `fit` call is fine when later calls continue training (one
`fit` per epoch), so it warns, once per model, instead of refusing.

Framework-free: the families pass in how to evaluate a schedule.
"""
import warnings
import weakref

from keras_signflip import arguments

__all__ = ["ScheduleWarning", "timing", "events", "check", "fit_steps", "warn_if_unreachable"]

_TIMED = ("ConstantSparsity", "PolynomialDecay", "GeometricSparsity")


class ScheduleWarning(UserWarning):
  """A pruning schedule will not reach its final sparsity within this `fit` call."""


def base(schedule):
  """`schedule` without its `ScaledSparsity` layers (same steps, unscaled sparsity)."""
  while type(schedule).__name__ == "ScaledSparsity":
    schedule = schedule.schedule
  return schedule


def timing(schedule):
  """(begin_step, end_step, frequency) of a built-in schedule, or None for others."""
  schedule = base(schedule)
  if type(schedule).__name__ not in _TIMED:
    return None
  return schedule.begin_step, schedule.end_step, schedule.frequency


def events(begin_step, end_step, frequency, through):
  """(first, last) pruning steps in [1, through] of the given timing, or None if none."""
  first = begin_step if begin_step >= 1 else begin_step + frequency * (
      -(-(1 - begin_step) // frequency))
  stop = through if end_step < 0 else min(through, end_step)
  if stop < first:
    return None
  return first, begin_step + (stop - begin_step) // frequency * frequency


def check(schedule):
  """Refuses a built-in schedule with non-integer timing, a meaningless `power`, or
  no pruning step ever; other schedules pass unchecked. Returns `schedule`."""
  inner = base(schedule)
  if type(inner).__name__ not in _TIMED:
    return schedule
  begin = arguments.check_integer("begin_step", inner.begin_step)
  end = arguments.check_integer("end_step", inner.end_step)
  frequency = arguments.check_integer("frequency", inner.frequency)
  if type(inner).__name__ == "PolynomialDecay":
    arguments.check_number("power", inner.power, low=0, low_inclusive=False)
  if end >= 0 and events(begin, end, frequency, end) is None:
    raise ValueError(
        f"The pruning schedule {_describe(inner)} never prunes: it prunes at steps "
        "begin_step + k * frequency (k = 0, 1, ...) up to end_step, and training steps "
        f"count from 1, so none falls in [1, {end}]. Expected frequency <= end_step "
        f"(here {frequency} > {end}) or begin_step >= 1.")
  return schedule


def _describe(schedule):
  config = schedule.get_config()
  config = config.get("config", config)
  args = ", ".join(f"{k}={v!r}" for k, v in config.items())
  return f"{type(schedule).__name__}({args})"


def fit_steps(params, initial_epoch):
  """The training steps of a `fit` call from its callbacks' `params` ({"steps",
  "epochs"}) and its first epoch, or None when Keras did not say."""
  steps, epochs = (params or {}).get("steps"), (params or {}).get("epochs")
  if not steps or not epochs:
    return None
  return int(steps) * (int(epochs) - int(initial_epoch))


_warned = weakref.WeakSet()  # models warned about already


def _key(schedule):
  return repr(sorted(schedule.get_config().get("config", {}).items()))


def warn_if_unreachable(model, schedules, start, steps, sparsity_at, final_sparsity):
  """Warns once per model when this fit call ends before a schedule's final sparsity.

  Args:
    model: the model being fitted (warned about at most once).
    schedules: the wrappers' schedules; `ScaledSparsity` ones count as their base.
    start: the pruning step before this call's first batch (its steps are
      start + 1, ..., start + steps).
    steps: the number of training steps of this call, or None if unknown (then
      nothing is said).
    sparsity_at: (schedule, step) -> float, the schedule's sparsity at `step`.
    final_sparsity: schedule -> float or None, the sparsity a schedule without
      an end step settles at (its `max_sparsity`, `target_sparsity`).

  Returns:
    The warning's text, or None when nothing was said.
  """
  if steps is None or steps <= 0 or model in _warned:
    return None
  last = start + steps
  short, seen = [], set()
  for schedule in schedules:
    schedule = base(schedule)
    key = (type(schedule).__name__, _key(schedule)) if timing(schedule) else None
    if key is None or key in seen:
      continue
    seen.add(key)
    begin, end, frequency = timing(schedule)
    in_call = events(begin, end, frequency, last)
    reached = sparsity_at(schedule, in_call[1]) if in_call else 0.0
    if end >= 0:
      ever = events(begin, end, frequency, end)
      final = sparsity_at(schedule, ever[1]) if ever else 0.0
      final_step = ever[1] if ever else None
    else:
      final = final_sparsity(schedule)
      if final is None:
        continue
      final_step = None  # found below, if near
    if reached >= final - 1e-6:
      continue
    if final_step is None:  # no end step: the first pruning step that reaches it
      step = in_call[1] + frequency if in_call else events(begin, end, frequency, 2**62)[0]
      for _ in range(2000):  # enough for fraction >= 0.5% at max_sparsity 0.999
        if sparsity_at(schedule, step) >= final - 1e-6:
          final_step = step
          break
        step += frequency
    short.append((schedule, begin, end, frequency, reached, final, final_step))
  if not short:
    return None
  _warned.add(model)
  schedule, begin, end, frequency, reached, final, final_step = short[0]
  when = f"at step {final_step}" if final_step is not None else "after many more steps"
  others = (f" ({len(short) - 1} other schedule(s) of this model fall short too)"
            if len(short) > 1 else "")
  message = (
      f"This fit call runs {steps} training steps ({start + 1} to {last}), but the "
      f"pruning schedule {_describe(schedule)} reaches its final sparsity "
      f"{final:.4g} only {when}: by "
      f"the end of this call the model is at most {reached:.4g} sparse{others}. Fine "
      "if later fit calls continue the training (e.g. one fit per epoch); otherwise "
      "train longer or end the schedule within this call. (Said once per model.)")
  warnings.warn(message, ScheduleWarning, stacklevel=3)
  return message

