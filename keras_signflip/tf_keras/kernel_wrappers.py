"""What the kernel-level training methods share (targeted dropout, L0, variational dropout).

Each wraps Dense and Conv layers, lets the layer compute with a tensor in place
of its kernel variable (gradients flow through that tensor to the variable),
and strips back to a plain model whose kernels hold the method's final values.
"""
import contextlib

from keras_signflip.tf_keras._compat import keras

__all__ = ["KINDS", "wrap_kernels", "kernel_replaced", "strip_kernels"]

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


def strip_kernels(model, wrapper_class, final_kernel):
  """A plain clone of `model`: every `wrapper_class` replaced by its layer, whose
  kernel is `final_kernel(wrapper)` (a tensor); other weights copied."""
  def unwrap(layer):
    inner = layer.layer if isinstance(layer, wrapper_class) else layer
    return inner.__class__.from_config(inner.get_config())
  clone = keras.models.clone_model(model, clone_function=unwrap)
  for original, new in zip(model.layers, clone.layers):
    if isinstance(original, wrapper_class):
      kernel = original.layer.kernel
      new.set_weights([final_kernel(original).numpy() if v is kernel else v.numpy()
                       for v in original.layer.weights])
    elif original.weights:
      new.set_weights(original.get_weights())
  return clone
