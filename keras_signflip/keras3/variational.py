"""Sparse variational dropout (Molchanov, Ashukha & Vetrov 2017) on Keras 3, any backend.

log alpha, the KL approximation, the test-time kernel and `KLWarmup` are
`keras_signflip.variational_dropout`'s, shared with the tf_keras family (its
docstring has the formulas); here the noise of the local reparameterisation
trick (the wrapper's SeedGenerator) and the wrapper. `train_clip=True` uses
the test-time kernel in the training mean too (the authors' code).
"""
from keras_signflip import arguments
from keras_signflip import array_namespace
from keras_signflip import variational_dropout as vd
from keras_signflip.keras3 import kernel_wrappers
from keras_signflip.keras3._framework import keras, ops

__all__ = ["VariationalDropout", "variational_dropout", "KLWarmup", "kl_approximation",
           "strip", "THRESHOLD"]

K1, K2, K3 = vd.K1, vd.K2, vd.K3
THRESHOLD = vd.THRESHOLD
KLWarmup = vd.KLWarmup
kl_approximation = array_namespace.bind(vd.kl_approximation, ops)


@keras.saving.register_keras_serializable(package="keras_signflip")
class VariationalDropout(kernel_wrappers.KernelWrapper):
  """Sparse variational dropout on a Dense or Conv kernel.

  Args:
    layer: a channels-last Keras 3 Dense or Conv layer.
    strength: the KL term's weight (1 / training examples in the paper), >= 0.
    init_log_sigma2: initial log sigma^2. Default -10 (the paper's code).
    threshold: log alpha at or above which a weight is pruned. Default 3.
    seed: integer seed of the noise.
  """

  def __init__(self, layer, strength=1e-4, init_log_sigma2=-10.0, threshold=THRESHOLD, seed=0,
               train_clip=False, **kwargs):
    arguments.check_nonnegative("strength", strength)
    super().__init__(layer, seed=seed, **kwargs)
    self.strength, self.init_log_sigma2 = float(strength), float(init_log_sigma2)
    self.threshold, self.train_clip = float(threshold), bool(train_clip)

  def build(self, input_shape=None):
    super().build(input_shape)
    self.log_sigma2 = self.add_weight(
        name="log_sigma2", shape=self.layer.kernel.shape, trainable=True,
        initializer=keras.initializers.Constant(self.init_log_sigma2))
    self.kl_scale = self.add_weight(name="kl_scale", shape=(), trainable=False,
                                    initializer=keras.initializers.Constant(1.0))

  def log_alpha(self):
    return vd.log_alpha(ops.convert_to_tensor(self.layer.kernel), self.log_sigma2, ops)

  def kept(self):
    """Bool: the weights kept at test time (log alpha < threshold)."""
    return ops.less(self.log_alpha(), self.threshold)

  def kernel_used(self, training):
    del training  # the test-time kernel; training adds noise in `call`
    return vd.kept_kernel(ops.convert_to_tensor(self.layer.kernel), self.log_alpha(),
                          self.threshold, ops)

  def call(self, inputs, training=None):
    self.add_loss(vd.kl_penalty(self.strength, self.kl_scale, self.log_alpha(), ops))
    if not training:
      return super().call(inputs, training)
    theta = self.kernel_used(True) if self.train_clip else ops.convert_to_tensor(self.layer.kernel)
    mean = self.linear(inputs, theta)
    var = self.linear(ops.square(inputs), ops.exp(ops.convert_to_tensor(self.log_sigma2)))
    noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
    return self.finish(mean + ops.sqrt(var + 1e-8) * noise)

  def get_config(self):
    return dict(super().get_config(), strength=self.strength,
                init_log_sigma2=self.init_log_sigma2, threshold=self.threshold,
                train_clip=self.train_clip)


# Deliberately parallel to tf_keras/variational.py: the same public helpers over this
# family's own wrapper class and model cloning.
def variational_dropout(model, strength=1e-4, seed=0, train_clip=False):
  """A clone of a Sequential/Functional Keras 3 model with every Dense and Conv
  layer wrapped in `VariationalDropout` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: VariationalDropout(layer, strength=strength, seed=seed,
                                              train_clip=train_clip))


def strip(model):
  """A plain model computing as the test-time one: theta where log alpha < threshold, else 0."""
  return kernel_wrappers.strip_kernels(model, VariationalDropout, lambda w: w.kernel_used(False))
