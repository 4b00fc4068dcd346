"""What the Keras 3 kernel-level training methods share (targeted dropout, L0,
variational dropout): the Keras 3 twin of `keras_signflip.tf_keras.kernel_wrappers`.

A `KernelWrapper` wraps a Dense or Conv layer and computes

    activation(linear(x, kernel_used) + bias)

where `linear` is the layer's own kernel product (`convolution_op` for Conv,
a matmul for Dense) and `kernel_used` is the method's tensor in place of the
kernel variable, so gradients reach the variable through it on every backend.
`strip_kernels` (`keras_signflip.kernel_methods`, shared with the tf_keras family)
gives a plain clone whose kernels hold the method's final values.
"""
from keras_signflip.kernel_methods import strip_kernels  # noqa: F401  (re-exported)
from keras_signflip.keras3._framework import keras, ops

__all__ = ["KernelWrapper", "wrap_kernels", "strip_kernels", "KINDS"]

KINDS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def _supported(layer):
  return (isinstance(layer, KINDS) and not isinstance(layer, keras.layers.DepthwiseConv2D)
          and getattr(layer, "data_format", "channels_last") == "channels_last")


class KernelWrapper(keras.layers.Wrapper):
  """Base: computes the wrapped layer with `kernel_used(training)` (subclasses)."""

  def __init__(self, layer, seed=0, **kwargs):
    if not _supported(layer):
      raise ValueError(f"{type(self).__name__} wraps channels-last Dense and Conv layers; "
                       f"{layer.name} is a {type(layer).__name__}.")
    kwargs.setdefault("name", f"{type(self).__name__.lower()}_{layer.name}")
    super().__init__(layer, **kwargs)
    self.seed = int(seed)
    self.seed_generator = keras.random.SeedGenerator(self.seed)

  def build(self, input_shape=None):
    if not self.layer.built:
      self.layer.build(input_shape)
    if getattr(self.layer, "lora_enabled", False) or getattr(self.layer, "quantization_mode", None):
      raise ValueError(f"{self.layer.name}: wrap the layer before enabling LoRA or quantization.")
    self.built = True

  def linear(self, inputs, kernel):
    """The layer's kernel product alone (no bias, no activation)."""
    if hasattr(self.layer, "convolution_op"):
      return self.layer.convolution_op(inputs, kernel)
    return ops.matmul(inputs, kernel)

  def finish(self, outputs):
    """Adds the layer's bias and applies its activation."""
    if self.layer.use_bias:
      outputs = ops.add(outputs, self.layer.bias)
    return outputs if self.layer.activation is None else self.layer.activation(outputs)

  def call(self, inputs, training=None):
    return self.finish(self.linear(inputs, self.kernel_used(bool(training))))

  def compute_output_shape(self, input_shape):
    return self.layer.compute_output_shape(input_shape)

  def get_config(self):
    return dict(super().get_config(), seed=self.seed)

  # Keras saves a layer's weights but not its SeedGenerator's state, so a loaded
  # model would draw step 1's noise again; the state is stored beside the
  # weights ("seed_state"), and training resumes with the draws it had reached.
  def save_own_variables(self, store):
    super().save_own_variables(store)
    store["seed_state"] = self.seed_generator.state

  def load_own_variables(self, store):
    super().load_own_variables({k: store[k] for k in store.keys() if k != "seed_state"})
    if "seed_state" in store:
      self.seed_generator.state.assign(store["seed_state"])


def wrap_kernels(model, make_wrapper):
  """A clone of a Sequential/Functional `model` with every supported Dense and
  Conv layer wrapped by `make_wrapper(layer)`, sharing the layers' weights."""
  return keras.models.clone_model(
      model, clone_function=lambda layer: make_wrapper(layer) if _supported(layer) else layer)
