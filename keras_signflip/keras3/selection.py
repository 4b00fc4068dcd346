"""Exact top-k masks with `keras.ops`, for one tensor or many (global scope).

The same contract as `keras_signflip.tf_keras.selection` (the tf_keras family): keep
exactly the k highest scores; equal scores are ranked by an optional secondary
key (higher kept), then by position -- tensor order, then flat row-major
index, lower first -- so both families give the same masks. The k-th largest
score t comes from NumPy's O(n) `partition` on the host (`keras.ops` has no
bitcast for the tf_keras family's radix select, and a full `ops.sort` is an
O(n log n) sort where a selection is enough);
the ties at t are then taken in position order with a cumulative sum, with
`keras.ops` on the backend's device:

    t    = partition(scores, n - k)[n - k]
    keep = score > t  OR  (score == t AND tie rank <= k - #(score > t))

When every score tied at t fits (#(score >= t) == k, the usual case for
real-valued scores), that is `score >= t`, one comparison per tensor, and
neither the cumulative sum nor the secondary key is computed. With a
secondary key, overflowing ties at t are ranked by it first (a second
partition, over the ties only, on the host). It runs eagerly, at mask updates
only.
"""
import numpy as np

from keras_signflip import array_namespace
from keras_signflip import mask_rules
from keras_signflip.keras3._framework import ops

__all__ = ["kept_count", "select_top_k", "threshold_score"]


def kept_count(size, sparsity):
  """`keras_signflip.mask_rules.kept_count` on the host, as a Python int."""
  return int(mask_rules.kept_count(size, sparsity, array_namespace.NUMPY))


def _first(ties, count):
  """The first `count` True entries of the flat bool tensor `ties`."""
  return ops.logical_and(ties, ops.less_equal(ops.cumsum(ops.cast(ties, "int32")), count))


def _kth_largest(host, k):
  """The k-th largest of `host`, partitioning only the scores above -inf.

  Pruned weights score -inf; NumPy's introselect slows down on so many equal
  values, so they are left out of the partition.
  """
  live = host[host > -np.inf]
  if k > live.size:
    return np.float32(-np.inf)
  return np.partition(live, live.size - k)[live.size - k]


def select_top_k(scores, k, secondary=None, with_kth=False):
  """Bool masks (one per score tensor) keeping exactly `k` highest scores.

  Args:
    scores: list of float32 tensors ranked together (no NaN).
    k: Python int, 1 <= k <= total size.
    secondary: None, float32 tensors shaped like `scores` (no NaN), or a
      callable returning those (or None), called only when the scores tied at
      the k-th do not all fit: the key that ranks equal scores before
      position does.
    with_kth: also return the k-th largest score (a NumPy float32).
  """
  host = np.concatenate([np.asarray(ops.convert_to_numpy(s), np.float32).ravel()
                         for s in scores])
  n = host.size
  if not 1 <= k <= n:
    raise ValueError(f"kept count {k} is outside [1, {n}]")
  threshold = _kth_largest(host, k)
  at_least = np.count_nonzero(host >= threshold)
  if at_least == k:  # every tie at the k-th score fits
    keep = [ops.greater_equal(s, threshold) for s in scores]
    return (keep, threshold) if with_kth else keep
  room = k - int(np.count_nonzero(host > threshold))
  if callable(secondary):
    secondary = secondary()
  flat = ops.convert_to_tensor(host)
  above = ops.greater(flat, threshold)
  ties = ops.equal(flat, threshold)
  if secondary is None:
    keep = ops.logical_or(above, _first(ties, room))
  else:
    second = np.concatenate([np.asarray(ops.convert_to_numpy(s), np.float32).ravel()
                             for s in secondary])
    tied = second[host == threshold]
    t2 = np.partition(tied, tied.size - room)[tied.size - room]
    second = ops.convert_to_tensor(second)
    keep = ops.logical_or(above, ops.logical_or(
        ops.logical_and(ties, ops.greater(second, t2)),
        _first(ops.logical_and(ties, ops.equal(second, t2)),
               room - int(np.sum(tied > t2)))))
  out, start = [], 0
  for s in scores:
    size = int(np.prod(s.shape))
    out.append(ops.reshape(keep[start:start + size], s.shape))
    start += size
  return (out, threshold) if with_kth else out


def threshold_score(scores, masks):
  """The lowest kept score (the `threshold` variable, as TF-MOT keeps one)."""
  lows = [ops.min(ops.where(m, s, float("inf"))) for s, m in zip(scores, masks)]
  return ops.min(ops.stack(lows))
