"""Exact top-k mask selection in O(n), for one tensor or many (global scope).

Given scores and a kept count k, keep exactly the k highest scores. Equal
scores are ranked by an optional secondary key (the criterion's `tiebreak`,
higher kept), then by position: tensor order first, then flat (row-major)
index, lower first -- the order `tf.math.top_k` uses, so `Magnitude` (no
secondary key) at layer scope reproduces TF-MOT's masks.

Instead of sorting (TF-MOT's `top_k` over the whole tensor), scores are mapped
to order-preserving 32-bit integer keys and the k-th largest key t is found by
a two-pass radix select on 16-bit digits with `tf.math.bincount`. Global scope
sums per-tensor histograms, so the concatenation is never built or sorted.
The second histogram's bin of t counts the scores equal to t; when all of them
fit in the kept count (the usual case) the mask is `key >= t`, and neither
ties nor the secondary key are looked at. Otherwise the ties are ranked by a
second radix select of the secondary keys over the ties only, then by
position. The element-wise passes (keys, digits, the final compare) are
XLA-compiled, each one pass over the scores; bincount stays a TF kernel.
Inside XLA (`jit_compile=True`), which cannot compile bincount's
data-dependent shapes, the same selection runs as a stable sort.

    pass 1: hi = key >> 16                 -> histogram -> bucket B, count above
    pass 2: lo = key & 0xFFFF where hi == B  -> histogram -> t, count above, ties
    pass 3: keep = key >= t                 (ties beyond the kept count: ranked)
"""
from keras_signflip import mask_rules
from keras_signflip.tf_keras._framework import fused, tf, xp

__all__ = ["kept_count", "select_top_k", "sortable_keys"]

_DIGIT = 1 << 16


def kept_count(size, sparsity):
  """`keras_signflip.mask_rules.kept_count` in TensorFlow ops (TF-MOT's count)."""
  return mask_rules.kept_count(size, sparsity, xp)


def sortable_keys(scores):
  """int32 keys with key(a) < key(b) iff a < b for float32 scores (no NaN).

  Non-negative floats order like their bit patterns; for negative floats the
  order of the low 31 bits is reversed, so they are flipped. -0.0 is first
  made +0.0, since the two compare equal (as do subnormals, which
  TensorFlow's CPU kernels flush to zero).
  """
  scores = tf.cast(scores, tf.float32)
  scores = tf.where(tf.equal(scores, 0.0), tf.zeros_like(scores), scores)
  return _flip_negative(tf.bitcast(scores, tf.int32))


def score_of_key(keys):
  """The float32 score of a `sortable_keys` key (the inverse map; -0.0 -> +0.0)."""
  return tf.bitcast(_flip_negative(tf.convert_to_tensor(keys, tf.int32)), tf.float32)


def _flip_negative(bits):
  """Reverses the low 31 bits of negative int32s: its own inverse."""
  return tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, 0x7FFFFFFF), bits)


def _digit_hi(keys):
  return tf.bitwise.right_shift(keys, 16) + (_DIGIT // 2)  # in [0, 65536)


def _digit_lo(keys):
  return tf.bitwise.bitwise_and(keys, 0xFFFF)  # in [0, 65536)


def _in_xla():
  """True while tracing inside an XLA cluster (e.g. compile(jit_compile=True))."""
  from tensorflow.python.ops import control_flow_util  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _histogram(digits):
  """Counts of each 16-bit digit value."""
  return tf.math.bincount(digits, minlength=_DIGIT, maxlength=_DIGIT, dtype=tf.int32)


# One fused pass each (XLA), instead of one TF kernel and one temporary
# tensor per element-wise op: each pass reads the scores once, not once an op.
@fused
def _hi_digits(scores):
  return _digit_hi(sortable_keys(scores))


@fused
def _lo_digits_in(scores, bucket):
  """Low digits of the keys whose high digit is `bucket`; _DIGIT elsewhere."""
  keys = sortable_keys(scores)
  return tf.where(tf.equal(_digit_hi(keys), bucket), _digit_lo(keys), _DIGIT)


@fused
def _at_least(scores, threshold):
  return sortable_keys(scores) >= threshold


def _kth_largest_of_scores(scores, k):
  """(threshold key t, count strictly above t, count equal to t) for the
  k-th largest of the flat float32 `scores` ranked together."""
  hi_counts = tf.add_n([_histogram(_hi_digits(x)) for x in scores])
  hi_bucket, above_hi = _pick_bucket(hi_counts, k)
  lo_counts = tf.add_n([
      tf.math.bincount(_lo_digits_in(x, hi_bucket), minlength=_DIGIT + 1,
                       maxlength=_DIGIT + 1, dtype=tf.int32) for x in scores])[:_DIGIT]
  lo_bucket, above_lo = _pick_bucket(lo_counts, k - above_hi)
  return _threshold(hi_bucket, lo_bucket), above_hi + above_lo, lo_counts[lo_bucket]


def _threshold(hi_bucket, lo_bucket):
  return tf.cast((tf.cast(hi_bucket, tf.int64) - _DIGIT // 2) * _DIGIT
                 + tf.cast(lo_bucket, tf.int64), tf.int32)


def _pick_bucket(counts, k):
  """The bucket holding the k-th largest item, and how many lie above it."""
  at_or_above = tf.math.cumsum(counts, reverse=True)
  bucket = tf.math.count_nonzero(at_or_above >= k, dtype=tf.int32) - 1
  above = at_or_above[bucket] - counts[bucket]
  return bucket, above


def _first_ties(ties, count):
  """Keeps the first `count` True entries of `ties` in (tensor, index) order.

  Usually every tie is kept (distinct scores tie only with themselves), and
  then the running counts -- a cumsum over every tensor -- are skipped.
  """
  sizes = [tf.reduce_sum(tf.cast(t, tf.int32)) for t in ties]

  def first():
    out, before = [], tf.constant(0, tf.int32)
    for t, size in zip(ties, sizes):
      rank = tf.math.cumsum(tf.cast(t, tf.int32)) + before
      out.append(tf.math.logical_and(t, rank <= count))
      before += size
    return out
  return tf.cond(tf.add_n(sizes) <= count, lambda: [tf.identity(t) for t in ties], first)


def _select_by_sort(keys, k, secondary=None):
  """The same selection by a stable sort: XLA compiles it (it cannot compile
  bincount's data-dependent shapes), at TF-MOT's O(n log n) cost."""
  flat = tf.concat(keys, axis=0)
  if secondary is None:
    order = tf.argsort(flat, direction="DESCENDING", stable=True)
  else:  # stable sorts, least significant key first: (score, secondary, position)
    by_secondary = tf.argsort(tf.concat(secondary, axis=0), direction="DESCENDING", stable=True)
    order = tf.gather(by_secondary, tf.argsort(tf.gather(flat, by_secondary),
                                               direction="DESCENDING", stable=True))
  rank = tf.scatter_nd(order[:, None], tf.range(tf.size(flat)), tf.shape(flat))
  keep = rank < k
  sizes = [x.shape.num_elements() for x in keys]
  return tf.split(keep, sizes)


def _best_ties(ties, secondary, count):
  """Keeps `count` of the True entries of `ties`: highest secondary score
  first, then (tensor, index) order. Entries outside the ties get -inf, which
  no tie's key exceeds, so the count-th largest of all is that of the ties."""
  masked = [tf.where(t, s, float("-inf")) for t, s in zip(ties, secondary)]
  threshold, above, _ = _kth_largest_of_scores(masked, count)
  keys = [sortable_keys(m) for m in masked]
  tied_again = [tf.math.logical_and(t, tf.equal(x, threshold)) for t, x in zip(ties, keys)]
  last = _first_ties(tied_again, count - above)
  return [tf.math.logical_or(tf.math.logical_and(t, x > threshold), l)
          for t, x, l in zip(ties, keys, last)]


def select_top_k(scores, k, secondary=None, with_kth=False):
  """Boolean masks keeping exactly the k highest of all `scores` together.

  Args:
    scores: a float tensor, or a list of them (global scope: one ranking over
      all of them). NaN scores are not allowed.
    k: int32 scalar, 1 <= k <= total size.
    secondary: None, float tensors shaped like `scores` (no NaN), or a
      callable returning those (or None), called only when the ties at the
      k-th score do not all fit: the key that ranks equal scores before
      position does.
    with_kth: also return the k-th largest score (the lowest kept one).

  Returns:
    A bool tensor (or list) shaped like `scores`, with exactly k True values
    (and the k-th largest score, a float32 scalar, if `with_kth`).
  """
  single = not isinstance(scores, (list, tuple))
  score_list = [scores] if single else list(scores)
  flat = [tf.reshape(tf.cast(s, tf.float32), [-1]) for s in score_list]
  k = tf.cast(k, tf.int32)

  def secondary_keys():
    second = secondary() if callable(secondary) else secondary
    if second is None:
      return None
    second = [second] if not isinstance(second, (list, tuple)) else list(second)
    return [tf.reshape(tf.cast(x, tf.float32), [-1]) for x in second]

  if _in_xla():
    keys = [sortable_keys(x) for x in flat]
    second = secondary_keys()
    flat_masks = _select_by_sort(keys, k, None if second is None
                                 else [sortable_keys(x) for x in second])
    threshold = tf.reduce_min(tf.stack([tf.reduce_min(tf.where(m, x, 2**31 - 1))
                                        for m, x in zip(flat_masks, keys)]))
  else:
    threshold, above, tied = _kth_largest_of_scores(flat, k)

    def rank_ties():
      keys = [sortable_keys(x) for x in flat]
      ties = [tf.equal(x, threshold) for x in keys]
      second = secondary_keys()
      chosen = (_first_ties(ties, k - above) if second is None
                else _best_ties(ties, second, k - above))
      return [tf.math.logical_or(x > threshold, t) for x, t in zip(keys, chosen)]

    flat_masks = tf.cond(tied <= k - above,
                         lambda: [_at_least(x, threshold) for x in flat], rank_ties)
  masks = [tf.reshape(m, tf.shape(s)) for s, m in zip(score_list, flat_masks)]
  masks = masks[0] if single else masks
  return (masks, score_of_key(threshold)) if with_kth else masks


def threshold_score(scores, masks):
  """The lowest kept score (for TF-MOT's `threshold` variable and summaries)."""
  score_list = scores if isinstance(scores, (list, tuple)) else [scores]
  mask_list = masks if isinstance(masks, (list, tuple)) else [masks]
  lows = [tf.reduce_min(tf.where(m, tf.cast(s, tf.float32), float("inf")))
          for s, m in zip(score_list, mask_list)]
  return tf.reduce_min(tf.stack(lows))
