"""Sparse variational dropout (Molchanov, Ashukha & Vetrov 2017) on Keras 3, any
backend: the rule of `keras_signflip.tf_keras.variational`.

    log alpha = clip(log sigma^2 - log(theta^2 + 1e-8), -10, 10)
    training:  x @ theta + sqrt(x^2 @ sigma^2 + 1e-8) * eps,  eps ~ N(0, 1) per output
    test:      x @ (theta where log alpha < 3, else 0)
    -KL ~= k1 * sigmoid(k2 + k3 * log alpha) - 0.5 * log1p(exp(-log alpha)) - k1,
    k1, k2, k3 = 0.63576, 1.87320, 1.48695, added as strength * kl_scale * sum KL

(convolutions alike); `KLWarmup` ramps kl_scale from 0 to 1. `train_clip=True`
uses the test-time kernel in the training mean too (the authors' code).
"""
from keras_signflip import arguments
from keras_signflip.keras3 import kernel_wrappers
from keras_signflip.keras3._keras import keras, ops

__all__ = ["VariationalDropout", "variational_dropout", "KLWarmup", "kl_approximation",
           "strip", "THRESHOLD"]

K1, K2, K3 = 0.63576, 1.87320, 1.48695
THRESHOLD = 3.0


def kl_approximation(log_alpha):
  """KL(q || prior) per weight, Molchanov et al.'s approximation (see above)."""
  return -(K1 * ops.sigmoid(K2 + K3 * log_alpha) - 0.5 * ops.log1p(ops.exp(-log_alpha)) - K1)


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
    theta = ops.convert_to_tensor(self.layer.kernel)
    return ops.clip(ops.convert_to_tensor(self.log_sigma2) - ops.log(ops.square(theta) + 1e-8),
                    -10.0, 10.0)

  def kept(self):
    """Bool: the weights kept at test time (log alpha < threshold)."""
    return ops.less(self.log_alpha(), self.threshold)

  def kernel_used(self, training):
    del training  # the test-time kernel; training adds noise in `call`
    theta = ops.convert_to_tensor(self.layer.kernel)
    return ops.where(self.kept(), theta, ops.zeros_like(theta))

  def call(self, inputs, training=None):
    self.add_loss(self.strength * ops.convert_to_tensor(self.kl_scale)
                  * ops.sum(kl_approximation(self.log_alpha())))
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


class KLWarmup(keras.callbacks.Callback):
  """kl_scale = clip((step - delay) / steps, 0, 1) on every `VariationalDropout`:
  0 for `delay` steps, then a linear warm-up over `steps`."""

  def __init__(self, steps, delay=0):
    super().__init__()
    arguments.check_count("steps", steps)
    arguments.check_nonnegative("delay", delay)
    self.steps, self.delay = steps, delay

  def on_train_batch_begin(self, batch, logs=None):
    model = self.model  # on JAX: syncs the state, so the assignment reaches the step
    step = int(ops.convert_to_numpy(model.optimizer.iterations))
    for layer in model._flatten_layers():  # pylint: disable=protected-access
      if isinstance(layer, VariationalDropout):
        layer.kl_scale.assign(min(1.0, max(0.0, (step - self.delay) / self.steps)))


def variational_dropout(model, strength=1e-4, seed=0, train_clip=False):
  """A clone of a Sequential/Functional Keras 3 model with every Dense and Conv
  layer wrapped in `VariationalDropout` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: VariationalDropout(layer, strength=strength, seed=seed,
                                              train_clip=train_clip))


def strip(model):
  """A plain model computing as the test-time one: theta where log alpha < threshold, else 0."""
  return kernel_wrappers.strip_kernels(model, VariationalDropout, lambda w: w.kernel_used(False))
