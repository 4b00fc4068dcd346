"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma 2018) on
Keras 3, any backend.

The gates, their penalty (the expected L0) and the parameters are
`keras_signflip.hard_concrete`'s, shared with the tf_keras family; here the
draws (the wrapper's SeedGenerator) and the wrapper, which computes with theta * z.
"""
from keras_signflip import hard_concrete
from keras_signflip.keras3 import kernel_wrappers
from keras_signflip.keras3._framework import keras, ops

__all__ = ["L0Gate", "l0_gates", "strip", "BETA", "GAMMA", "ZETA"]

BETA, GAMMA, ZETA = hard_concrete.BETA, hard_concrete.GAMMA, hard_concrete.ZETA


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
    checked = hard_concrete.check(strength, init_keep, beta, gamma, zeta)
    super().__init__(layer, seed=seed, **kwargs)
    self.strength, self.init_keep, self.beta, self.gamma, self.zeta = checked

  def build(self, input_shape=None):
    super().build(input_shape)
    self.log_alpha = self.add_weight(
        name="log_alpha", shape=self.layer.kernel.shape, trainable=True,
        initializer=keras.initializers.RandomNormal(
            hard_concrete.initial_log_alpha(self.init_keep), 0.01, seed=self.seed))

  def gates(self, training):
    """z: sampled (training) or deterministic (test), shaped like the kernel."""
    log_alpha = ops.convert_to_tensor(self.log_alpha)
    u = None
    if training:
      u = keras.random.uniform(log_alpha.shape, *hard_concrete.UNIFORM_RANGE,
                               seed=self.seed_generator)
    return hard_concrete.gates(log_alpha, self.beta, self.gamma, self.zeta, ops, u)

  def expected_l0(self):
    """sum sigmoid(log_alpha - beta * log(-gamma / zeta)): the expected open gates."""
    return hard_concrete.expected_l0(ops.convert_to_tensor(self.log_alpha), self.beta,
                                     self.gamma, self.zeta, ops)

  def kernel_used(self, training):
    kernel = ops.convert_to_tensor(self.layer.kernel)
    return kernel * ops.cast(self.gates(training), kernel.dtype)

  def call(self, inputs, training=None):
    self.add_loss(self.strength * self.expected_l0())
    return super().call(inputs, training)

  def get_config(self):
    return dict(super().get_config(), strength=self.strength, init_keep=self.init_keep,
                beta=self.beta, gamma=self.gamma, zeta=self.zeta)


# Deliberately parallel to tf_keras/l0.py: the same public helpers over this
# family's own wrapper class and model cloning.
def l0_gates(model, strength=1e-4, init_keep=0.5, seed=0):
  """A clone of a Sequential/Functional Keras 3 model with every Dense and Conv
  layer wrapped in `L0Gate` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: L0Gate(layer, strength=strength, init_keep=init_keep, seed=seed))


def strip(model):
  """A plain model whose kernels are theta * z_test (exact zeros where the gate is shut)."""
  return kernel_wrappers.strip_kernels(model, L0Gate, lambda w: w.kernel_used(False))
