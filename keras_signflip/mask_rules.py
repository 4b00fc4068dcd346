"""The rules of a mask update that both families apply, written once against `xp`.

Each family's `mask_update` scores (criteria), ranks (its `selection`) and
assigns; between scoring and ranking it applies these
(`keras_signflip.array_namespace` for `xp`):

    kept count:  k = min(max(round(n * (1 - sparsity)), 1), n) in float32, half to even
                 (TF-MOT's), for n weights ranked together
    l2 normalisation (`score_normalization="l2"`):
        score / (sqrt(sum of the unpruned scores squared) + 1e-30)
    flip-triggered pruning (`min_flips=m`):
        candidates = unpruned weights whose flip count reaches m
        every other unpruned weight ranks above every candidate (its score +inf),
        and the kept count is at least their number: the candidates are pruned,
        never beyond the schedule's sparsity (the lowest-scored first when it binds)
"""
__all__ = ["kept_count", "l2_normalized", "flip_triggered"]


def kept_count(size, sparsity, xp):
  """min(max(round(size * (1 - sparsity)), 1), size) in float32, half to even: TF-MOT's,
  as an int32 scalar tensor."""
  size = xp.cast(size, "float32")
  kept = xp.maximum(xp.round(size * (1.0 - xp.cast(sparsity, "float32"))), 1.0)
  return xp.cast(xp.minimum(kept, size), "int32")


def l2_normalized(score, alive, xp):
  """score / (L2 norm of the unpruned scores + tiny): `score_normalization="l2"`."""
  norm = xp.sqrt(xp.sum(xp.where(alive, xp.square(score), 0.0)))
  return score / (norm + 1e-30)


def flip_triggered(scores, alive, flip_counts, min_flips, xp):
  """(scores, floor) under `min_flips` (see the module docstring).

  Args:
    scores: float32 score tensors, -inf where pruned.
    alive: bool tensors, True where unpruned.
    flip_counts: the criterion's flip counts (`Criterion.flip_count`), one per tensor.
    min_flips: the flip count that prunes, an int >= 1.
    xp: the array namespace.

  Returns:
    The scores with the unpruned non-candidates at +inf, and `floor`, the
    number of those (a scalar tensor): the kept count must be at least it.
  """
  candidates = [xp.logical_and(a, xp.greater_equal(c, min_flips))
                for a, c in zip(alive, flip_counts)]
  floor = sum(xp.sum(xp.cast(xp.logical_and(a, xp.logical_not(c)), "int32"))
              for a, c in zip(alive, candidates))
  scores = [xp.where(c, x, xp.where(a, float("inf"), x))
            for x, a, c in zip(scores, alive, candidates)]
  return scores, floor
