"""Hoyer-Square (Yang, Wen & Li 2020, DeepHoyer) on tf_keras: the penalty as a model loss.

    H_S(w) = (sum |w|)^2 / (sum w^2 + eps)        per kernel, eps = 1e-12

The formula and `threshold_prune` are `keras_signflip.hoyer_square`'s, shared
with the Keras 3 family; what is tf_keras's own is how the penalty joins the
loss (`model.add_loss`).

    hoyer.add_hoyer_square(model, 1e-4)             # before compile
    model.fit(...)
    hoyer.threshold_prune(model, 1e-3)              # a prune_sign_flip model: masks shrink
"""
from keras_signflip import array_namespace
from keras_signflip import hoyer_square as hoyer_lib
from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras._framework import keras, tf, xp

# Deliberately the same names as keras3/hoyer.py: the formula is bound to this family's
# array namespace and the regularizer registered with its Keras.
__all__ = ["HoyerSquare", "hoyer_square", "add_hoyer_square", "threshold_prune"]

EPSILON = hoyer_lib.EPSILON
hoyer_square = array_namespace.bind(hoyer_lib.hoyer_square, xp)
threshold_prune = hoyer_lib.threshold_prune


@keras.utils.register_keras_serializable(package="keras_signflip")
class HoyerSquare(hoyer_lib.Penalty, keras.regularizers.Regularizer):
  """`strength * H_S(w)` as a kernel regularizer (`kernel_regularizer=HoyerSquare(1e-4)`)."""
  xp = xp


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
