"""Targeted weight dropout's candidates (Gomez et al. 2019), for both families.

The kernel is viewed as [fan_in, units] (a conv kernel's spatial and input dims
flattened). Per output unit (column), the candidates are the weights whose |w|
is below the column's k-th smallest, k = floor(targeted * fan_in):

    training:   each candidate is dropped (zero in the forward pass) with probability `rate`
    inference:  every candidate is zero -- the network as `strip` will prune it

Written against `xp` (`keras_signflip.array_namespace`); each family's
`targeted_dropout` module draws the drops and wraps the layer.
"""
import math

__all__ = ["check", "candidates"]


def check(rate, targeted):
  """(rate, targeted) as floats: rate in [0, 1], targeted in [0, 1); else a ValueError."""
  for name, value, top in (("rate", rate, 1.0), ("targeted", targeted, 1.0 - 1e-12)):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
      raise ValueError(f"Received an invalid value for `{name}`, expected a number in "
                       f"[0, {'1' if name == 'rate' else '1)'}. Received: {name}={value!r}")
  return float(rate), float(targeted)


def candidates(kernel, targeted, xp):
  """Bool mask of the per-column candidates of `kernel` (see the module docstring)."""
  shape = tuple(int(d) for d in kernel.shape)
  columns = xp.reshape(xp.abs(xp.convert_to_tensor(kernel)), (-1, shape[-1]))
  fan_in = math.prod(shape[:-1])
  k = int(math.floor(targeted * fan_in))
  if k == 0:
    return xp.zeros(shape, "bool")
  kth_smallest = xp.sort(columns, axis=0)[min(k, fan_in - 1)]  # per column
  return xp.reshape(xp.less(columns, kth_smallest[None, :]), shape)
