"""What the kernel-level training methods (targeted dropout, L0, variational dropout)
share across both families: stripping a wrapped model back to a plain one.

Each family's `kernel_wrappers` module wraps Dense and Conv layers so that they
compute with a tensor in place of their kernel; `strip_kernels` gives the plain
clone whose kernels hold the method's final values, through the model's
`keras_signflip.families.Family` (its Keras and `to_numpy`).
"""
from keras_signflip import families

__all__ = ["strip_kernels"]


def strip_kernels(model, wrapper_class, final_kernel):
  """A plain clone of `model`: every `wrapper_class` replaced by its layer, whose
  kernel is `final_kernel(wrapper)` (a tensor); other weights copied. The
  wrapped model is left as it was."""
  family = families.of(model)

  def unwrap(layer):
    inner = layer.layer if isinstance(layer, wrapper_class) else layer
    return inner.__class__.from_config(inner.get_config())
  clone = family.keras.models.clone_model(model, clone_function=unwrap)
  for original, new in zip(model.layers, clone.layers):
    if isinstance(original, wrapper_class):
      kernel = original.layer.kernel
      new.set_weights([family.to_numpy(final_kernel(original) if v is kernel else v)
                       for v in original.layer.weights])
    elif original.weights:
      new.set_weights(original.get_weights())
  return clone
