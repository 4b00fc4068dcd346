"""Sparse variational dropout (Molchanov, Ashukha & Vetrov 2017) on tf_keras.

log alpha, the KL approximation, the test-time kernel and `KLWarmup` are
`keras_signflip.variational_dropout`'s, shared with the Keras 3 family (its
docstring has the formulas); here the noise of the local reparameterisation
trick (stateless draws, counted in a saved weight) and the wrapper. At test
time the layer computes with theta where log alpha < 3 and 0 elsewhere -- the
pruned weights; `strip(model)` gives that plain model. Channels-last layers;
Dense and Conv kernels.

`train_clip=True` also drops the weights past the threshold from the training
mean (x @ theta with those theta at 0), as the authors' code does for its
published LeNet numbers: the network stops leaning on weights it will lose.
"""
from keras_signflip import arguments
from keras_signflip import array_namespace
from keras_signflip import variational_dropout as vd
from keras_signflip.tf_keras import kernel_wrappers
from keras_signflip.tf_keras._framework import keras, tf, xp

__all__ = ["VariationalDropout", "variational_dropout", "KLWarmup", "kl_approximation",
           "strip", "THRESHOLD"]

K1, K2, K3 = vd.K1, vd.K2, vd.K3
THRESHOLD = vd.THRESHOLD
KLWarmup = vd.KLWarmup
kl_approximation = array_namespace.bind(vd.kl_approximation, xp)


@keras.utils.register_keras_serializable(package="keras_signflip")
class VariationalDropout(keras.layers.Wrapper):
  """Sparse variational dropout on `layer.kernel` (see the module docstring).

  Args:
    layer: a channels-last Dense or Conv tf_keras layer.
    strength: the KL term's weight (1 / training examples in the paper), >= 0.
    init_log_sigma2: initial log sigma^2. Default -10 (the paper's code).
    threshold: log alpha above which a weight is pruned. Default 3.
    seed: seed of the noise.
    train_clip: weights past the threshold count as 0 in the training mean too
      (the authors' code). Default False.
  """

  def __init__(self, layer, strength=1e-4, init_log_sigma2=-10.0, threshold=THRESHOLD, seed=0,
               train_clip=False, **kwargs):
    arguments.check_nonnegative("strength", strength)
    if not hasattr(layer, "kernel_initializer"):
      raise ValueError(f"VariationalDropout acts on kernel weights; {layer.name} "
                       f"({type(layer).__name__}) has no kernel.")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
      raise ValueError(f"{layer.name}: VariationalDropout supports channels_last layers only.")
    kwargs.setdefault("name", f"vd_{layer.name}")
    super().__init__(layer, **kwargs)
    self.strength, self.init_log_sigma2 = float(strength), float(init_log_sigma2)
    self.threshold, self.seed, self.train_clip = float(threshold), int(seed), bool(train_clip)

  def build(self, input_shape):
    super().build(input_shape)
    if not self.layer.built:
      self.layer.build(input_shape)
    self.log_sigma2 = self.add_weight(
        "log_sigma2", shape=self.layer.kernel.shape, trainable=True,
        initializer=keras.initializers.Constant(self.init_log_sigma2))
    self.kl_scale = self.add_weight("kl_scale", shape=(), trainable=False,
                                    initializer=keras.initializers.Constant(1.0))
    kernel_wrappers.add_noise_counter(self)

  def log_alpha(self):
    return vd.log_alpha(tf.convert_to_tensor(self.layer.kernel), self.log_sigma2, xp)

  def kept(self):
    """Bool: the weights kept at test time (log alpha < threshold)."""
    return self.log_alpha() < self.threshold

  def kept_kernel(self):
    """theta where log alpha < threshold, else 0: the kernel at test time."""
    return vd.kept_kernel(tf.convert_to_tensor(self.layer.kernel), self.log_alpha(),
                          self.threshold, xp)

  def _linear(self, inputs, kernel):
    """The layer's kernel product alone (no bias, no activation)."""
    with kernel_wrappers.kernel_replaced(self.layer, kernel, use_bias=False,
                                         activation=keras.activations.linear):
      return self.layer.call(inputs)

  def call(self, inputs, training=None):
    if training is None:
      training = keras.backend.learning_phase()
    theta = tf.convert_to_tensor(self.layer.kernel)
    self.add_loss(vd.kl_penalty(self.strength, self.kl_scale, self.log_alpha(), xp))

    def train():
      mean = self._linear(inputs, self.kept_kernel() if self.train_clip else theta)
      var = self._linear(tf.square(inputs), tf.exp(self.log_sigma2))
      return mean + tf.sqrt(var + 1e-8) * tf.random.stateless_normal(
          tf.shape(mean), kernel_wrappers.next_noise_seed(self))

    def test():
      return self._linear(inputs, self.kept_kernel())
    out = tf.__internal__.smart_cond.smart_cond(training, train, test)
    if self.layer.use_bias:
      out = out + self.layer.bias
    return self.layer.activation(out)

  def compute_output_shape(self, input_shape):
    return self.layer.compute_output_shape(input_shape)

  def get_config(self):
    return dict(super().get_config(), strength=self.strength,
                init_log_sigma2=self.init_log_sigma2, threshold=self.threshold, seed=self.seed,
                train_clip=self.train_clip)


# Deliberately parallel to keras3/variational.py: the same public helpers over this
# family's own wrapper class and model cloning.
def variational_dropout(model, strength=1e-4, seed=0, train_clip=False):
  """A clone of a Sequential/Functional tf_keras model with every Dense and Conv
  layer wrapped in `VariationalDropout` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: VariationalDropout(layer, strength=strength, seed=seed,
                                              train_clip=train_clip))


def strip(model):
  """A plain model computing as the test-time one: theta where log alpha < threshold, else 0."""
  return kernel_wrappers.strip_kernels(model, VariationalDropout,
                                       lambda wrapper: wrapper.kept_kernel())
