"""Hoyer-Square (Yang, Wen & Li 2020) on Keras 3, any backend: the penalty as a
variable regularizer.

    H_S(w) = (sum |w|)^2 / (sum w^2 + eps)        per kernel, eps = 1e-12

The formula and `threshold_prune` are `keras_signflip.hoyer_square`'s, shared
with the tf_keras family; what is Keras 3's own is how the penalty joins the
loss: `add_hoyer_square` sets `strength * H_S` as the regularizer of every
prunable kernel (Keras 3 adds variable regularizers to the loss on every backend).
"""
from keras_signflip import array_namespace
from keras_signflip import hoyer_square as hoyer_lib
from keras_signflip.keras3 import prune as prune_lib
from keras_signflip.keras3._framework import keras, ops

# Deliberately the same names as tf_keras/hoyer.py: the formula is bound to this family's
# array namespace and the regularizer registered with its Keras.
__all__ = ["HoyerSquare", "hoyer_square", "add_hoyer_square", "threshold_prune"]

EPSILON = hoyer_lib.EPSILON
hoyer_square = array_namespace.bind(hoyer_lib.hoyer_square, ops)
threshold_prune = hoyer_lib.threshold_prune


@keras.saving.register_keras_serializable(package="keras_signflip")
class HoyerSquare(hoyer_lib.Penalty, keras.regularizers.Regularizer):
  """`strength * H_S(w)` as a kernel regularizer (`kernel_regularizer=HoyerSquare(1e-4)`)."""
  xp = ops


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
