"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma 2018) on tf_keras.

The gates, their penalty (the expected L0) and the parameters are
`keras_signflip.hard_concrete`'s, shared with the Keras 3 family; here the
draws (stateless, counted in a saved weight) and the wrapper. `L0Gate` wraps a
Dense or Conv layer, which computes with theta * z; `l0_gates(model)` wraps
every one; `strip(model)` gives the plain model with theta * z_test, whose
exact zeros (z_test = 0) are the pruned weights.
"""
from keras_signflip import hard_concrete
from keras_signflip.tf_keras import kernel_wrappers
from keras_signflip.tf_keras._framework import keras, tf, xp

__all__ = ["L0Gate", "l0_gates", "strip", "BETA", "GAMMA", "ZETA"]

BETA, GAMMA, ZETA = hard_concrete.BETA, hard_concrete.GAMMA, hard_concrete.ZETA


@keras.utils.register_keras_serializable(package="keras_signflip")
class L0Gate(keras.layers.Wrapper):
  """Hard-concrete gates on `layer.kernel`, and the expected-L0 penalty as a loss.

  Args:
    layer: a Dense or Conv tf_keras layer.
    strength: the penalty's weight (lambda; divide by the training-set size for
      the paper's per-example form), >= 0.
    init_keep: initial probability of a gate being open (log_alpha's initial mean:
      log(p / (1 - p))); the paper starts near 0.5 (droprate_init). Default 0.5.
    beta, gamma, zeta: the hard-concrete distribution's parameters.
    seed: seed of the gate draws.
  """

  def __init__(self, layer, strength=1e-4, init_keep=0.5, beta=BETA, gamma=GAMMA, zeta=ZETA,
               seed=0, **kwargs):
    checked = hard_concrete.check(strength, init_keep, beta, gamma, zeta)
    if not hasattr(layer, "kernel_initializer"):
      raise ValueError(f"L0Gate gates kernel weights; {layer.name} ({type(layer).__name__}) "
                       "has no kernel.")
    kwargs.setdefault("name", f"l0_{layer.name}")
    super().__init__(layer, **kwargs)
    self.strength, self.init_keep, self.beta, self.gamma, self.zeta = checked
    self.seed = int(seed)

  def build(self, input_shape):
    super().build(input_shape)
    if not self.layer.built:
      self.layer.build(input_shape)
    self.log_alpha = self.add_weight(
        "log_alpha", shape=self.layer.kernel.shape, trainable=True,
        initializer=keras.initializers.RandomNormal(
            hard_concrete.initial_log_alpha(self.init_keep), 0.01, seed=self.seed))
    kernel_wrappers.add_noise_counter(self)

  def gates(self, training):
    """z: sampled (training) or deterministic (test), shaped like the kernel."""
    log_alpha = tf.convert_to_tensor(self.log_alpha)
    u = None
    if training:
      u = tf.random.stateless_uniform(tf.shape(log_alpha), kernel_wrappers.next_noise_seed(self),
                                      *hard_concrete.UNIFORM_RANGE)
    return hard_concrete.gates(log_alpha, self.beta, self.gamma, self.zeta, xp, u)

  def expected_l0(self):
    """sum sigmoid(log_alpha - beta * log(-gamma / zeta)): the expected open gates."""
    return hard_concrete.expected_l0(tf.convert_to_tensor(self.log_alpha), self.beta,
                                     self.gamma, self.zeta, xp)

  def call(self, inputs, training=None):
    if training is None:
      training = keras.backend.learning_phase()
    kernel = self.layer.kernel
    gates = tf.__internal__.smart_cond.smart_cond(
        training, lambda: self.gates(True), lambda: self.gates(False))
    self.add_loss(self.strength * self.expected_l0())
    with kernel_wrappers.kernel_replaced(self.layer, kernel * tf.cast(gates, kernel.dtype)):
      return self.layer.call(inputs)

  def compute_output_shape(self, input_shape):
    return self.layer.compute_output_shape(input_shape)

  def get_config(self):
    return dict(super().get_config(), strength=self.strength, init_keep=self.init_keep,
                beta=self.beta, gamma=self.gamma, zeta=self.zeta, seed=self.seed)


# Deliberately parallel to keras3/l0.py: the same public helpers over this
# family's own wrapper class and model cloning.
def l0_gates(model, strength=1e-4, init_keep=0.5, seed=0):
  """A clone of a Sequential/Functional tf_keras model with every Dense and Conv
  layer wrapped in `L0Gate` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: L0Gate(layer, strength=strength, init_keep=init_keep, seed=seed))


def strip(model):
  """A plain model whose kernels are theta * z_test (exact zeros where the gate is shut)."""
  return kernel_wrappers.strip_kernels(
      model, L0Gate, lambda wrapper: wrapper.layer.kernel * wrapper.gates(False))
