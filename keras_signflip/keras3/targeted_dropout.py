"""Targeted weight dropout (Gomez et al. 2019) on Keras 3, any backend: the rule
of `keras_signflip.tf_keras.targeted_dropout`.

The kernel is viewed as [fan_in, units]; per output unit the candidates are the
weights whose |w| is below the column's k-th smallest, k = floor(targeted * fan_in):

    training:   each candidate is dropped (zero in the forward pass) with probability `rate`
    inference:  every candidate is zero -- the network as `strip` will prune it
"""
import math

from keras_signflip.keras3 import kernel_wrappers
from keras_signflip.keras3._keras import keras, ops

__all__ = ["TargetedDropout", "targeted_dropout", "strip", "candidates"]


def candidates(kernel, targeted):
  """Bool mask of the per-column candidates of `kernel` (see the module docstring)."""
  shape = tuple(kernel.shape)
  columns = ops.reshape(ops.abs(ops.convert_to_tensor(kernel)), (-1, shape[-1]))
  fan_in = math.prod(shape[:-1])
  k = int(math.floor(targeted * fan_in))
  if k == 0:
    return ops.zeros(shape, "bool")
  threshold = ops.sort(columns, axis=0)[min(k, fan_in - 1)]  # the k-th smallest per column
  return ops.reshape(ops.less(columns, threshold[None, :]), shape)


@keras.saving.register_keras_serializable(package="keras_signflip")
class TargetedDropout(kernel_wrappers.KernelWrapper):
  """Targeted weight dropout on a Dense or Conv layer's kernel.

  Args:
    layer: a channels-last Keras 3 Dense or Conv layer.
    rate: probability of dropping a candidate in training, in [0, 1]. Default 0.5.
    targeted: fraction of each column that are candidates, in [0, 1). Default 0.5.
    seed: integer seed of the drops.
  """

  def __init__(self, layer, rate=0.5, targeted=0.5, seed=0, **kwargs):
    for name, value, top in (("rate", rate, 1.0), ("targeted", targeted, 1.0 - 1e-12)):
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
        raise ValueError(f"Received an invalid value for `{name}`, expected a number in "
                         f"[0, {'1' if name == 'rate' else '1)'}. Received: {name}={value!r}")
    super().__init__(layer, seed=seed, **kwargs)
    self.rate, self.targeted = float(rate), float(targeted)

  def kernel_used(self, training):
    kernel = ops.convert_to_tensor(self.layer.kernel)
    chosen = candidates(kernel, self.targeted)
    if training:
      draw = keras.random.uniform(kernel.shape, seed=self.seed_generator)
      chosen = ops.logical_and(chosen, ops.less(draw, self.rate))
    return ops.where(chosen, ops.zeros_like(kernel), kernel)

  def get_config(self):
    return dict(super().get_config(), rate=self.rate, targeted=self.targeted)


def targeted_dropout(model, rate=0.5, targeted=0.5, seed=0):
  """A clone of a Sequential/Functional Keras 3 `model` with every Dense and Conv
  layer wrapped in `TargetedDropout` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: TargetedDropout(layer, rate=rate, targeted=targeted, seed=seed))


def strip(model):
  """A plain model whose kernels have the candidates zeroed (the wrapped model is unchanged)."""
  return kernel_wrappers.strip_kernels(model, TargetedDropout,
                                       lambda w: w.kernel_used(False))
