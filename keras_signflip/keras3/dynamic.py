"""What the Keras 3 family gives the generic mask changers (`keras_signflip.dynamic`'s
SET and RigL, `keras_signflip.connection_sensitivity`'s SNIP, Hoyer's
`threshold_prune`): loss gradients (`gradients`), and the assignment of new masks."""
import numpy as np

from keras_signflip.keras3 import gradients
from keras_signflip.keras3 import mask_update
from keras_signflip.keras3 import state as state_lib
from keras_signflip.keras3._framework import ops

__all__ = ["dense_gradients", "set_masks"]


def dense_gradients(model, states, batch, loss):
  """d loss / d w_eff per state on one (x, y) batch (`gradients`), pruned entries included."""
  del states  # the same order: flip_states(model)
  return gradients.effective_weight_gradients(model, [batch], loss)


def set_masks(changes, optimizer):
  """Assigns each (state, new mask, grown); zeroes the weight and its optimizer slots
  where pruned or just grown, and the flips where pruned; re-syncs the signs."""
  for s, new, grown in changes:
    s.mask.assign(ops.cast(new, s.mask.dtype))
    kept = ops.convert_to_tensor(np.asarray(new & ~grown))  # what keeps its value
    for v in [s.weight] + mask_update.optimizer_slots(optimizer, s.weight):
      value = ops.convert_to_tensor(v)
      v.assign(ops.where(kept, value, ops.zeros_like(value)))
    flips = ops.convert_to_tensor(s.flips)
    s.flips.assign(ops.where(ops.convert_to_tensor(new), flips, ops.zeros_like(flips)))
    state_lib.sync_signs(s)
