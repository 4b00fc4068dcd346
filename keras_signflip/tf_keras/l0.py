"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma 2018).

Every kernel weight theta gets a gate z in [0, 1] with a learnt log_alpha:

    training:  u ~ U(0, 1);  s = sigmoid((log u - log(1 - u) + log_alpha) / beta)
               z = clip(s * (zeta - gamma) + gamma, 0, 1)       (one draw per weight per step)
    test:      z = clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)
    penalty:   strength * sum sigmoid(log_alpha - beta * log(-gamma / zeta))   (the expected L0)

and the layer computes with theta * z. beta = 2/3, gamma = -0.1, zeta = 1.1 (the
paper's). `L0Gate` wraps a Dense or Conv layer; `l0_gates(model)` wraps every
one; `strip(model)` gives the plain model with theta * z_test, whose exact
zeros (z_test = 0) are the pruned weights.
"""
import math

from keras_signflip import arguments
from keras_signflip.tf_keras import kernel_wrappers
from keras_signflip.tf_keras._compat import keras, tf

__all__ = ["L0Gate", "l0_gates", "strip", "BETA", "GAMMA", "ZETA"]

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


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
    arguments.check_nonnegative("strength", strength)
    if not 0 < init_keep < 1:
      raise ValueError(f"Received an invalid value for `init_keep`, expected a probability in "
                       f"(0, 1). Received: init_keep={init_keep!r}")
    if not (beta > 0 and gamma < 0 and zeta > 1):
      raise ValueError("The hard-concrete distribution needs beta > 0, gamma < 0 and zeta > 1; "
                       f"received beta={beta}, gamma={gamma}, zeta={zeta}.")
    if not hasattr(layer, "kernel_initializer"):
      raise ValueError(f"L0Gate gates kernel weights; {layer.name} ({type(layer).__name__}) "
                       "has no kernel.")
    kwargs.setdefault("name", f"l0_{layer.name}")
    super().__init__(layer, **kwargs)
    self.strength, self.init_keep = float(strength), float(init_keep)
    self.beta, self.gamma, self.zeta, self.seed = float(beta), float(gamma), float(zeta), int(seed)

  def build(self, input_shape):
    super().build(input_shape)
    if not self.layer.built:
      self.layer.build(input_shape)
    mean = math.log(self.init_keep / (1 - self.init_keep))
    self.log_alpha = self.add_weight(
        "log_alpha", shape=self.layer.kernel.shape, trainable=True,
        initializer=keras.initializers.RandomNormal(mean, 0.01, seed=self.seed))
    kernel_wrappers.add_noise_counter(self)

  def gates(self, training):
    """z: sampled (training) or deterministic (test), shaped like the kernel."""
    if training:
      u = tf.random.stateless_uniform(
          tf.shape(self.log_alpha), kernel_wrappers.next_noise_seed(self), 1e-6, 1 - 1e-6)
      s = tf.sigmoid((tf.math.log(u) - tf.math.log(1 - u) + self.log_alpha) / self.beta)
    else:
      s = tf.sigmoid(self.log_alpha)
    return tf.clip_by_value(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

  def expected_l0(self):
    """sum sigmoid(log_alpha - beta * log(-gamma / zeta)): the expected open gates."""
    return tf.reduce_sum(tf.sigmoid(self.log_alpha - self.beta * math.log(-self.gamma / self.zeta)))

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


def l0_gates(model, strength=1e-4, init_keep=0.5, seed=0):
  """A clone of a Sequential/Functional tf_keras model with every Dense and Conv
  layer wrapped in `L0Gate` (sharing the layers' weights)."""
  return kernel_wrappers.wrap_kernels(
      model, lambda layer: L0Gate(layer, strength=strength, init_keep=init_keep, seed=seed))


def strip(model):
  """A plain model whose kernels are theta * z_test (exact zeros where the gate is shut)."""
  return kernel_wrappers.strip_kernels(
      model, L0Gate, lambda wrapper: wrapper.layer.kernel * wrapper.gates(False))
