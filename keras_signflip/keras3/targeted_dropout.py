"""Targeted weight dropout (Gomez et al. 2019) on Keras 3, any backend.

The candidates (per output unit, the weights below the column's k-th smallest
|w|, k = floor(targeted * fan_in)) are `keras_signflip.dropout_candidates`',
shared with the tf_keras family; in training each is dropped with probability
`rate`, at inference every one is zero (as `strip` prunes them).
"""
from keras_signflip import array_namespace
from keras_signflip import dropout_candidates
from keras_signflip.keras3 import kernel_wrappers
from keras_signflip.keras3._framework import keras, ops

__all__ = ["TargetedDropout", "targeted_dropout", "strip", "candidates"]

candidates = array_namespace.bind(dropout_candidates.candidates, ops)


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
    rate, targeted = dropout_candidates.check(rate, targeted)
    super().__init__(layer, seed=seed, **kwargs)
    self.rate, self.targeted = rate, targeted

  def kernel_used(self, training):
    kernel = ops.convert_to_tensor(self.layer.kernel)
    chosen = candidates(kernel, self.targeted)
    if training:
      draw = keras.random.uniform(kernel.shape, seed=self.seed_generator)
      chosen = ops.logical_and(chosen, ops.less(draw, self.rate))
    return ops.where(chosen, ops.zeros_like(kernel), kernel)

  def get_config(self):
    return dict(super().get_config(), rate=self.rate, targeted=self.targeted)


# Deliberately parallel to tf_keras/targeted_dropout.py: the same public helpers over this
# family's own wrapper class and model cloning.
def targeted_dropout(model, rate=0.5, targeted=0.5, seed=0):
  """A clone of a Sequential/Functional Keras 3 `model` with every Dense and Conv
  layer wrapped in `TargetedDropout` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: TargetedDropout(layer, rate=rate, targeted=targeted, seed=seed))


def strip(model):
  """A plain model whose kernels have the candidates zeroed (the wrapped model is unchanged)."""
  return kernel_wrappers.strip_kernels(model, TargetedDropout,
                                       lambda w: w.kernel_used(False))
