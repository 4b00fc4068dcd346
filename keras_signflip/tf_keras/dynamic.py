"""What the tf_keras family gives the generic mask changers (`keras_signflip.dynamic`'s
SET and RigL, `keras_signflip.connection_sensitivity`'s SNIP, Hoyer's
`threshold_prune`): loss gradients, and the assignment of new masks."""
import numpy as np

from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras._framework import keras, tf

__all__ = ["optimizer_slots", "dense_gradients", "summed_gradients", "set_masks"]


def optimizer_slots(optimizer, weight):
  """The optimizer's slot variables of `weight` (current and legacy tf_keras optimizers)."""
  if optimizer is None:
    return []
  name = getattr(weight, "_shared_name", None) or weight.name.split(":")[0]
  variables = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
  return [v for v in variables if tuple(v.shape) == tuple(weight.shape)
          and (f"/{name}:" in v.name or f"/{name}/" in v.name)]


def dense_gradients(model, states, batch, loss):
  """d loss / d w per state on one (x, y) batch, as NumPy (RigL's growth). TF-MOT's
  wrapper computes with the weight variable itself (pruned entries 0), so this
  is the gradient of the weight the layer sees, pruned entries included. The
  forward pass runs with training=True, as RigL's paper takes it."""
  x, y = batch
  with tf.GradientTape() as tape:
    value = tf.reduce_mean(keras.losses.get(loss)(y, model(x, training=True)))
  return [tf.convert_to_tensor(g).numpy()
          for g in tape.gradient(value, [s.weight for s in states])]


def summed_gradients(model, batches, loss):
  """[d loss / d w summed over `batches`] per wrapped weight, float32 NumPy (SNIP's
  sensitivity), with training=False: nothing is stepped or counted."""
  weights = [s.weight for s in prune_lib.flip_states(model)]
  loss_fn = keras.losses.get(loss)
  grads = [tf.zeros_like(w, tf.float32) for w in weights]
  for x, y in batches:
    with tf.GradientTape() as tape:
      value = tf.reduce_mean(loss_fn(y, model(x, training=False)))
    for i, g in enumerate(tape.gradient(value, weights)):
      grads[i] += tf.cast(tf.convert_to_tensor(g), tf.float32)
  return [g.numpy() for g in grads]


def set_masks(changes, optimizer):
  """Assigns each (state, new mask, grown); zeroes the weight and its optimizer slots
  where pruned or just grown, and the flips where pruned; re-syncs the signs."""
  for s, new, grown in changes:
    s.mask.assign(new.astype(s.mask.dtype.as_numpy_dtype))
    kept = new & ~grown  # what keeps its value
    for v in [state_lib.master_variable(s.weight)] + optimizer_slots(optimizer, s.weight):
      v.assign(np.where(kept, v.numpy(), 0).astype(v.dtype.as_numpy_dtype))
    s.flips.assign(np.where(new, s.flips.numpy(), 0).astype(np.int32))
    state_lib.sync_signs(s)
