"""Sign-flip counting and re-masking after every optimizer step, in-graph.

Every prunable weight gets a variable constraint. tf_keras optimizers (the
current and the legacy ones) apply a variable's constraint right after its
update, inside the same training step, so the constraint sees each step's
result:

    w         = w_after * mask      # pruned weights exactly zero after the step
    flips    += prev_sign * sign(w) < 0
    prev_sign = sign(w)

Zero has no sign: moving to or from exactly 0 is not a flip. Since pruned
weights are 0 after masking, and the mask update zeroes their `prev_sign`,
only unpruned weights can count a flip. `prev_sign` is
the sign after the previous step, so a user's own `set_weights` between steps
must be followed by `sync_signs` (the callbacks and `set_reference` do it).

Tables with sparse gradients (an `Embedding`'s) take another route: a legacy
optimizer refuses constraints on them, and a new one would run the constraint
over the whole table every step. Their wrapper counts flips and re-masks them
at the start of the next forward pass, and whenever counts are read
(`count_table`): over the rows the last training batch looked up
(`touched`, one int8 per row) when the optimizer changes only those rows
(`optimizers.updates_only_gradient_rows`: a step then costs one pass over the
table's rows plus the touched rows' entries), else over the whole table (as a
constraint would). Until then the pruned entries of rows the optimizer just
changed hold what it wrote; every read through the wrapper re-masks first.
"""
from typing import NamedTuple

from keras_signflip.tf_keras._framework import fused, tf

__all__ = ["PruningState", "FlipState", "AfterStepConstraint", "attach", "sync_signs", "apply_mask",
           "count_table", "record_touched_rows", "master_variable", "float32_value",
           "signs", "sign_dtype"]


class PruningState(NamedTuple):
  """The pruning variables of one prunable weight tensor: its mask, its flip count and
  what the criteria and the mask updates read (named `FlipState` in 0.3)."""
  weight: tf.Variable     # the layer's own weight (any float dtype)
  mask: tf.Variable       # weight's true dtype, 0/1 (TF-MOT's)
  threshold: tf.Variable  # scalar: the lowest kept score at the last mask update (TF-MOT's
                          # variable of that name; a score, not a magnitude cut-off)
  prev_sign: tf.Variable  # int8 (int32 multi-worker), weight's shape: sign after the last step
  flips: tf.Variable      # int32, weight's shape: flips while unpruned
  reference: tf.Variable  # float32, weight's shape: reference weights
  key: int                # per-tensor integer (`criteria.tensor_key`) for `Random`
  touched: tf.Variable = None  # int8 per row of a sparse-gradient table, else None
  flips_at_update: tf.Variable = None  # int32, flips at the last mask update (`uses_window`)
  grad_product: tf.Variable = None  # float32, sum of w * g over steps (`uses_gradients`)


def master_variable(weight):
  """The variable holding a weight's own (master) values: under mixed precision
  the float32 variable inside the AutoCastVariable, whose reads would be float16."""
  return getattr(weight, "_variable", weight)


def float32_value(weight):
  """The float32 value of a weight, also for mixed-precision AutoCastVariables."""
  return tf.cast(tf.convert_to_tensor(master_variable(weight)), tf.float32)


def signs(values, dtype=tf.int8):
  return tf.cast(tf.sign(values), dtype)


def sign_dtype():
  """int8, or int32 under MultiWorkerMirroredStrategy (its collectives have no int8)."""
  strategy = tf.distribute.get_strategy()
  multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
  return tf.int32 if multi_worker else tf.int8


FlipState = PruningState  # its 0.3 name


class AfterStepConstraint:
  """Variable constraint: count flips against `prev_sign`, then re-mask.

  Runs the layer's own constraint first, if it had one.
  """

  def __init__(self, state, original=None):
    # The weight's own variables hold this constraint, so it keeps the state
    # without the weight: a weight -> constraint -> weight cycle would leave
    # whole models to the cyclic garbage collector.
    self.state = state._replace(weight=None)
    self.original = original

  def __call__(self, weight):
    value = self.original(weight) if self.original is not None else weight
    value = tf.convert_to_tensor(value)
    state = self.state
    masked, new_sign, flips = _mask_and_count(value, tf.convert_to_tensor(state.mask),
                                              tf.convert_to_tensor(state.prev_sign),
                                              tf.convert_to_tensor(state.flips))
    state.flips.assign(flips)
    state.prev_sign.assign(new_sign)
    return masked


# XLA fuses the element-wise passes (mask, sign, compare, add) into one, so the
# weight is read once a step, not once an op (benchmarks/overhead.py measures
# what the count costs an epoch). prev_sign * masked has the
# sign of prev_sign * sign(masked), compared in the float dtype (XLA's CPU
# backend is slow at int8 arithmetic). reduce_retracing: one trace serves
# every weight shape.
@fused
def _mask_and_count(value, mask, prev_sign, flips):
  """masked = value * mask; (masked, sign(masked), flips + (prev_sign * masked < 0))."""
  masked = value * tf.cast(mask, value.dtype)
  flipped = tf.math.less(tf.cast(prev_sign, masked.dtype) * masked, 0)
  return masked, tf.cast(tf.sign(masked), prev_sign.dtype), flips + tf.cast(flipped, tf.int32)


def _count(state, masked):
  """flips += prev_sign * sign(masked) < 0; prev_sign = sign(masked) (whole tensor)."""
  new_sign = signs(masked, state.prev_sign.dtype)
  state.flips.assign_add(tf.cast(tf.math.less(state.prev_sign * new_sign, 0), tf.int32))
  state.prev_sign.assign(new_sign)


def _components(variable):
  """The tf.Variables that hold `_constraint` for a (wrapped) variable."""
  inner = getattr(variable, "_variable", variable)  # AutoCastVariable
  values = getattr(inner, "values", None)           # tf.distribute variables
  return list(values) if values else [inner]


def attach(state):
  """Installs the after-step constraint on `state.weight`; idempotent."""
  current = state.weight.constraint
  if isinstance(current, AfterStepConstraint):
    current = current.original
  constraint = AfterStepConstraint(state, original=current)
  for v in _components(state.weight):
    v._constraint = constraint  # pylint: disable=protected-access


def sync_signs(state):
  """prev_sign := sign(w * mask): call after changing weights outside a step."""
  state.prev_sign.assign(signs(float32_value(state.weight) *
                               tf.cast(state.mask, tf.float32), state.prev_sign.dtype))


def apply_mask(state):
  """w := w * mask in w's own dtype (exact): after weights changed outside a step."""
  weight = master_variable(state.weight)
  weight.assign(tf.where(tf.math.greater(state.mask, 0), tf.convert_to_tensor(weight),
                         tf.zeros([], weight.dtype)))


def record_touched_rows(state, ids):
  """Marks the rows a training batch looked up (`ids`, any shape) as touched."""
  rows = tf.unique(tf.reshape(tf.cast(ids, tf.int64), [-1]))[0]
  state.touched.scatter_update(tf.IndexedSlices(tf.ones_like(rows, tf.int8), rows))


def count_table(state, rows_only):
  """Counts the flips the last step made in a table and re-masks it (see above).

  `rows_only`: only the touched rows changed. Inside an XLA cluster
  (jit_compile), where row sets of data-dependent size cannot be gathered,
  the whole table is counted either way; the result is the same.
  """
  weight = master_variable(state.weight)
  if not rows_only or tf.__internal__.get_enclosing_xla_context() is not None:
    value = tf.convert_to_tensor(weight)
    masked = tf.where(state.mask > 0, value, tf.zeros_like(value))
    _count(state, masked)
    weight.assign(masked)
    state.touched.assign(tf.zeros_like(state.touched))
    return
  rows = tf.where(state.touched > 0)[:, 0]
  value = tf.gather(weight, rows)
  masked = tf.where(tf.gather(state.mask, rows) > 0, value, tf.zeros_like(value))
  new_sign = signs(masked, state.prev_sign.dtype)
  flipped = tf.cast(tf.gather(state.prev_sign, rows) * new_sign < 0, tf.int32)
  state.flips.scatter_add(tf.IndexedSlices(flipped, rows))
  state.prev_sign.scatter_update(tf.IndexedSlices(new_sign, rows))
  weight.scatter_update(tf.IndexedSlices(masked, rows))
  state.touched.scatter_update(tf.IndexedSlices(tf.zeros_like(rows, tf.int8), rows))
