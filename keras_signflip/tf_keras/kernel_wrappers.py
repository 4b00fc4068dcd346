"""What the kernel-level training methods share (targeted dropout, L0, variational dropout).

Each wraps Dense and Conv layers, lets the layer compute with a tensor in place
of its kernel variable (gradients flow through that tensor to the variable),
and strips back to a plain model whose kernels hold the method's final values
(`keras_signflip.kernel_methods.strip_kernels`, shared with the Keras 3 family).
"""
import contextlib

from keras_signflip.kernel_methods import strip_kernels  # noqa: F401  (re-exported)
from keras_signflip.tf_keras._framework import keras, tf

__all__ = ["KINDS", "wrap_kernels", "kernel_replaced", "strip_kernels", "add_noise_counter",
           "next_noise_seed"]

KINDS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def wrap_kernels(model, make_wrapper):
  """A clone of a Sequential/Functional `model` with every Dense and Conv layer
  (not depthwise) wrapped by `make_wrapper(layer)`, sharing the layers' weights."""
  def wrap(layer):
    if isinstance(layer, KINDS) and not isinstance(layer, keras.layers.DepthwiseConv2D):
      return make_wrapper(layer)
    return layer
  return keras.models.clone_model(model, clone_function=wrap)


@contextlib.contextmanager
def kernel_replaced(layer, kernel, **attributes):
  """Inside, `layer.kernel` (and any other named attribute) reads the given
  values; the layer's own are put back afterwards, whatever happens."""
  saved = {name: getattr(layer, name) for name in ["kernel", *attributes]}
  try:
    for name, value in dict(attributes, kernel=kernel).items():
      object.__setattr__(layer, name, value)
    yield layer
  finally:
    for name, value in saved.items():
      object.__setattr__(layer, name, value)


def add_noise_counter(layer):
  """Gives `layer` (which has an int `seed`) `noise_draws`, an int64 weight
  counting its noise draws. Draws are stateless ops seeded [seed, draw number],
  so every save format (.keras, .h5, SavedModel, checkpoints) resumes them: a
  `tf.random.Generator`'s state is not a layer weight, and only TF checkpoints
  kept it. (Under tf.distribute every replica draws the same noise.)"""
  layer.noise_draws = layer.add_weight(
      "noise_draws", shape=(), dtype=tf.int64, trainable=False, initializer="zeros",
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def next_noise_seed(layer):
  """The seed of `layer`'s next draw, [seed, n], counting the draw."""
  n = layer.noise_draws.assign_add(1)
  return tf.stack([tf.constant(layer.seed, tf.int64), tf.convert_to_tensor(n)])
