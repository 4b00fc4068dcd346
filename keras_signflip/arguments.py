"""Argument checks shared by both families, and the core's formulas.

Every check raises a ValueError naming the argument, what it accepts and the
value received ("Received an invalid value for `x`, expected ... Received:
x=..."), before anything is built or changed, and returns the value in its
canonical Python type. Booleans are never numbers here, and NaN and +-Inf
never pass a numeric check.
"""
import math
import numbers

__all__ = ["SCOPES", "NORMALIZATIONS", "check", "check_normalization", "check_number",
           "check_integer", "check_count", "check_sparsity", "check_nonnegative",
           "check_optional_bool", "refuse_wrapped", "refuse_own_weights", "refuse_ignored_kwargs",
           "first_batches"]

SCOPES = ("layer", "global")
NORMALIZATIONS = (None, "l2")


def check_normalization(normalization, scope):
  """`score_normalization`: None, or "l2" (global scope: each tensor's scores
  divided by the L2 norm of its unpruned scores before the one ranking, as
  JaxPruner's global pruners can)."""
  if normalization not in NORMALIZATIONS:
    raise ValueError("Received an invalid value for `score_normalization`, expected None or "
                     f"'l2'. Received: score_normalization={normalization!r}")
  if normalization is not None and scope != "global":
    raise ValueError("`score_normalization` evens out layers in one global ranking; it needs "
                     "scope='global'.")
  return normalization


def check(criterion, scope, min_flips):
  """Checks `scope` and `min_flips`; returns `criterion`, which the caller resolved
  with `criteria.get` (criteria.py validates through this module, not back)."""
  if not isinstance(scope, str) or scope not in SCOPES:
    raise ValueError(f"Received an invalid value for `scope`, expected one of "
                     f"{list(SCOPES)}. Received: scope={scope!r}")
  if min_flips is not None and (isinstance(min_flips, bool) or
                                not isinstance(min_flips, int) or min_flips < 1):
    raise ValueError("Received an invalid value for `min_flips`, expected None "
                     f"or an integer >= 1. Received: min_flips={min_flips!r}")
  return criterion


def _is_real(value):
  """A finite-or-not real number that is not a bool (Python or NumPy scalar)."""
  return isinstance(value, numbers.Real) and not _is_bool(value)


def check_number(name, value, low=None, high=None, low_inclusive=True, high_inclusive=True):
  """`value` as a finite float within the given bounds, or a ValueError naming `name`.

  Args:
    name: the argument's name, for the message.
    value: what was received.
    low, high: bounds, None for none.
    low_inclusive, high_inclusive: whether each bound itself is accepted.
  """
  ok = _is_real(value) and math.isfinite(value)
  if ok and low is not None:
    ok = value >= low if low_inclusive else value > low
  if ok and high is not None:
    ok = value <= high if high_inclusive else value < high
  if not ok:
    if low is not None and high is not None:
      what = (f"a number in {'[' if low_inclusive else '('}{low}, "
              f"{high}{']' if high_inclusive else ')'}")
    elif low is not None:
      what = f"a finite number {'>=' if low_inclusive else '>'} {low}"
    elif high is not None:
      what = f"a finite number {'<=' if high_inclusive else '<'} {high}"
    else:
      what = "a finite number"
    raise ValueError(f"Received an invalid value for `{name}`, expected {what}. "
                     f"Received: {name}={value!r}")
  return float(value)


def check_integer(name, value, minimum=None, allowed=()):
  """`value` as a Python int >= `minimum` (or one of `allowed`), or a ValueError.

  Python and NumPy integers pass; bools and floats (even 2.0) do not.
  """
  ok = isinstance(value, numbers.Integral) and not _is_bool(value)
  if ok and int(value) in allowed:
    return int(value)
  if ok and minimum is not None:
    ok = value >= minimum
  if not ok:
    what = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    if allowed:
      what += " or " + " or ".join(str(a) for a in allowed)
    raise ValueError(f"Received an invalid value for `{name}`, expected {what}. "
                     f"Received: {name}={value!r}")
  return int(value)


def _is_bool(value):
  return isinstance(value, bool) or type(value).__name__ == "bool_"


def check_count(name, value, minimum=1):
  """`value` as an int >= `minimum`, or a ValueError naming `name`."""
  return check_integer(name, value, minimum)


def check_sparsity(sparsity, name="sparsity"):
  """`sparsity` as a float in [0, 1), or a ValueError naming `name`."""
  return check_number(name, sparsity, 0, 1, high_inclusive=False)


def check_optional_bool(name, value):
  """None, True or False (a NumPy bool too); anything else is a ValueError."""
  if value is None:
    return None
  if not _is_bool(value):
    raise ValueError(f"Received an invalid value for `{name}`, expected None, True or "
                     f"False. Received: {name}={value!r}")
  return bool(value)


def refuse_own_weights(layer, names):
  """The ValueError for weights a subclassed model or one of its blocks created itself
  (`self.add_weight`, named in `names`): outside any layer, no wrapper can prune them."""
  if names:
    raise ValueError(
        f"{type(layer).__name__} {layer.name!r} creates weights itself ({names}), outside "
        "any layer, and prune_sign_flip prunes layers' weights. Create them in a layer "
        "with a `get_prunable_weights()` method (then they are pruned), or in a layer "
        "of their own (then they are left dense).")


def refuse_wrapped(names, what="model"):
  """The ValueError for `prune_sign_flip` on something already wrapped for pruning.

  A wrapper keeps its own criterion and schedule: wrapping again would drop
  this call's without a word, so it is refused.
  """
  if not names:
    return
  if what == "layer":
    fix = ("Wrap the plain layer instead (the wrapper's `.layer`), or keep the wrapper "
           "as it is.")
  elif what == "list of layers":
    fix = "Pass the plain layers instead (each wrapper's `.layer`)."
  else:
    fix = ("Call keras_signflip.strip_pruning(model) first (it returns the plain model, "
           "pruned weights zero), or call prune_sign_flip on the unwrapped model.")
  raise ValueError(
      f"prune_sign_flip received a {what} already wrapped for pruning: the wrappers "
      f"{sorted(names)} would keep their own criterion and schedule and ignore this "
      f"call's. {fix}")


def refuse_ignored_kwargs(kwargs):
  """Layer keyword arguments apply to a single layer's wrapper; with a model or a
  list of layers they would be dropped, so they are refused."""
  if kwargs:
    raise ValueError(
        f"Received keyword arguments {sorted(kwargs)} that apply only when wrapping a "
        "single layer; with a model or a list of layers they would be ignored. Remove "
        "them, or wrap the layers one at a time.")


def first_batches(data, batches, who):
  """The first `batches` (x, y) pairs of `data`, or a ValueError if it has fewer."""
  out = []
  for x, y in data:
    out.append((x, y))
    if len(out) == batches:
      return out
  raise ValueError(f"`data` gave {len(out)} batches; {who} was asked for {batches}.")


def check_nonnegative(name, value):
  """`value` as a finite float >= 0, or a ValueError naming `name`."""
  return check_number(name, value, low=0)
