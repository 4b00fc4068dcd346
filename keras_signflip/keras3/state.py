"""Per-weight pruning state of the Keras 3 family, and flip counting on it.

Each prunable weight has, in Keras variables owned by the wrapper:

| variable | dtype | meaning |
|---|---|---|
| mask | int8 | 1 kept, 0 pruned (float masks of older files load as int8) |
| threshold | float32 | the lowest kept score at the last mask update |
| prev_sign | int8 | sign(w * mask) when last counted |
| flips | int32 | sign flips while unpruned |
| reference | float32 | the weight at the reference point (only for criteria that read it) |
| flips_at_update | int32 | flips at the last mask update (only for criteria with `uses_window`) |

Flips are counted where the weight is read: each training forward pass
compares sign(w * mask) with `prev_sign`, i.e. it counts the flip made by
the previous optimizer step. `count_pending` does the same count on the
host; mask updates, `flip_counts` and the callback's epoch and train ends
call it, so counts are never a step behind when they are read. (The tf_keras
family counts in a variable constraint after the step instead: on JAX a
constraint cannot read the mask, which is a model variable.)
"""
from typing import NamedTuple

from keras_signflip.keras3._framework import compiled, keras, ops

__all__ = ["PruningState", "FlipState", "signs", "counted", "count", "count_pending",
           "sync_signs", "float32_value", "float32_copy"]


class PruningState(NamedTuple):
  """The pruning variables of one prunable weight tensor (the table above; named
  `FlipState` in 0.3). A gradient criterion's sum of w * g is an optimizer variable
  (`gradient_noise.grad_product`), so it is not here."""
  weight: keras.Variable
  mask: keras.Variable       # int8: read twice a step (the forward product and its
                             # gradient), 1 byte a weight instead of 4
  threshold: keras.Variable
  prev_sign: keras.Variable
  flips: keras.Variable
  reference: keras.Variable
  key: int  # per-tensor integer (`criteria.tensor_key`) for the `Random` criterion
  flips_at_update: keras.Variable = None  # int32: flips at the last mask update (`uses_window`)


FlipState = PruningState  # its 0.3 name


def signs(values):
  return ops.cast(ops.sign(values), "int8")


def counted(masked, prev_sign, flips):
  """(flips + (prev_sign * sign(masked) < 0), sign(masked)): the new count and sign.

  Written per backend, as each ran it fastest on CPU (measured with
  benchmarks/overhead.py, whose results hold the figures):
  - JAX compiles the train step with XLA, which fuses the ops; selects on
    comparisons avoid its slow sign op, int8 arithmetic and float product.
  - TensorFlow (Keras 3 leaves its train step uncompiled on CPU) runs each
    op as its own kernel: the fewest ops win, prev_sign * masked compared in
    the float dtype.
  - PyTorch also runs op by op, and is fastest with the product taken in
    int8 and the bool added as it is.
  """
  backend = keras.backend.backend()
  if backend == "jax":
    positive, negative = ops.greater(masked, 0), ops.less(masked, 0)
    one = ops.ones_like(prev_sign)
    new_sign = ops.where(positive, one, ops.where(negative, -one, ops.zeros_like(one)))
    flipped = ops.where(ops.greater(prev_sign, 0), negative,
                        ops.logical_and(ops.less(prev_sign, 0), positive))
    return ops.add(flips, ops.cast(flipped, "int32")), new_sign
  new_sign = signs(masked)
  if backend == "torch":
    return ops.add(flips, ops.less(ops.multiply(prev_sign, new_sign), 0)), new_sign
  flipped = ops.less(ops.multiply(ops.cast(prev_sign, masked.dtype), masked), 0)
  return ops.add(flips, ops.cast(flipped, "int32")), new_sign


def _store(state, counts):
  """Assigns `counted`'s (flips, prev_sign)."""
  state.flips.assign(counts[0])
  state.prev_sign.assign(counts[1])


def count(state, masked):
  """flips += prev_sign * masked < 0; prev_sign = sign(masked)."""
  _store(state, counted(ops.stop_gradient(masked), ops.convert_to_tensor(state.prev_sign),
                        ops.convert_to_tensor(state.flips)))


def float32_value(variable):
  return ops.cast(ops.convert_to_tensor(variable), "float32")


def float32_copy(variable):
  """A float32 copy in its own buffer (JAX donates, PyTorch updates in place:
  a variable must never share storage with another)."""
  return ops.copy(float32_value(variable))


def _masked_value(weight, mask):
  """w * mask in float32, from tensors."""
  return ops.multiply(ops.cast(weight, "float32"), ops.cast(mask, "float32"))


def _masked(state):
  return _masked_value(float32_value(state.weight), state.mask)


@compiled
def _pending(weight, mask, prev_sign, flips):
  return counted(_masked_value(weight, mask), prev_sign, flips)


def count_pending(state):
  """Counts, on the host, a flip the last optimizer step made (idempotent)."""
  _store(state, _pending(*[ops.convert_to_tensor(v) for v in
                           (state.weight, state.mask, state.prev_sign, state.flips)]))


def sync_signs(state):
  """prev_sign := sign(w * mask): after changing weights outside a step."""
  state.prev_sign.assign(signs(_masked(state)))
