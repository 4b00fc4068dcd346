"""Mask updates in the Keras 3 family: the tf_keras family's rule, in `keras.ops`.

At a pruning step (the schedule says so), for one weight tensor (layer
scope) or all global-scope tensors of a model together:

    score = criterion(w, flips, reference); score = -inf where mask == 0
    k     = max(round(n * (1 - sparsity)), 1)             # TF-MOT's kept count
    if min_flips: k = max(k, #unpruned with flips < min_flips), and those
                  weights rank above every candidate       # flip-triggered
    mask  = mask AND top_k(score)                         # monotone
    flips, prev_sign, w = (flips, prev_sign, w) * mask     # pruned: zero
    optimizer slots of w (momentum, Adam moments, ...) *= mask

Criteria are the shared `keras_signflip.criteria`, evaluated with
`keras.ops` (NumPy for the integer-hash `Random`). Zeroing the slots is what
keeps pruned weights at exactly 0 under momentum and Adam: their gradient is
0 from then on, so no step moves them.
"""
import functools

import numpy as np

from keras_signflip import criteria as criteria_lib
from keras_signflip import mask_rules
from keras_signflip import units as units_lib
from keras_signflip.keras3 import gradient_noise
from keras_signflip.keras3 import selection
from keras_signflip.keras3 import state as state_lib
from keras_signflip.keras3._framework import compiled, ops

__all__ = ["check_finite", "check_gradients", "compute_masks", "apply_masks", "update_masks",
           "optimizer_slots"]


@compiled
def _all_finite(weight):
  return ops.all(ops.isfinite(weight))


def check_finite(state):
  if not bool(ops.convert_to_numpy(_all_finite(ops.convert_to_tensor(state.weight)))):
    raise ValueError(
        f"keras_signflip: weight {state.weight.path} holds NaN or Inf at a mask "
        "update; no mask was changed. Lower the learning rate or add gradient "
        "clipping, then resume from the last checkpoint.")


def weight_state(s):
  """What a criterion reads of a `PruningState` (criteria.WeightState), as tensors."""
  at_update, products = s.flips_at_update, gradient_noise.grad_product(s.weight)
  return criteria_lib.WeightState(
      ops.convert_to_tensor(s.flips),
      None if s.reference is None else state_lib.float32_value(s.reference), s.key,
      None if at_update is None else ops.convert_to_tensor(at_update),
      None if products is None else ops.convert_to_tensor(products))


def check_gradients(state, criterion):
  if criterion.uses_gradients and gradient_noise.grad_product(state.weight) is None:
    raise ValueError(
        f"keras_signflip: {type(criterion).__name__} ranks by recorded gradients, and "
        f"nothing records them for {state.weight.path}: compile with "
        "optimizer=keras_signflip.record_gradients(optimizer) and train before the "
        "first mask update.")


def _check(states, criterion):
  for s in states:
    check_finite(s)
    check_gradients(s, criterion)


def _live(score, mask):
  """(score, alive): `score` with -inf where pruned."""
  alive = ops.greater(mask, 0)
  return ops.where(alive, score, float("-inf")), alive


def _live_score(criterion, w, mask, ws):
  """`_live` of the criterion's float32 score."""
  return _live(ops.cast(criterion.score(ops.cast(w, "float32"), ws, ops), "float32"), mask)


@functools.lru_cache(maxsize=None)
def _compiled_live_score(criterion, key):
  """`_live_score` compiled for one criterion (equal criteria share it) and tensor key."""
  def live_score(w, mask, flips, reference, flips_at_update, grad_product):
    ws = criteria_lib.WeightState(flips, reference, key, flips_at_update, grad_product)
    return _live_score(criterion, w, mask, ws)
  return compiled(live_score)


def _score(state, criterion):
  mask = ops.convert_to_tensor(state.mask)
  if criterion.needs_int64:
    as_np = lambda v: np.asarray(ops.convert_to_numpy(v))  # noqa: E731
    ws = criteria_lib.WeightState(*[v if v is None or isinstance(v, int) else as_np(v)
                                    for v in weight_state(state)])
    w = state_lib.float32_value(state.weight)
    return _live(ops.convert_to_tensor(np.asarray(criterion.score(as_np(w), ws, np),
                                                  np.float32)), mask)
  ws = weight_state(state)
  w = ops.convert_to_tensor(state.weight)
  if criterion.xla_compatible:  # built-ins: traceable keras.ops
    return _compiled_live_score(criterion, state.key)(w, mask, *(ws[:2] + ws[3:]))
  return _live_score(criterion, w, mask, ws)


def _tiebreaks(states, criterion):
  """The criterion's secondary keys (float32), or None when it has none."""
  keys = []
  for s in states:
    ws = weight_state(s)
    key = criterion.tiebreak(state_lib.float32_value(s.weight), ws, ops)
    if key is None:
      return None
    keys.append(ops.cast(key, "float32"))
  return keys


def compute_masks(states, sparsity, criterion, min_flips=None, kept=None, normalization=None):
  """New bool masks for `states` ranked together, and the lowest kept score.

  Args:
    states: list of `PruningState` ranked as one (a single one for layer scope).
    sparsity: the target sparsity for the whole list.
    criterion: a `Criterion` (or name).
    min_flips: None, or the flip count (an int >= 1) that prunes an unpruned weight.
    kept: an exact kept count, overriding `sparsity` (the lottery loop).
  """
  criterion = criteria_lib.get(criterion)
  _check(states, criterion)
  return _compute_masks(states, sparsity, criterion, min_flips, kept, normalization)


def _compute_masks(states, sparsity, criterion, min_flips, kept, normalization):
  """compute_masks after its checks (update_masks makes them before counting)."""
  if isinstance(criterion, units_lib.Units):
    return _unit_masks(states, sparsity, criterion, kept)
  scored = [_score(s, criterion) for s in states]
  scores, alive = [x for x, _ in scored], [a for _, a in scored]
  if normalization == "l2":
    scores = [ops.where(a, mask_rules.l2_normalized(ops.where(a, x, 0.0), a, ops), float("-inf"))
              for x, a in zip(scores, alive)]
  total = sum(int(np.prod(s.weight.shape)) for s in states)
  k = selection.kept_count(total, sparsity) if kept is None else int(kept)
  if min_flips:  # flip-triggered (`mask_rules`)
    counts = [criterion.flip_count(weight_state(s), ops) for s in states]
    scores, floor = mask_rules.flip_triggered(scores, alive, counts, min_flips, ops)
    k = max(k, int(ops.convert_to_numpy(floor)))
  # The tiebreak keys are built only if the ties at the k-th score overflow.
  keep, kth = selection.select_top_k(scores, k, lambda: _tiebreaks(states, criterion),
                                     with_kth=True)
  if kth > -np.inf:  # every kept score is finite: the kept weights are all unpruned
    return keep, kth
  masks = [ops.logical_and(m, a) for m, a in zip(keep, alive)]
  return masks, selection.threshold_score(scores, masks)


def _unit_masks(states, sparsity, criterion, kept):
  """Layer scope by units (`keras_signflip.units`): the kept count is of units."""
  units_lib.check_one_layer(states, kept)
  scores, alive = _score(states[0], criterion.base)
  per_unit = units_lib.unit_scores(scores, alive, ops)

  def tiebreaks():
    keys = _tiebreaks(states, criterion.base)
    return None if keys is None else [units_lib.unit_tiebreaks(keys[0], alive, ops)]
  keep, = selection.select_top_k([per_unit], selection.kept_count(per_unit.shape[0], sparsity),
                                 tiebreaks)
  keep = ops.logical_and(keep, ops.greater(per_unit, float("-inf")))  # pruned stay pruned
  mask = ops.logical_and(units_lib.expand(keep, tuple(scores.shape), ops), alive)
  return [mask], selection.threshold_score([per_unit], [keep])


def optimizer_slots(optimizer, weight):
  """The optimizer variables shaped like `weight` that Keras made for it.

  Keras names them `<weight path with / as _>_<slot>` (add_variable_from_reference).
  """
  if optimizer is None or not getattr(optimizer, "built", False):
    return []
  prefix = weight.path.replace("/", "_") + "_"
  return [v for v in optimizer.variables
          if v.name.startswith(prefix) and tuple(v.shape) == tuple(weight.shape)]


@compiled
def _where_kept(keep, values):
  return [ops.where(keep, v, ops.zeros_like(v)) for v in values]


def apply_masks(states, masks, lowest_kept, optimizer=None):
  """Assigns new masks and the lowest kept score (each state's `threshold`
  variable); zeroes flips, prev_sign, weights and slots where pruned."""
  # A Python float: one array assigned to several variables would make JAX
  # donate the same buffer twice at the next step.
  lowest_kept = float(ops.convert_to_numpy(lowest_kept))
  for s, m in zip(states, masks):
    keep = ops.convert_to_tensor(m)
    s.mask.assign(ops.cast(keep, s.mask.dtype))
    s.threshold.assign(lowest_kept)
    products = gradient_noise.grad_product(s.weight)  # MovementScore's sum goes on where kept
    slots = optimizer_slots(optimizer, s.weight)
    if products is not None and not any(v is products for v in slots):
      slots.append(products)
    zeroed = [s.flips, s.prev_sign, s.weight] + slots
    for v, value in zip(zeroed, _where_kept(keep, [ops.convert_to_tensor(v) for v in zeroed])):
      v.assign(value)
    if s.flips_at_update is not None:  # the window restarts at this update
      s.flips_at_update.assign(ops.copy(ops.convert_to_tensor(s.flips)))


def update_masks(wrappers, step, optimizer=None):
  """Runs every mask update `wrappers`' schedules ask for at `step`.

  Layer-scope wrappers follow their own schedules; global-scope wrappers
  follow the first one's and are ranked together. Every new mask is computed
  before any is assigned, so an error leaves the model unchanged.

  Returns:
    The number of weight tensors whose masks were updated.
  """
  groups = []
  global_members = [w for w in wrappers if w.scope == "global"]
  if global_members:
    should, sparsity = global_members[0].pruning_schedule(step)
    if should:
      leader = global_members[0]
      groups.append(([s for w in global_members for s in w.flip_states], sparsity,
                     leader.criterion, leader.min_flips, leader.score_normalization))
  for w in wrappers:
    if w.scope == "layer":
      should, sparsity = w.pruning_schedule(step)
      if should:
        groups += [([s], sparsity, w.criterion, w.min_flips, None) for s in w.flip_states]
  if not groups:
    return 0
  groups = [(states, sparsity, criteria_lib.get(criterion), min_flips, normalization)
            for states, sparsity, criterion, min_flips, normalization in groups]
  for states, _, criterion, _, _ in groups:
    _check(states, criterion)
  for group in groups:
    for s in group[0]:
      state_lib.count_pending(s)
  results = [(states,) + _compute_masks(states, sparsity, criterion, min_flips, None,
                                        normalization)
             for states, sparsity, criterion, min_flips, normalization in groups]
  for (states, masks, lowest_kept), group in zip(results, groups):
    apply_masks(states, masks, lowest_kept, optimizer)
    if group[2].resets_gradients:  # Saliency's sum restarts at every update
      for s in states:
        products = gradient_noise.grad_product(s.weight)
        products.assign(ops.zeros_like(ops.convert_to_tensor(products)))
  return sum(len(r[0]) for r in results)
