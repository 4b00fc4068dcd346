"""Hoyer-Square (Yang, Wen & Li 2020, DeepHoyer): a scale-invariant sparsity penalty.

Per kernel,

    H_S(w) = (sum |w|)^2 / (sum w^2 + eps)        (n for a dense w, 1 for a one-hot one)

added to the loss as `strength * sum over kernels of H_S`; eps (1e-12) keeps an
all-zero kernel finite. Training with it drives most weights towards 0 without
fixing how many; `threshold_prune` then prunes the weights with |w| below a
threshold (the paper's trimming; the sparsity reached is what the penalty
made, so a comparison sweeps `strength` to reach its targets).

    hoyer.add_hoyer_square(model, 1e-4)             # before compile
    model.fit(...)
    hoyer.threshold_prune(model, 1e-3)              # a prune_sign_flip model: masks shrink
"""
import numpy as np

from keras_signflip import arguments
from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras._compat import keras, tf

__all__ = ["HoyerSquare", "hoyer_square", "add_hoyer_square", "threshold_prune"]

EPSILON = 1e-12


def hoyer_square(w):
  """(sum |w|)^2 / (sum w^2 + eps), a scalar."""
  w = tf.cast(w, tf.float32)
  return tf.square(tf.reduce_sum(tf.abs(w))) / (tf.reduce_sum(tf.square(w)) + EPSILON)


@keras.utils.register_keras_serializable(package="keras_signflip")
class HoyerSquare(keras.regularizers.Regularizer):
  """`strength * H_S(w)` as a kernel regularizer (`kernel_regularizer=HoyerSquare(1e-4)`)."""

  def __init__(self, strength=1e-4):
    arguments.check_nonnegative("strength", strength)
    self.strength = float(strength)

  def __call__(self, w):
    return self.strength * hoyer_square(w)

  def get_config(self):
    return {"strength": self.strength}


def _kernels(model):
  wrapped = prune_lib.flip_states(model)
  if wrapped:
    return [s.weight for s in wrapped]
  return [l.kernel for l in model.submodules if isinstance(getattr(l, "kernel", None), tf.Variable)]


def add_hoyer_square(model, strength):
  """Adds `strength * sum of H_S` over the model's prunable kernels (the wrapped
  weights of a `prune_sign_flip` model, else every layer's kernel) to its loss.
  Call before `compile`; returns the number of kernels regularised."""
  regularizer = HoyerSquare(strength)  # validates
  kernels = _kernels(model)
  if not kernels:
    raise ValueError("add_hoyer_square found no kernels in the model.")
  model.add_loss(lambda: tf.add_n([regularizer(k) for k in kernels]))
  return len(kernels)


def threshold_prune(model, threshold):
  """Prunes every wrapped weight with |w| < `threshold` (masks only shrink),
  zeroing it; returns {weight name: sparsity}. `model` is wrapped by
  `prune_sign_flip` (train on with a schedule that prunes no further)."""
  arguments.check_nonnegative("threshold", threshold)
  states = prune_lib.flip_states(model)
  if not states:
    raise ValueError("threshold_prune needs a model wrapped by prune_sign_flip.")
  for s in states:
    keep = tf.logical_and(s.mask > 0, tf.abs(state_lib.float32_value(s.weight)) >= threshold)
    s.mask.assign(tf.cast(keep, s.mask.dtype))
    s.flips.assign(s.flips * tf.cast(keep, tf.int32))
    state_lib.apply_mask(s)
    state_lib.sync_signs(s)
  return {s.weight.name: float(1 - np.mean(s.mask.numpy())) for s in states}
