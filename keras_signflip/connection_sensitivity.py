"""SNIP: prune once at initialisation by connection sensitivity (Lee et al. 2019), for
both families.

For every wrapped weight w with loss gradient g summed over a few batches,

    s = |w * g|           (SNIP's normalisation by sum(s) does not change the ranking)

and the `sparsity` lowest-scored weights of the whole model are pruned before
any training step (one global ranking, ties by |w| then position, as every
criterion). Train the result with a schedule that prunes no further (e.g.
`ConstantSparsity(sparsity, 0)`: its masks are already at the target, and
masks never grow), the "static sparse training" of the literature. The
gradient, the ranking and the assignment are the model's family's
(`keras_signflip.families.Family`); on Keras 3 g is taken with respect to the
weight the layer computes with (w * mask, `keras_signflip.keras3.gradients`).
"""
import numpy as np

from keras_signflip import arguments
from keras_signflip import array_namespace
from keras_signflip import families
from keras_signflip import mask_rules

__all__ = ["snip", "sensitivities"]


def sensitivities(model, data, loss, batches=1):
  """{weight name: |w * g|} with g summed over the first `batches` of `data`.

  Args:
    model: a model wrapped by `prune_sign_flip`.
    data: an iterable of (x, y) batches (a tf.data.Dataset, a list, ...).
    loss: a Keras loss (name, function or instance).
    batches: how many batches to sum gradients over, >= 1.
  """
  arguments.check_count("batches", batches)
  family = families.of(model)
  states = family.flip_states(model)
  if not states:
    raise ValueError("snip needs a model wrapped by prune_sign_flip (no wrapped weights found).")
  grads = family.snip_gradients(model, arguments.first_batches(data, batches, "snip"), loss)
  return {families.weight_name(s.weight): np.abs(family.to_numpy(s.weight).astype(np.float32) * g)
          for s, g in zip(states, grads)}


def snip(model, data, sparsity, loss, batches=1):
  """Sets `model`'s masks to SNIP's at `sparsity` (global), zeroing the pruned weights.

  Args:
    model: a model wrapped by `prune_sign_flip`, before training.
    data, loss, batches: as `sensitivities`.
    sparsity: the fraction of all wrapped weights to prune, in [0, 1).

  Returns:
    {weight name: sparsity} of the new masks.
  """
  arguments.check_sparsity(sparsity)
  scores = sensitivities(model, data, loss, batches)  # every check before any change
  family = families.of(model)
  states = family.flip_states(model)
  weights = [family.to_numpy(s.weight).astype(np.float32) for s in states]
  kept = int(mask_rules.kept_count(sum(w.size for w in weights), sparsity, array_namespace.NUMPY))
  keep = family.select_top_k([scores[families.weight_name(s.weight)] for s in states], kept,
                             [np.abs(w) for w in weights])
  family.set_masks([(s, np.asarray(family.to_numpy(m)), np.zeros(w.shape, bool))
                    for s, m, w in zip(states, keep, weights)],
                   getattr(model, "optimizer", None))
  return {families.weight_name(s.weight): float(1 - np.mean(family.to_numpy(s.mask) > 0))
          for s in states}
