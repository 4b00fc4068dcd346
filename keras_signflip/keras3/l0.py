"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma 2018) on
Keras 3, any backend: the rule of `keras_signflip.tf_keras.l0`.

    training:  u ~ U(0, 1);  s = sigmoid((log u - log(1 - u) + log_alpha) / beta)
               z = clip(s * (zeta - gamma) + gamma, 0, 1)       (one draw per weight per step)
    test:      z = clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)
    penalty:   strength * sum sigmoid(log_alpha - beta * log(-gamma / zeta))   (the expected L0)

beta = 2/3, gamma = -0.1, zeta = 1.1; the layer computes with theta * z.
"""
import math

from keras_signflip import arguments
from keras_signflip.keras3 import kernel_wrappers
from keras_signflip.keras3._keras import keras, ops

__all__ = ["L0Gate", "l0_gates", "strip", "BETA", "GAMMA", "ZETA"]

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


@keras.saving.register_keras_serializable(package="keras_signflip")
class L0Gate(kernel_wrappers.KernelWrapper):
  """Hard-concrete gates on a Dense or Conv kernel, and the expected-L0 penalty as a loss.

  Args:
    layer: a channels-last Keras 3 Dense or Conv layer.
    strength: the penalty's weight (lambda; per example, so lambda / N of the paper), >= 0.
    init_keep: the initial sigmoid(log_alpha), in (0, 1). Default 0.5.
    beta, gamma, zeta: the hard-concrete parameters (the paper's by default).
    seed: integer seed of the gate draws.
  """

  def __init__(self, layer, strength=1e-4, init_keep=0.5, beta=BETA, gamma=GAMMA, zeta=ZETA,
               seed=0, **kwargs):
    arguments.check_nonnegative("strength", strength)
    if not 0 < init_keep < 1:
      raise ValueError("Received an invalid value for `init_keep`, expected a number in (0, 1). "
                       f"Received: init_keep={init_keep!r}")
    if not (beta > 0 and gamma < 0 < 1 < zeta):
      raise ValueError("The hard-concrete parameters need beta > 0 and gamma < 0 < 1 < zeta; "
                       f"received beta={beta}, gamma={gamma}, zeta={zeta}.")
    super().__init__(layer, seed=seed, **kwargs)
    self.strength, self.init_keep = float(strength), float(init_keep)
    self.beta, self.gamma, self.zeta = float(beta), float(gamma), float(zeta)

  def build(self, input_shape=None):
    super().build(input_shape)
    mean = math.log(self.init_keep / (1 - self.init_keep))
    self.log_alpha = self.add_weight(
        name="log_alpha", shape=self.layer.kernel.shape, trainable=True,
        initializer=keras.initializers.RandomNormal(mean, 0.01, seed=self.seed))

  def gates(self, training):
    """z: sampled (training) or deterministic (test), shaped like the kernel."""
    log_alpha = ops.convert_to_tensor(self.log_alpha)
    if training:
      u = keras.random.uniform(log_alpha.shape, 1e-6, 1 - 1e-6, seed=self.seed_generator)
      s = ops.sigmoid((ops.log(u) - ops.log(1 - u) + log_alpha) / self.beta)
    else:
      s = ops.sigmoid(log_alpha)
    return ops.clip(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

  def expected_l0(self):
    """sum sigmoid(log_alpha - beta * log(-gamma / zeta)): the expected open gates."""
    return ops.sum(ops.sigmoid(ops.convert_to_tensor(self.log_alpha)
                               - self.beta * math.log(-self.gamma / self.zeta)))

  def kernel_used(self, training):
    kernel = ops.convert_to_tensor(self.layer.kernel)
    return kernel * ops.cast(self.gates(training), kernel.dtype)

  def call(self, inputs, training=None):
    self.add_loss(self.strength * self.expected_l0())
    return super().call(inputs, training)

  def get_config(self):
    return dict(super().get_config(), strength=self.strength, init_keep=self.init_keep,
                beta=self.beta, gamma=self.gamma, zeta=self.zeta)


def l0_gates(model, strength=1e-4, init_keep=0.5, seed=0):
  """A clone of a Sequential/Functional Keras 3 model with every Dense and Conv
  layer wrapped in `L0Gate` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: L0Gate(layer, strength=strength, init_keep=init_keep, seed=seed))


def strip(model):
  """A plain model whose kernels are theta * z_test (exact zeros where the gate is shut)."""
  return kernel_wrappers.strip_kernels(model, L0Gate, lambda w: w.kernel_used(False))
