"""SNIP: prune once at initialisation by connection sensitivity (Lee et al. 2019).

For every wrapped weight w with loss gradient g summed over a few batches,

    s = |w * g|           (SNIP's normalisation by sum(s) does not change the ranking)

and the `sparsity` lowest-scored weights of the whole model are pruned before
any training step (one global ranking, ties by |w| then position, as every
criterion). Train the result with a schedule that prunes no further (e.g.
`ConstantSparsity(sparsity, 0)`: its masks are already at the target, and
masks never grow), the "static sparse training" of the literature.
"""
import numpy as np

from keras_signflip import arguments
from keras_signflip.tf_keras import dynamic
from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras import selection
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras._compat import keras, tf

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
  states = prune_lib.flip_states(model)
  if not states:
    raise ValueError("snip needs a model wrapped by prune_sign_flip (no wrapped weights found).")
  loss_fn = keras.losses.get(loss)
  weights = [s.weight for s in states]
  grads = [tf.zeros_like(w, tf.float32) for w in weights]
  for x, y in arguments.first_batches(data, batches, "snip"):
    with tf.GradientTape() as tape:
      value = tf.reduce_mean(loss_fn(y, model(x, training=False)))
    for i, g in enumerate(tape.gradient(value, weights)):
      grads[i] += tf.cast(tf.convert_to_tensor(g), tf.float32)
  return {s.weight.name: np.abs(state_lib.float32_value(s.weight).numpy() * g.numpy())
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
  states = prune_lib.flip_states(model)
  total = sum(int(np.prod(s.weight.shape)) for s in states)
  keep = selection.select_top_k(
      [tf.constant(scores[s.weight.name], tf.float32) for s in states],
      selection.kept_count(total, sparsity),
      [tf.abs(state_lib.float32_value(s.weight)) for s in states])
  dynamic.set_masks([(s, m.numpy(), np.zeros(m.shape, bool)) for s, m in zip(states, keep)],
                    getattr(model, "optimizer", None))
  return {s.weight.name: float(1 - np.mean(s.mask.numpy())) for s in states}
