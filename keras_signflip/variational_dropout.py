"""Sparse variational dropout (Molchanov, Ashukha & Vetrov 2017): formulas and `KLWarmup`,
for both families.

Every kernel weight theta gets a learnt log sigma^2:

    log alpha = clip(log sigma^2 - log(theta^2 + 1e-8), -10, 10)
    training:  x @ theta + sqrt(x^2 @ sigma^2 + 1e-8) * eps,  eps ~ N(0, 1) per output
               (the local reparameterisation trick; convolutions alike)
    test:      x @ (theta where log alpha < threshold (3), else 0)  -- the pruned weights
    -KL ~= k1 * sigmoid(k2 + k3 * log alpha) - 0.5 * log1p(exp(-log alpha)) - k1,
    k1, k2, k3 = 0.63576, 1.87320, 1.48695 (the paper's approximation),

added to the loss as `strength * kl_scale * sum KL` (the paper's strength is
1 / training-set size; `KLWarmup` ramps kl_scale from 0 to 1). Written
against `xp` (`keras_signflip.array_namespace`); each family's `variational`
module draws the noise and wraps the layer.
"""
from keras_signflip import arguments
from keras_signflip import families
from keras_signflip.callback_base import Callback

__all__ = ["K1", "K2", "K3", "THRESHOLD", "kl_approximation", "log_alpha", "kl_penalty",
           "kept_kernel", "KLWarmup"]

K1, K2, K3 = 0.63576, 1.87320, 1.48695
THRESHOLD = 3.0  # log alpha at or above which a weight is pruned


def kl_approximation(log_alpha_value, xp):
  """KL(q || prior) per weight, Molchanov et al.'s approximation (see above)."""
  return -(K1 * xp.sigmoid(K2 + K3 * log_alpha_value)
           - 0.5 * xp.log1p(xp.exp(-log_alpha_value)) - K1)


def log_alpha(theta, log_sigma2, xp):
  """clip(log sigma^2 - log(theta^2 + 1e-8), -10, 10)."""
  return xp.clip(xp.convert_to_tensor(log_sigma2) - xp.log(xp.square(theta) + 1e-8),
                 -10.0, 10.0)


def kl_penalty(strength, kl_scale, log_alpha_value, xp):
  """strength * kl_scale * sum KL: the layer's loss."""
  return strength * xp.convert_to_tensor(kl_scale) * xp.sum(
      kl_approximation(log_alpha_value, xp))


def kept_kernel(theta, log_alpha_value, threshold, xp):
  """theta where log alpha < threshold, else 0: the kernel at test time."""
  return xp.where(xp.less(log_alpha_value, threshold), theta, xp.zeros_like(theta))


class KLWarmup(Callback):
  """kl_scale = clip((step - delay) / steps, 0, 1) on every `VariationalDropout`
  of the model (either family's): 0 for `delay` steps, then a linear warm-up
  over `steps`.

  Args:
    steps: the warm-up's length in training steps, an integer >= 1.
    delay: steps before it starts, >= 0. Defaults to 0.
  """

  def __init__(self, steps, delay=0):
    super().__init__()
    arguments.check_count("steps", steps)
    arguments.check_nonnegative("delay", delay)
    self.steps, self.delay = steps, delay

  def on_train_batch_begin(self, batch, logs=None):
    model = families.synced(self.model)  # on JAX: the assignment reaches the step
    step = int(families.of(model).to_numpy(model.optimizer.iterations))
    scale = min(1.0, max(0.0, (step - self.delay) / self.steps))
    for layer in model._flatten_layers():  # pylint: disable=protected-access
      if getattr(layer, "kl_scale", None) is not None:  # a VariationalDropout
        layer.kl_scale.assign(scale)
