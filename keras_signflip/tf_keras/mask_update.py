"""Mask updates by any criterion, layer or global scope, on TF-MOT's `Pruning`.

TF-MOT hard-wires abs(w) and a full sort into the private
`pruning_impl.Pruning._update_mask`; `CriterionPruning` replaces its mask
update and keeps the rest (distribution handling, summaries). TF-MOT also
re-masks every weight in every forward pass (`weight_mask_op`), multiplying in
the compute dtype and writing the product back: under mixed precision that
rounds the float32 master weights to float16 every step (and fails outright
when a float32 layer follows float16 ones). Here that write is gone: the
after-step constraint (`state.py`) masks in the weight's own dtype after every
optimizer step, and a mask update zeroes the newly pruned weights itself, in
the same op, before the forward pass reads them. At a pruning step (the
schedule says so):

    score = criterion(w, flips, reference); score = -inf where mask == 0
    k     = max(round(n * (1 - sparsity)), 1)          # TF-MOT's kept count
    if min_flips:   # flip-triggered: prune every unpruned weight with
                    # flips >= min_flips, but never below k kept
        k = max(k, #unpruned weights with flips < min_flips)
    mask  = mask AND top_k(score)                       # monotone
    flips = flips * mask; prev_sign = prev_sign * mask  # pruned: no count
    w     = w * mask                                    # in w's own dtype: exact

n and top_k run over one tensor (layer scope) or all wrapped tensors of the
model together (global scope).
"""
from keras_signflip import criteria as criteria_lib
from keras_signflip import mask_rules
from keras_signflip import units as units_lib
from keras_signflip.tf_keras import selection
from keras_signflip.tf_keras._framework import fused, tf, xp
from keras_signflip.tf_keras.state import float32_value, master_variable

from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl  # pylint: disable=g-direct-tensorflow-import
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils  # pylint: disable=g-direct-tensorflow-import

__all__ = ["CriterionPruning", "compute_masks"]

_XP = tf.experimental.numpy
_NAN_MESSAGE = ("keras_signflip: a prunable weight holds NaN or Inf at a mask "
                "update; the masks were not changed. Lower the learning rate or "
                "add gradient clipping, then resume from the last checkpoint.")


def weight_state(s):
  """What a criterion reads of a `PruningState` (criteria.WeightState)."""
  # Float state reads through float32_value: under mixed precision Keras makes
  # these AutoCastVariables, which read as float16 inside the layer's call.
  as_float32 = lambda v: None if v is None else float32_value(v)  # noqa: E731
  return criteria_lib.WeightState(s.flips, as_float32(s.reference), s.key, s.flips_at_update,
                                  as_float32(s.grad_product))


# One fused pass per tensor (XLA): the criterion's score, the -inf of pruned
# weights and the finiteness check; as separate TF kernels each read the
# whole tensor again (benchmarks/overhead.py times the mask update).
# Criteria whose `xla_compatible` is False score with plain TF ops first.
@fused
def _live_scores(criterion, weight, state, mask, normalization, score=None):
  """(float32 score where mask > 0, else -inf; mask > 0; all of weight finite)."""
  live = tf.math.greater(mask, 0)
  if score is None:
    score = criterion.score(weight, state, _XP)
  score = tf.cast(score, tf.float32)
  if normalization == "l2":
    score = mask_rules.l2_normalized(score, live, xp)
  finite = tf.reduce_all(tf.math.is_finite(weight))
  return tf.where(live, score, float("-inf")), live, finite


def _scores(states, criterion, normalization=None):
  scores, alive, finite = [], [], []
  for s in states:
    w, state = float32_value(s.weight), weight_state(s)
    given = None if criterion.xla_compatible else criterion.score(w, state, _XP)
    # Tensors, not variables: a traced function may be reused for a variable
    # of another shape (TF-MOT's RNN-cell test hit it), never for a tensor.
    state = criteria_lib.WeightState(*[v if v is None or isinstance(v, int)
                                       else tf.convert_to_tensor(v) for v in state])
    score, live, ok = _live_scores(criterion, w, state, tf.convert_to_tensor(s.mask),
                                   normalization, given)
    scores.append(score)
    alive.append(live)
    finite.append(ok)
  # Nothing ranks (or is assigned) before the check has passed.
  with tf.control_dependencies([tf.debugging.Assert(tf.reduce_all(tf.stack(finite)),
                                                    [_NAN_MESSAGE])]):
    return [tf.identity(x) for x in scores], alive


def _tiebreaks(states, criterion):
  """The criterion's secondary keys (float32), or None when it has none."""
  keys = [criterion.tiebreak(float32_value(s.weight), weight_state(s), _XP) for s in states]
  return None if any(k is None for k in keys) else [tf.cast(k, tf.float32) for k in keys]


def compute_masks(states, sparsity, criterion, min_flips=None, kept=None, normalization=None):
  """New bool masks for `states` ranked together, and the lowest kept score.

  Args:
    states: list of `PruningState` ranked as one (one for layer scope).
    sparsity: float scalar, the schedule's target for the whole list.
    criterion: a `Criterion`.
    min_flips: None, or the flip count (an int >= 1) that prunes an unpruned weight.
    kept: an exact kept count, overriding `sparsity` (the lottery loop).
    normalization: None, or "l2": each tensor's scores over the L2 norm of
      its unpruned scores (`score_normalization`).
  """
  if isinstance(criterion, units_lib.Units):
    return _unit_masks(states, sparsity, criterion, kept)
  scores, alive = _scores(states, criterion, normalization)
  total = sum(s.weight.shape.num_elements() for s in states)
  k = selection.kept_count(total, sparsity) if kept is None else tf.constant(kept, tf.int32)
  if min_flips:  # flip-triggered (`mask_rules`)
    counts = [criterion.flip_count(weight_state(s), _XP) for s in states]
    scores, floor = mask_rules.flip_triggered(scores, alive, counts, min_flips, xp)
    k = tf.math.maximum(k, floor)
  # The tiebreak keys are computed only if the ties at the k-th score overflow.
  keep, kth = selection.select_top_k(scores, k, lambda: _tiebreaks(states, criterion),
                                     with_kth=True)

  def keep_only_live():  # k above the unpruned count: the kept -inf are pruned ones
    masks = [tf.math.logical_and(m, a) for m, a in zip(keep, alive)]
    return masks, selection.threshold_score(scores, masks)
  # Usually every kept score is above -inf, so kept weights are unpruned ones
  # and the k-th score is the lowest kept: no further pass.
  return tf.cond(kth > float("-inf"), lambda: ([tf.identity(m) for m in keep], kth),
                 keep_only_live)


def _unit_masks(states, sparsity, criterion, kept):
  """Layer scope by units (`keras_signflip.units`): the kept count is of units."""
  units_lib.check_one_layer(states, kept)
  (scores,), (alive,) = _scores(states, criterion.base)
  per_unit = units_lib.unit_scores(scores, alive, xp)
  units = per_unit.shape[0]

  def tiebreaks():
    keys = _tiebreaks(states, criterion.base)
    return None if keys is None else units_lib.unit_tiebreaks(keys[0], alive, xp)
  keep = selection.select_top_k(per_unit, selection.kept_count(units, sparsity), tiebreaks)
  keep = tf.math.logical_and(keep, per_unit > float("-inf"))  # monotone: pruned stay pruned
  mask = tf.math.logical_and(units_lib.expand(keep, scores.shape, xp), alive)
  return [mask], selection.threshold_score(per_unit, keep)


def _block_masks(state, sparsity, criterion, block_size, pooling):
  """Layer scope with blocks: rank pooled block scores, expand back (2-D)."""
  scores, alive = _scores([state], criterion)
  score = tf.squeeze(scores[0])
  pooled = pruning_utils.factorized_pool(
      score, window_shape=block_size, pooling_type=pooling,
      strides=block_size, padding="SAME")
  if pooled.shape.ndims != 2:
    pooled = tf.squeeze(pooled)
  keep = selection.select_top_k(pooled, selection.kept_count(tf.size(pooled), sparsity))
  expanded = pruning_utils.expand_tensor(tf.cast(keep, tf.float32), block_size)
  sliced = tf.slice(expanded, [0, 0], [score.shape[0], score.shape[1]])
  mask = tf.math.logical_and(tf.reshape(sliced > 0, tf.shape(state.mask)), alive[0])
  return mask, selection.threshold_score(scores[0], mask)


def _m_by_n_mask(state, criterion, m_by_n):
  """TF-MOT's m-by-n pattern, ranked by the (non-negative shifted) score."""
  scores, alive = _scores([state], criterion)
  live_min = tf.reduce_min(tf.where(alive[0], scores[0], float("inf")))
  shifted = tf.where(alive[0], scores[0] - live_min + 1.0, 0.0)
  prepared = pruning_utils.weights_rearrange(shifted)
  mask = pruning_utils.generate_m_by_n_mask(prepared, m_by_n)
  mask = pruning_utils.m_by_n_sparsity_mask_prepare(mask, state.weight.shape)
  return tf.math.logical_and(tf.cast(mask, tf.bool), alive[0]), tf.constant(0.0)


class CriterionPruning(pruning_impl.Pruning):
  """TF-MOT's `Pruning` with criterion scores and exact O(n) selection.

  Args (beyond TF-MOT's):
    states: this layer's `PruningState`, one per prunable weight.
    criterion: a `Criterion`.
    min_flips: None, or the flip count at which an unpruned weight is pruned.
    group_fn: returns None (layer scope) or the wrapper's `GlobalGroup`, read
      when the update is built; only the group's leader updates, for every
      member at once.
    wrapper: the `PruneSignFlip` it belongs to (its tables are counted first).
  """

  def __init__(self, *, states, criterion, min_flips, group_fn, wrapper, normalization=None,
               **tfmot_kwargs):
    super().__init__(**tfmot_kwargs)
    self._wrapper = wrapper
    self._states = states
    self._criterion = criterion
    self._min_flips = min_flips
    self._normalization = normalization
    self._group_fn = group_fn

  def _new_values(self, group):
    """New values of `_update_targets(group)`, in that order."""
    step = self._step_fn()
    sparsity = self._pruning_schedule(step)[1]
    for w in (group.wrappers if group is not None else [self._wrapper]):
      w.count_tables()  # tables: what the last step changed, counted before ranking
    if group is not None:
      states = group.states()
      masks, lowest_kept = compute_masks(states, sparsity, self._criterion, self._min_flips,
                                       normalization=self._normalization)
      results = [(s, m, lowest_kept) for s, m in zip(states, masks)]
    else:
      results = []
      for s in self._states:
        if self._sparsity_m_by_n:
          m, t = _m_by_n_mask(s, self._criterion, self._sparsity_m_by_n)
        elif self._block_size != [1, 1]:
          m, t = _block_masks(s, sparsity, self._criterion, self._block_size,
                              self._block_pooling_type)
        else:
          (m,), t = compute_masks([s], sparsity, self._criterion, self._min_flips)
        results.append((s, m, t))
    values = []
    for s, m, t in results:
      weight = master_variable(s.weight)
      values += [tf.cast(m, s.mask.dtype), tf.cast(t, s.threshold.dtype),
                 s.flips * tf.cast(m, tf.int32), s.prev_sign * tf.cast(m, s.prev_sign.dtype),
                 tf.where(m, tf.convert_to_tensor(weight), tf.zeros([], weight.dtype))]
      if s.flips_at_update is not None:  # the window restarts: flips as just assigned
        values.append(s.flips * tf.cast(m, tf.int32))
      if s.grad_product is not None:  # Saliency's sum restarts; MovementScore's goes on
        values.append(tf.zeros_like(s.grad_product) if self._criterion.resets_gradients
                      else s.grad_product * tf.cast(m, tf.float32))
    return values

  def _update_targets(self, group):
    """The variables `_new_values` assigns, in the same order."""
    states = group.states() if group is not None else self._states
    return [v for s in states
            for v in (s.mask, s.threshold, s.flips, s.prev_sign, master_variable(s.weight))
            + ((s.flips_at_update,) if s.flips_at_update is not None else ())
            + ((s.grad_product,) if s.grad_product is not None else ())]

  def weight_mask_op(self):
    """No forward-pass re-mask of ordinary weights: they are already masked
    (module docstring). Embedding tables are counted and re-masked here (what
    the last step changed, state.py): TF-MOT's `call` runs this before the
    layer reads its weights, and TF-MOT's callback at every epoch end."""
    self._wrapper.count_tables()
    return tf.no_op()

  def _should_update(self):
    if self._sparsity_m_by_n:
      return tf.math.equal(self._step_fn(), 1)  # as TF-MOT: once, at step 1
    return self._pruning_schedule(self._step_fn())[0]

  def conditional_mask_update(self):
    """An op that updates the masks when the schedule says so."""
    group = self._group_fn()
    if group is not None and not group.is_leader(self):
      return tf.no_op()
    def assign_all(assign):
      targets = self._update_targets(group)
      with tf.control_dependencies([assign(v, x)
                                    for v, x in zip(targets, self._new_values(group))]):
        return tf.constant(True)

    def update_distributed(distribution):
      update = _not_inlined(lambda: assign_all(lambda v, x: distribution.extended.update(
          v, lambda var, value: var.assign(value), (x,))))
      return tf.cond(self._should_update(), update, lambda: tf.constant(False))

    replica_context = tf.distribute.get_replica_context()
    if replica_context:
      return replica_context.merge_call(update_distributed)
    update = _not_inlined(lambda: assign_all(lambda v, x: v.assign(x)))
    return tf.cond(self._should_update(), update, lambda: tf.constant(False))


def _not_inlined(update):
  """`update` as one function-call node of the training graph (in a graph).

  TensorFlow inlines function calls into the graph that calls them, so the
  whole mask update (hundreds of nodes) would sit in the cond's branch not
  taken, and the executor visits every node of a dead branch at every step
  (a measurable share of a small model's step). Eagerly,
  only the branch taken runs, and a tf.function per call would be traced
  every time, so it stays a plain function there.
  """
  if tf.executing_eagerly():
    return update
  return tf.function(update, autograph=False, experimental_attributes={"_noinline": True})
