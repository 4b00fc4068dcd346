"""SNIP on the Keras 3 path (Lee et al. 2019): the tf_keras path's rule, any backend.

    s = |w * g|,   g = d loss / d w_eff summed over a few batches

and the `sparsity` lowest-scored weights of the whole model are pruned before
training (one global ranking, ties by |w| then position). Train with a
schedule that prunes no further, e.g. `ConstantSparsity(sparsity, 0)`.
"""
import numpy as np

from keras_signflip import arguments
from keras_signflip.keras3 import dynamic
from keras_signflip.keras3 import gradients
from keras_signflip.keras3 import prune as prune_lib
from keras_signflip.keras3 import selection
from keras_signflip.keras3 import state as state_lib
from keras_signflip.keras3._keras import ops

__all__ = ["snip", "sensitivities"]


def sensitivities(model, data, loss, batches=1):
  """{weight path: |w * g|} with g summed over the first `batches` of `data`.

  Args:
    model: a built model wrapped by `prune_sign_flip`.
    data: an iterable of (x, y) batches.
    loss: a Keras loss (name, function or instance).
    batches: how many batches to sum gradients over, >= 1.
  """
  arguments.check_count("batches", batches)
  states = prune_lib.flip_states(model)
  if not states:
    raise ValueError("snip needs a model wrapped by prune_sign_flip (no wrapped weights found).")
  grads = gradients.effective_weight_gradients(
      model, arguments.first_batches(data, batches, "snip"), loss)
  return {s.weight.path: np.abs(ops.convert_to_numpy(state_lib.float32_value(s.weight)) * g)
          for s, g in zip(states, grads)}


def snip(model, data, sparsity, loss, batches=1):
  """Sets `model`'s masks to SNIP's at `sparsity` (global), zeroing the pruned weights.

  Returns:
    {weight path: sparsity} of the new masks.
  """
  arguments.check_sparsity(sparsity)
  scores = sensitivities(model, data, loss, batches)  # every check before any change
  states = prune_lib.flip_states(model)
  total = sum(int(np.prod(s.weight.shape)) for s in states)
  keep = selection.select_top_k(
      [ops.convert_to_tensor(scores[s.weight.path]) for s in states],
      selection.kept_count(total, sparsity),
      [ops.abs(state_lib.float32_value(s.weight)) for s in states])
  dynamic.set_masks([(s, ops.convert_to_numpy(m), np.zeros(m.shape, bool))
                     for s, m in zip(states, keep)], getattr(model, "optimizer", None))
  return {s.weight.path: float(1 - np.mean(ops.convert_to_numpy(s.mask))) for s in states}
