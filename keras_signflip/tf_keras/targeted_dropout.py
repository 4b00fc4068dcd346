"""Targeted weight dropout (Gomez et al. 2019) on tf_keras: train a layer to survive its
own pruning.

The candidates (per output unit, the weights below the column's k-th smallest
|w|, k = floor(targeted * fan_in)) are `keras_signflip.dropout_candidates`',
shared with the Keras 3 family:

    training:   each candidate is dropped (zero in the forward pass) with probability `rate`
    inference:  every candidate is zero -- the network as `strip` will prune it

`strip(model)` returns a plain model whose kernels hold exactly those zeros
(sparsity floor(targeted * fan_in) / fan_in per layer), ready for
`export_saved_model` or for `prune_sign_flip` (whose masks start from them).
Gomez et al.'s defaults: rate 0.5, targeted 0.5 (their sweeps reach 0.9+).
"""
from keras_signflip import array_namespace
from keras_signflip import dropout_candidates
from keras_signflip.tf_keras import kernel_wrappers
from keras_signflip.tf_keras._framework import keras, tf, xp

__all__ = ["TargetedDropout", "targeted_dropout", "strip", "candidates"]

candidates = array_namespace.bind(dropout_candidates.candidates, xp)


@keras.utils.register_keras_serializable(package="keras_signflip")
class TargetedDropout(keras.layers.Wrapper):
  """Targeted weight dropout on `layer.kernel` (Dense or Conv).

  Args:
    layer: a tf_keras layer with a `kernel`.
    rate: probability of dropping a candidate in training, in [0, 1]. Default 0.5.
    targeted: fraction of each column that are candidates, in [0, 1). Default 0.5.
    seed: integer seed of the drops (counted in a saved weight: resumable).
  """

  def __init__(self, layer, rate=0.5, targeted=0.5, seed=0, **kwargs):
    rate, targeted = dropout_candidates.check(rate, targeted)
    if not hasattr(layer, "kernel") and not hasattr(layer, "kernel_initializer"):
      raise ValueError(f"TargetedDropout drops kernel weights; {layer.name} "
                       f"({type(layer).__name__}) has no kernel.")
    kwargs.setdefault("name", f"targeted_dropout_{layer.name}")
    super().__init__(layer, **kwargs)
    self.rate, self.targeted, self.seed = rate, targeted, int(seed)

  def build(self, input_shape):
    super().build(input_shape)
    if not self.layer.built:
      self.layer.build(input_shape)
    kernel_wrappers.add_noise_counter(self)

  def _kernel_used(self, training):
    kernel = self.layer.kernel
    chosen = candidates(kernel, self.targeted)
    if training:
      chosen = tf.logical_and(chosen, tf.random.stateless_uniform(
          tf.shape(kernel), kernel_wrappers.next_noise_seed(self)) < self.rate)
    return tf.where(chosen, tf.zeros_like(kernel), tf.convert_to_tensor(kernel))

  def call(self, inputs, training=None):
    if training is None:
      training = keras.backend.learning_phase()
    used = tf.__internal__.smart_cond.smart_cond(
        training, lambda: self._kernel_used(True), lambda: self._kernel_used(False))
    with kernel_wrappers.kernel_replaced(self.layer, used):
      return self.layer.call(inputs)

  def compute_output_shape(self, input_shape):
    return self.layer.compute_output_shape(input_shape)

  def get_config(self):
    return dict(super().get_config(), rate=self.rate, targeted=self.targeted, seed=self.seed)


# Deliberately parallel to keras3/targeted_dropout.py: the same public helpers over this
# family's own wrapper class and model cloning.
def targeted_dropout(model, rate=0.5, targeted=0.5, seed=0):
  """A clone of a Sequential/Functional tf_keras `model` with every Dense and
  Conv layer wrapped in `TargetedDropout` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: TargetedDropout(layer, rate=rate, targeted=targeted, seed=seed))


def strip(model):
  """A plain model: every `TargetedDropout` replaced by its layer, the candidates
  zeroed in a copy of its kernel (the wrapped model is left as it was)."""
  def final(wrapper):
    kernel = tf.convert_to_tensor(wrapper.layer.kernel)
    return tf.where(candidates(kernel, wrapper.targeted), tf.zeros_like(kernel), kernel)
  return kernel_wrappers.strip_kernels(model, TargetedDropout, final)
