"""Argument checks shared by the tf_keras and Keras 3 wrappers."""
from keras_signflip import criteria as criteria_lib

__all__ = ["SCOPES", "NORMALIZATIONS", "check", "check_normalization"]

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
  """Checks `criterion`, `scope` and `min_flips`; returns the criterion instance."""
  criterion = criteria_lib.get(criterion)
  if scope not in SCOPES:
    raise ValueError(f"Received an invalid value for `scope`, expected one of "
                     f"{list(SCOPES)}. Received: scope={scope!r}")
  if min_flips is not None and (isinstance(min_flips, bool) or
                                not isinstance(min_flips, int) or min_flips < 1):
    raise ValueError("Received an invalid value for `min_flips`, expected None "
                     f"or an integer >= 1. Received: min_flips={min_flips!r}")
  return criterion


def check_count(name, value, minimum=1):
  """`value` as an int >= `minimum`, or a ValueError naming `name`."""
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"Received an invalid value for `{name}`, expected an integer >= "
                     f"{minimum}. Received: {name}={value!r}")
  return value


def check_sparsity(sparsity, name="sparsity"):
  """`sparsity` as a float in [0, 1), or a ValueError naming `name`."""
  if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
    raise ValueError(f"Received an invalid value for `{name}`, expected a number in [0, 1). "
                     f"Received: {name}={sparsity!r}")
  return float(sparsity)


def first_batches(data, batches, who):
  """The first `batches` (x, y) pairs of `data`, or a ValueError if it has fewer."""
  out = []
  for x, y in data:
    out.append((x, y))
    if len(out) == batches:
      return out
  raise ValueError(f"`data` gave {len(out)} batches; {who} was asked for {batches}.")


def check_nonnegative(name, value):
  """`value` as a float >= 0, or a ValueError naming `name`."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
    raise ValueError(f"Received an invalid value for `{name}`, expected a number >= 0. "
                     f"Received: {name}={value!r}")
  return float(value)
