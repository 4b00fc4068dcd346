"""Products x @ W with a sparse kernel W, for serving, and which to use when.

Two formats, both built from W's non-zeros with stock TensorFlow ops (a
SavedModel that uses them loads with plain `tf.saved_model.load`):

- "ell": per output column j, the input rows of its non-zeros and their
  values, padded with zeros to K = the largest column count (ELLPACK):
  y[b, j] = sum_k values[j, k] * x[b, rows[j, k]], one gather, multiply and
  sum compiled by XLA, 32 slots of K at a time. Fastest at a few rows: it
  reads ~6 bytes per non-zero (int16 rows where they fit) where the dense
  product reads 4 per weight.
- "coo": `tf.sparse.sparse_dense_matmul` on (row, column) indices; it wins
  over ELL from ~8-16 rows on.

TF's CSR kernel (`SparseMatrixMatMul`) is not among them: its matrix is a
DT_VARIANT that a loaded SavedModel cannot read (the loader drops the type
information that the op's shape function needs).

A plan says which product serves which row count: ((format, up to rows), ...)
in ascending rows, the dense product above the last; rows None means every
row count. `choose_plan` makes one from timings; `measure_plan` times them on
this machine.
"""
import time

import numpy as np

from keras_signflip.tf_keras._framework import tf

FORMATS = ("ell", "coo")
AUTO_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
MARGIN = 0.9  # a sparse product must be this much faster than dense to be chosen
# ... and save this much time a call. Served, a sparse product adds a
# `tf.cond` and an XLA launch, which a product timed alone does not show, so
# small products timed alone mislead (a small kernel timed faster alone can
# serve slower); the large kernels that do gain save well above this.
MIN_SAVING_S = 0.5e-3


# Slots of K summed per gather. XLA materialises each gather, [n_out, slots,
# b] floats: all of K at once made a large kernel's product far slower than
# dense; 32 at a time was the fastest of 8, 16, 32 and 64 when measured.
ELL_SLOTS = 32


@tf.function(jit_compile=True)
def ell_matmul(x, rows, values):
  """x [b, n_in] @ W [n_in, n_out] from W's ELL rows/values [n_out, K]."""
  columns = tf.transpose(x)  # [n_in, b]
  width = rows.shape[1]
  starts = range(0, width, ELL_SLOTS) if width is not None else [0]  # K unknown: all at once
  total = 0.0
  for start in starts:
    end = start + ELL_SLOTS if width is not None else None
    gathered = tf.gather(columns, tf.cast(rows[:, start:end], tf.int32))  # [n_out, slots, b]
    total += tf.reduce_sum(gathered * values[:, start:end, None], axis=1)
  return tf.transpose(total)


def ell_width(keep):
  """K: the most non-zeros in one column of a 2-D keep mask (at least 1)."""
  return max(1, int(np.max(np.sum(keep, axis=0), initial=0)))


def ell_rows_dtype(n_in):
  """int16 row indices where they fit (n_in <= 32767), else int32: the rows
  are half of what an ELL product reads, so smaller indices serve faster."""
  return tf.int16 if n_in is not None and n_in <= np.iinfo(np.int16).max else tf.int32


def ell_from_keep(keep, values, width):
  """ELL (rows `ell_rows_dtype`, values float32), [n_out, width], in TF ops
  from a 2-D bool `keep` [n_in, n_out] and `values`: its non-zeros in
  row-major order."""
  keep = tf.convert_to_tensor(keep)
  order = tf.reshape(tf.math.cumsum(tf.cast(tf.reshape(keep, [-1]), tf.int32)) - 1,
                     tf.shape(keep))  # position of each non-zero in `values`
  pairs = tf.where(tf.transpose(keep))  # (column, row), by column, then row
  column, row = pairs[:, 0], pairs[:, 1]
  starts = tf.math.cumsum(tf.reduce_sum(tf.cast(keep, tf.int64), axis=0), exclusive=True)
  slot = tf.range(tf.shape(pairs, out_type=tf.int64)[0]) - tf.gather(starts, column)
  where = tf.stack([column, slot], axis=1)
  shape = tf.stack([tf.shape(keep, out_type=tf.int64)[1], width])
  rows = tf.cast(tf.scatter_nd(where, tf.cast(row, tf.int32), shape),
                 ell_rows_dtype(keep.shape[0]))
  picked = tf.gather(values, tf.gather_nd(order, tf.stack([row, column], axis=1)))
  return rows, tf.scatter_nd(where, picked, shape)


def choose_plan(timings, margin=MARGIN, min_saving=MIN_SAVING_S):
  """A plan from ascending (rows, {format: seconds}, dense seconds) medians:
  at each row count the fastest format, while it takes at most `margin` x
  dense and saves at least `min_saving` seconds; dense from the first row
  count where none does."""
  plan = []
  for rows, seconds, dense in timings:
    best = min(seconds, key=seconds.get)
    if seconds[best] > margin * dense or dense - seconds[best] < min_saving:
      break
    if plan and plan[-1][0] == best:
      plan[-1] = (best, rows)
    else:
      plan.append((best, rows))
  return tuple(plan)


def measure_plan(kernel, calls=21, rows_to_try=AUTO_ROWS):
  """Times x @ kernel dense, ELL and COO (median of `calls` interleaved calls)
  per row count until neither sparse product is clearly faster; returns
  `choose_plan` of that."""
  kernel = np.asarray(kernel, np.float32).reshape(-1, np.shape(kernel)[-1])
  keep = kernel != 0
  dense_kernel = tf.constant(kernel)
  matrix = tf.sparse.from_dense(dense_kernel)
  ell_rows, ell_values = ell_from_keep(keep, kernel[keep], ell_width(keep))
  fns = {"dense": tf.function(lambda x: tf.matmul(x, dense_kernel)),
         "coo": tf.function(lambda x: tf.sparse.sparse_dense_matmul(x, matrix)),
         "ell": lambda x: ell_matmul(x, ell_rows, ell_values)}
  timings, rng = [], np.random.RandomState(0)
  for rows in rows_to_try:
    x = tf.constant(rng.rand(rows, kernel.shape[0]).astype(np.float32))
    times = {name: [] for name in fns}
    for fn in fns.values():
      fn(x)  # trace and compile
    for _ in range(calls):
      for name, fn in fns.items():
        start = time.perf_counter()
        fn(x).numpy()
        times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    timings.append((rows, {f: median[f] for f in FORMATS}, median["dense"]))
    plan = choose_plan(timings)
    if not plan or plan[-1][1] < rows:
      break
  return choose_plan(timings)


def check_plan(plan):
  """A plan from a user: rows (int >= 0: COO up to them), None (COO at every
  row count) or ((format, rows), ...) ascending; returns the tuple form or
  raises ValueError naming what is wrong."""
  if plan is None:
    return (("coo", None),)
  if isinstance(plan, int) and not isinstance(plan, bool):
    if plan < 0:
      raise ValueError(f"a row count must be >= 0; received {plan}.")
    return (("coo", plan),) if plan else ()
  try:
    steps = tuple((fmt, rows) for fmt, rows in plan)
  except (TypeError, ValueError):
    raise ValueError(f"expected rows (int), None or ((format, rows), ...); received "
                     f"{plan!r}.") from None
  previous = 0
  for i, (fmt, rows) in enumerate(steps):
    if fmt not in FORMATS:
      raise ValueError(f"unknown format {fmt!r}; expected one of {list(FORMATS)}.")
    last = i == len(steps) - 1
    if rows is None and last:
      continue
    if not isinstance(rows, int) or isinstance(rows, bool) or rows <= previous:
      raise ValueError(f"rows must be ascending ints (None only last); received {plan!r}.")
    previous = rows
  return steps
