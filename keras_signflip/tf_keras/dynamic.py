"""The tf_keras side of dynamic sparse training (`keras_signflip.dynamic`):
the loss gradient RigL grows by, and the assignment of new masks."""
import numpy as np

from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras._compat import keras, tf

__all__ = ["optimizer_slots", "dense_gradients", "set_masks"]


def optimizer_slots(optimizer, weight):
  """The optimizer's slot variables of `weight` (current and legacy tf_keras optimizers)."""
  if optimizer is None:
    return []
  name = getattr(weight, "_shared_name", None) or weight.name.split(":")[0]
  variables = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
  return [v for v in variables if tuple(v.shape) == tuple(weight.shape)
          and (f"/{name}:" in v.name or f"/{name}/" in v.name)]


def dense_gradients(model, states, batch, loss):
  """d loss / d w per state on one (x, y) batch, as NumPy. TF-MOT's wrapper
  computes with the weight variable itself (pruned entries 0), so this is the
  gradient of the weight the layer sees, pruned entries included."""
  x, y = batch
  with tf.GradientTape() as tape:
    value = tf.reduce_mean(keras.losses.get(loss)(y, model(x, training=True)))
  return [tf.convert_to_tensor(g).numpy()
          for g in tape.gradient(value, [s.weight for s in states])]


def set_masks(changes, optimizer):
  """Assigns each (state, new mask, grown) and zeroes what was grown (weight,
  slots), the flips of pruned weights, and re-syncs the signs."""
  for s, new, grown in changes:
    s.mask.assign(new.astype(s.mask.dtype.as_numpy_dtype))
    for v in [state_lib.master_variable(s.weight)] + optimizer_slots(optimizer, s.weight):
      v.assign(np.where(grown, 0, v.numpy()).astype(v.dtype.as_numpy_dtype))
    s.flips.assign(np.where(new, s.flips.numpy(), 0).astype(np.int32))
    state_lib.apply_mask(s)
    state_lib.sync_signs(s)
