"""Loss gradients of a wrapped Keras 3 model's prunable weights, on any backend.

SNIP and RigL need d loss / d w_eff, the gradient with respect to the weight
the layer computes with (w_eff = w * mask), for pruned weights too: a pruned
weight's gradient with respect to w is 0, but RigL regrows the pruned
weights whose w_eff-gradient is largest. So the model runs through
`stateless_call` with w_eff in place of each wrapped weight and every mask at 1,
and the gradient is taken with respect to those inputs. The forward pass runs
with training=False: nothing is counted or stepped, dropout is off and batch
norm uses its moving statistics (RigL's paper takes the gradient of a
training step; the difference is that of BN's batch vs moving statistics).

Keras 3 has no backend-neutral gradient function; its own trainers write one
per backend, and so does this module (three lines each).
"""
import sys

import numpy as np

from keras_signflip.keras3 import prune as prune_lib
from keras_signflip.keras3 import state as state_lib
from keras_signflip.keras3._framework import keras, ops

__all__ = ["effective_weight_gradients"]


def _grad(fn, inputs):
  """d fn(inputs) / d inputs for a list of backend tensors."""
  backend = keras.backend.backend()
  if backend == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    return jax.grad(fn)(inputs)
  if backend == "tensorflow":
    tf = sys.modules["tensorflow"]  # the backend itself (this family imports no TF of its own)
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      value = fn(inputs)
    return tape.gradient(value, inputs)
  if backend == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    inputs = [t.detach().requires_grad_(True) for t in inputs]
    return list(torch.autograd.grad(fn(inputs), inputs))
  raise ValueError(f"keras_signflip: no gradient rule for the {backend!r} backend; "
                   "use TensorFlow, JAX or PyTorch.")


def effective_weight_gradients(model, batches, loss):
  """[d loss / d w_eff summed over `batches`] per `flip_states(model)`, as float32 NumPy.

  Args:
    model: a built model wrapped by `prune_sign_flip`.
    batches: an iterable of (x, y) pairs.
    loss: a Keras loss (name, function or instance); the mean over each batch.
  """
  loss_fn = keras.losses.get(loss)
  states = prune_lib.flip_states(model)
  trainable, non_trainable = model.trainable_variables, model.non_trainable_variables
  index = lambda variables, v: next(i for i, u in enumerate(variables) if u is v)  # noqa: E731
  positions = [index(trainable, s.weight) for s in states]
  non_trainable_values = [ops.convert_to_tensor(v) for v in non_trainable]
  for s in states:
    non_trainable_values[index(non_trainable, s.mask)] = ops.ones_like(
        ops.convert_to_tensor(s.mask))
  values = [ops.copy(v) for v in trainable]  # tensors (TF would hand back the variable)
  for s, i in zip(states, positions):
    values[i] = ops.multiply(values[i], ops.cast(s.mask, values[i].dtype))
  totals = [np.zeros(s.weight.shape, np.float32) for s in states]
  for x, y in batches:
    def loss_of(inputs, x=x, y=y):
      predictions, _ = model.stateless_call(inputs, non_trainable_values, x, training=False)
      return ops.mean(loss_fn(y, predictions))
    grads = _grad(loss_of, values)
    for j, i in enumerate(positions):
      totals[j] += ops.convert_to_numpy(state_lib.float32_value(grads[i]))
  return totals
