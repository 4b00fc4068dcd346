"""Hoyer-Square (Yang, Wen & Li 2020) on Keras 3, any backend: the rule of
`keras_signflip.tf_keras.hoyer`.

    H_S(w) = (sum |w|)^2 / (sum w^2 + eps)        per kernel, eps = 1e-12

`add_hoyer_square` sets `strength * H_S` as the regularizer of every prunable
kernel (Keras 3 adds variable regularizers to the loss on every backend);
`threshold_prune` then prunes the weights with |w| below a threshold.
"""
import numpy as np

from keras_signflip import arguments
from keras_signflip.keras3 import mask_update
from keras_signflip.keras3 import prune as prune_lib
from keras_signflip.keras3 import state as state_lib
from keras_signflip.keras3._keras import keras, ops

__all__ = ["HoyerSquare", "hoyer_square", "add_hoyer_square", "threshold_prune"]

EPSILON = 1e-12


def hoyer_square(w):
  """(sum |w|)^2 / (sum w^2 + eps), a scalar."""
  w = ops.cast(w, "float32")
  return ops.square(ops.sum(ops.abs(w))) / (ops.sum(ops.square(w)) + EPSILON)


@keras.saving.register_keras_serializable(package="keras_signflip")
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
  return [l.kernel for l in model._flatten_layers()  # pylint: disable=protected-access
          if isinstance(getattr(l, "kernel", None), keras.Variable)]


def add_hoyer_square(model, strength):
  """Regularises the model's prunable kernels (the wrapped weights of a
  `prune_sign_flip` model, else every layer's kernel) by `strength * H_S`.
  Call before `compile`; returns the number of kernels regularised. The
  regularizer lives on the variables: after `load_model`, call it again."""
  regularizer = HoyerSquare(strength)  # validates
  kernels = _kernels(model)
  if not kernels:
    raise ValueError("add_hoyer_square found no kernels in the model.")
  for k in kernels:
    k.regularizer = regularizer
  return len(kernels)


def threshold_prune(model, threshold, optimizer=None):
  """Prunes every wrapped weight with |w| < `threshold` (masks only shrink),
  zeroing it, its flips and its optimizer slots (pass the optimizer, or the
  model's is used); returns {weight path: sparsity}."""
  arguments.check_nonnegative("threshold", threshold)
  states = prune_lib.flip_states(model)
  if not states:
    raise ValueError("threshold_prune needs a model wrapped by prune_sign_flip.")
  for s in states:
    state_lib.count_pending(s)  # a flip the last step made is counted before any zeroing
  masks = [ops.logical_and(ops.greater(ops.convert_to_tensor(s.mask), 0),
                           ops.greater_equal(ops.abs(ops.convert_to_tensor(s.weight)), threshold))
           for s in states]
  mask_update.apply_masks(states, masks, float(threshold),
                          optimizer or getattr(model, "optimizer", None))
  return {s.weight.path: float(1 - np.mean(ops.convert_to_numpy(s.mask))) for s in states}
