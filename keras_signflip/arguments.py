"""Argument checks shared by the tf_keras and Keras 3 wrappers."""
from keras_signflip import criteria as criteria_lib

__all__ = ["SCOPES", "check"]

SCOPES = ("layer", "global")


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
