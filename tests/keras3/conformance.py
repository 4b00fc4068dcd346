"""The criteria conformance suite, shared by the tf_keras and Keras 3 paths.

Each case is a set of weight tensors with ties, prior pruning, flip counts
and references, a criterion, a scope, a sparsity and (maybe) a flip
threshold. `reference_masks` states the expected masks in NumPy, written
independently of keras_signflip's selection code; every path must return
exactly these masks (tests/test_conformance.py for tf_keras, tests/keras3
for each Keras 3 backend, and tests/test_keras3.py across all of them).
"""
import itertools

import numpy as np

from keras_signflip import criteria

SHAPES = [(5, 7), (7, 6), (3, 3, 2, 4)]

FORMULAS = {  # NumPy statements of each criterion (Random: its NumPy hash).
    "magnitude": lambda w, f, r, k, a: np.abs(w),
    "sign_flip": lambda w, f, r, k, a: -f.astype(np.float32),
    "hybrid": lambda w, f, r, k, a: np.abs(w) ** 2 / (f + 1),
    "large_final_same_sign": lambda w, f, r, k, a: np.where(np.sign(w) == np.sign(r), np.abs(w), 0),
    "magnitude_increase": lambda w, f, r, k, a: np.abs(w) - np.abs(r),
    "movement": lambda w, f, r, k, a: np.abs(w - r),
    "recent_flips": lambda w, f, r, k, a: -(f - a).astype(np.float32),
    "random": lambda w, f, r, k, a: criteria.Random(0).score(
        w, criteria.WeightState(f, r, k), np),
}


TIEBREAKS = {  # NumPy statements of each criterion's secondary key (None: position only).
    "magnitude": None,
    "sign_flip": lambda w, f, r, a: np.abs(w),
    "hybrid": lambda w, f, r, a: -f.astype(np.float32),
    "large_final_same_sign": lambda w, f, r, a: np.abs(w),
    "magnitude_increase": lambda w, f, r, a: np.abs(w),
    "movement": lambda w, f, r, a: np.abs(w),
    "recent_flips": lambda w, f, r, a: np.abs(w),
    "random": None,
}


def arrays(seed):
  """[(weight, mask, flips, reference, flips_at_update)] for SHAPES, with many ties."""
  rng = np.random.RandomState(seed)
  out = []
  for shape in SHAPES:
    weight = rng.choice([-0.5, -0.25, 0.25, 0.5, 1.0], size=shape) + \
        (rng.rand(*shape) < 0.5) * rng.randn(*shape)
    mask = (rng.rand(*shape) > 0.2).astype(np.float32)
    flips = (rng.randint(0, 4, size=shape) * mask).astype(np.int32)
    out.append(((weight * mask).astype(np.float32), mask, flips,
                rng.randn(*shape).astype(np.float32),
                (flips * (rng.rand(*shape) < 0.5)).astype(np.int32)))
  return out


def cases():
  """(case id, criterion name, scope, sparsity, min_flips, seed)."""
  out = []
  for name, scope, sparsity in itertools.product(
      sorted(FORMULAS), ("layer", "global"), (0.3, 0.75, 0.95)):
    out.append((f"{name}-{scope}-{sparsity}", name, scope, sparsity, None, 1))
  for scope, min_flips, sparsity in itertools.product(("layer", "global"), (1, 2), (0.2, 0.9)):
    for name in ("sign_flip", "recent_flips"):
      out.append((f"flip_triggered-{name}-{scope}-{min_flips}-{sparsity}", name, scope,
                  sparsity, min_flips, 2))
  return out


def _kept(n, sparsity):
  return int(max(np.round(np.float32(n) * (np.float32(1) - np.float32(sparsity))), 1))


def _top_k(scores, k, secondary=None):
  flat = np.concatenate([s.ravel() for s in scores])
  second = (np.zeros_like(flat) if secondary is None
            else np.concatenate([s.ravel() for s in secondary]).astype(np.float32))
  # score desc, then secondary desc, then position asc
  order = np.lexsort((np.arange(flat.size), -second, -flat))
  keep = np.zeros(flat.size, bool)
  keep[order[:k]] = True
  out, i = [], 0
  for s in scores:
    out.append(keep[i:i + s.size].reshape(s.shape))
    i += s.size
  return out


def reference_masks(case, normalization=None):
  """The expected bool masks of `case`, one per tensor (normalization "l2":
  each tensor's scores over the L2 norm of its unpruned scores)."""
  _, name, scope, sparsity, min_flips, seed = case
  data = arrays(seed)
  groups = [list(range(len(data)))] if scope == "global" else [[i] for i in range(len(data))]
  out = [None] * len(data)
  for group in groups:
    scores, alive, second = [], [], []
    for i in group:
      w, m, f, r, at_update = data[i]
      a = m > 0
      score = FORMULAS[name](w, f, r, i, at_update).astype(np.float32)
      if normalization == "l2":
        score = (score / (np.sqrt(np.sum(np.where(a, score.astype(np.float64) ** 2, 0))) + 1e-30)
                 ).astype(np.float32)
      scores.append(np.where(a, score, -np.inf).astype(np.float32))
      alive.append(a)
      if TIEBREAKS[name] is not None:
        second.append(TIEBREAKS[name](w, f, r, at_update))
    k = _kept(sum(a.size for a in alive), sparsity)
    if min_flips:
      # flip_count: lifetime flips, or flips since the last update (recent_flips)
      count = lambda d: d[2] - d[4] if name == "recent_flips" else d[2]  # noqa: E731
      cand = [a & (count(data[i]) >= min_flips) for i, a in zip(group, alive)]
      k = max(k, sum(int((a & ~c).sum()) for a, c in zip(alive, cand)))
      scores = [np.where(c, s, np.where(a, np.inf, -np.inf))
                for s, a, c in zip(scores, alive, cand)]
    for i, m, a in zip(group, _top_k(scores, k, second or None), alive):
      out[i] = m & a
  return out


def run(compute_masks_fn):
  """{case id: [masks]} from a path's `compute(arrays, name, scope, sparsity, min_flips)`."""
  return {case[0]: compute_masks_fn(arrays(case[5]), *case[1:5]) for case in cases()}
