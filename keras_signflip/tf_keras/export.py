"""Sparse SavedModels that load with plain `tf.saved_model.load`.

`export_saved_model(model, path)` strips the pruning wrappers and writes a
SavedModel whose `serving_default` signature computes the model's outputs.
With `sparse=True` (default) every weight tensor that is at least half zeros
is stored as

    positions of w != 0:  packbits(w != 0)     n/8 bytes, or
                          uint8 gaps between them (a byte each, and a
                          filler entry of value 0 per 255 zeros in a row),
                          whichever is smaller
    values = w[w != 0]    the non-zero values, float32

and densified when the SavedModel loads (values scattered to their positions)
into a variable saved empty, so the files hold about min(n/8, nnz) + 4 * nnz
bytes instead of 4 * n and every call reads the dense weight as the dense
SavedModel does, with no first-call check. (`tf.saved_model.load`, and the
SavedModel's init op in TF1 and C++ loaders such as TF Serving, run a
`TrackableResource`'s initializer after restoring the variables.) Other
variables are saved as they are.
The directory is written beside `path` under a fresh temporary name and
renamed into place, so an interrupted export never leaves a half-written
model; it holds keras_signflip's marker (`owned_dir`), and only a directory
with that marker is ever replaced (with `overwrite=True`).

`values_dtype` stores the non-zero values smaller: "float16" (2 bytes each),
or "int8" with a float32 scale per output channel (the last axis),
scale_c = max |w[..., c]| / 127, q = round(w / scale_c) -- weights that round
to 0 become zeros too; the serving function computes q * scale_c in float32.

`kernels` chooses how Dense layers and 1x1 convolutions (stride 1, no
dilation, one group, channels last) with a sparse kernel compute
(`sparse_products`: ELL compiled by XLA, or COO with
`tf.sparse.sparse_dense_matmul`; both built at load like the dense weight):
"dense" (default) multiplies by the dense kernel; "sparse" always uses COO;
"auto" times dense, ELL and COO on this machine at export, per layer, for
1, 2, 4, ... rows (the batch, times the spatial positions of a 1x1
convolution) and serves each row count with the fastest, while it was
clearly faster than dense (median <= 0.9x), and dense from the first row
count where neither was, through `tf.cond`s on the row count -- a layer where
sparse never wins stays dense, so "auto" is never slower than dense by more
than the noise of that measurement. A dict {layer name: plan} pins plans
(e.g. measured on the serving machine): rows (COO up to them), None (COO
always) or ((format, rows), ...); layers not named stay dense.
Sparse products compute in float32 (a mixed-precision layer's output is cast
back to its compute dtype).

A report (returned, and printed by `format_report`) gives per-weight and
overall sparsity, non-zero parameters, and the gzip size of this SavedModel
(`gzip_bytes`). With `compare_sizes=True` (two more saves, into a temporary
directory; the binaries ask for it) it adds:

- `dense_gzip_bytes`: the same architecture exported with every weight
  non-zero (each zero replaced by a seeded normal draw at the scale of the
  tensor's non-zero values) -- what the unpruned model costs, the baseline of
  TF-MOT's published ratios; `ratio` = gzip_bytes / dense_gzip_bytes;
- `tfmot_path_gzip_bytes`: TF-MOT's documented path (strip, Keras SavedModel
  without optimizer, gzip); `tfmot_path_ratio` against the same baseline.
"""
import functools
import io
import os
import tarfile
import tempfile
import zlib

import numpy as np

from keras_signflip import owned_dir
from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras import sparse_products
from keras_signflip.tf_keras._framework import keras, tf

__all__ = ["export_saved_model", "format_report", "gzip_size", "export_tflite"]


def gzip_size(path):
  """Bytes of gzip -9 over a deterministic tar of `path` (file or directory);
  keras_signflip's marker file (`owned_dir.MARKER`) is not the model and is left out."""
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w") as tar:
    entries = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f != owned_dir.MARKER)
    for p in entries:
      info = tar.gettarinfo(p, arcname=os.path.relpath(p, os.path.dirname(path)))
      info.mtime = info.uid = info.gid = 0
      with open(p, "rb") as f:
        tar.addfile(info, f)
  return len(zlib.compress(buf.getvalue(), 9))


def _layers(model):
  """Every layer of `model`: nested models', custom blocks' and subclassed models' too."""
  return model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access


def _input_specs(model):
  """The serving function's input signature: the model's inputs, or for a subclassed
  model (which has none) what its first call took, any batch size."""
  if model.inputs:
    return [tf.TensorSpec([None] + list(i.shape[1:]), i.dtype) for i in model.inputs]
  spec = model.save_spec(dynamic_batch=True)
  if spec is None:
    raise ValueError(f"{type(model).__name__} has never been called, so its input "
                     "shapes are unknown: call it on a batch (model(x)) before exporting.")
  args, kwargs = spec
  if kwargs or len(args) != 1:
    raise ValueError(f"{type(model).__name__} was called with {len(args)} positional and "
                     f"{len(kwargs)} keyword inputs; the export serves a model called on "
                     "one tensor or one list of tensors.")
  return tf.nest.flatten(args[0])


class _FillAtLoad(tf.saved_model.experimental.TrackableResource):
  """Fills the packed weights' caches when the SavedModel loads.

  TensorFlow offers one hook that runs at load: a resource's initializer,
  run by `tf.saved_model.load` after it restores the variables, and by the
  SavedModel's init op in TF1 and C++ loaders (TF Serving). This resource
  exists for that initializer; its handle is never assigned, so it holds
  nothing. The caches are ordinary variables, saved empty and restored as
  eager variables that live as long as the functions that read them (a
  resource variable of our own would be a named one after load, kept by the
  process until it exits).
  """

  def __init__(self, packed):
    super().__init__()
    self._packed = list(packed)

  def _create_resource(self):
    return tf.raw_ops.VarHandleOp(dtype=tf.bool, shape=[])

  def _initialize(self):
    for packed in self._packed:
      packed.fill_caches()


class _Packed(tf.Module):
  """One sparse weight: where its non-zeros are (`positions`, one of two
  encodings) and their values, and what serving reads, filled from them at
  load (`_FillAtLoad`) into variables saved empty: the dense weight
  (`cache`), and for a kernel multiplied sparse, its [prod(shape[:-1]),
  shape[-1]] non-zero indices and values (COO) or its ELL layout.
  """

  def __init__(self, value, name, values_dtype="float32", dense_weight=True,
               sparse_formats=()):
    super().__init__(name=name)
    value = np.asarray(value, np.float32)
    self.shape = tuple(value.shape)
    self.size = value.size
    self.scales = None
    if values_dtype == "int8":
      peak = np.abs(value.reshape(-1, self.shape[-1])).max(axis=0)
      scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
      value = np.round(value / scales)  # broadcast on the last axis: per channel
      self.scales = tf.Variable(scales, trainable=False, name="scales")
    flat = value.ravel()
    nonzero = flat != 0
    gaps, entries = _gaps(np.flatnonzero(nonzero))
    # The smaller encoding of the positions: a bitmap (n / 8 bytes) or the
    # gaps between them (a byte per non-zero, plus a filler entry per 255
    # zeros in a row, whose value is the 0 there) -- gzipped, 17.5 vs 18.8 KB
    # at 10% density on 266k weights, 4.8 vs 6.4 KB at 2%, but 41 vs 33 KB at 50%.
    self.bits = self.gaps = None
    if gaps.size < self.size / 8:
      self.gaps = tf.Variable(gaps, trainable=False, name="gaps")
    else:
      self.bits = tf.Variable(np.packbits(nonzero), trainable=False, name="bits")
      entries = nonzero
    self.values = tf.Variable(flat[entries].astype(values_dtype), trainable=False,
                              name="values")
    empty = lambda dtype, shape, name: tf.Variable(  # noqa: E731
        tf.zeros(shape, dtype), shape=tf.TensorShape(None), trainable=False, name=name)
    self.cache = empty(tf.float32, [0], "cache") if dense_weight else None
    self.sparse_indices = self.sparse_values = self.ell_rows = self.ell_values = None
    if "coo" in sparse_formats:
      self.sparse_indices = empty(tf.int64, [0, 2], "sparse_indices")
      self.sparse_values = empty(tf.float32, [0], "sparse_values")
    if "ell" in sparse_formats:
      self.ell_width = sparse_products.ell_width(nonzero.reshape(-1, self.shape[-1]))
      self.ell_rows = empty(sparse_products.ell_rows_dtype(self.size // self.shape[-1]),
                            [0, 0], "ell_rows")
      self.ell_values = empty(tf.float32, [0, 0], "ell_values")

  def fill_caches(self):
    """Assigns the dense weight and the sparse kernel's formats to their caches."""
    dense = self.densify()
    if self.cache is not None:
      self.cache.assign(tf.reshape(dense, [-1]))
    if self.sparse_indices is None and self.ell_rows is None:
      return
    matrix = tf.reshape(dense, self._matrix_shape())
    keep = tf.not_equal(matrix, 0.0)
    indices = tf.where(keep)  # row-major (row, column)
    values = tf.gather_nd(matrix, indices)
    if self.sparse_indices is not None:
      self.sparse_indices.assign(indices)
      self.sparse_values.assign(values)
    if self.ell_rows is not None:
      rows, ell_values = sparse_products.ell_from_keep(keep, values, self.ell_width)
      self.ell_rows.assign(rows)
      self.ell_values.assign(ell_values)

  def dense(self):
    """The dense weight (float32), read from its cache."""
    return tf.reshape(self.cache.read_value(), self.shape)

  def sparse_matrix(self):
    """The weight as a [prod(shape[:-1]), shape[-1]] tf.SparseTensor, from its caches."""
    return tf.SparseTensor(tf.reshape(self.sparse_indices.read_value(), [-1, 2]),
                           tf.reshape(self.sparse_values.read_value(), [-1]),
                           self._matrix_shape())

  def ell(self):
    """The weight's ELL rows and values [shape[-1], ell_width], from their caches."""
    shape = [self.shape[-1], self.ell_width]
    return (tf.reshape(self.ell_rows.read_value(), shape),
            tf.reshape(self.ell_values.read_value(), shape))

  def _matrix_shape(self):
    return [self.size // self.shape[-1], self.shape[-1]]

  def densify(self):
    """w = scatter(positions, values) into zeros, times the int8 scales;
    positions = where(unpacked bits), or cumsum(gaps) - 1."""
    if self.bits is not None:
      shifts = tf.constant([7, 6, 5, 4, 3, 2, 1, 0], tf.uint8)
      bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(self.bits[:, None], shifts), 1)
      positions = tf.where(tf.cast(tf.reshape(bits, [-1])[:self.size], tf.bool))
    else:
      positions = tf.math.cumsum(tf.cast(self.gaps, tf.int64))[:, None] - 1
    flat = tf.scatter_nd(positions, tf.cast(self.values, tf.float32), [self.size])
    dense = tf.reshape(flat, self.shape)
    return dense if self.scales is None else dense * self.scales


def _gaps(positions, most=255):
  """uint8 gaps between ascending `positions` (from -1), each <= `most`, and
  the positions they reach: a longer gap is split by filler entries."""
  gaps = np.diff(np.concatenate([[-1], positions]))
  fillers = (gaps - 1) // most
  out = np.full(int(np.sum(fillers + 1)), most, np.int64)
  out[np.cumsum(fillers + 1) - 1] = gaps - most * fillers  # each gap's last entry
  return out.astype(np.uint8), np.cumsum(out) - 1


def sparse_kernel_layer(layer):
  """Whether `layer` computes one [rows, in] x [in, out] product with its
  kernel: Dense, or a channels-last Conv2D with a 1x1 kernel, stride 1, no
  dilation and one group."""
  if isinstance(layer, keras.layers.Dense):
    return True
  return (type(layer) is keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1)
          and tuple(layer.strides) == (1, 1) and tuple(layer.dilation_rate) == (1, 1)
          and layer.groups == 1 and layer.data_format == "channels_last")


def _sparse_call(layer, packed, plan):
  """A replacement for `layer.call` that multiplies by the kernel as `plan`
  says (`sparse_products`): each step's format up to its row count, dense
  above the last."""
  cols = packed.shape[-1]
  def call(inputs, *args, **kwargs):
    del args, kwargs  # Dense and Conv2D take no other call arguments here
    x = tf.reshape(tf.cast(inputs, tf.float32), [-1, packed.size // cols])
    products = {
        "coo": lambda: tf.sparse.sparse_dense_matmul(x, packed.sparse_matrix()),
        "ell": lambda: sparse_products.ell_matmul(x, *packed.ell()),
    }
    product = lambda: tf.matmul(x, tf.reshape(packed.dense(), [-1, cols]))  # noqa: E731
    for fmt, rows in reversed(plan):
      product = products[fmt] if rows is None else functools.partial(
          tf.cond, tf.shape(x)[0] <= rows, products[fmt], product)
    y = tf.reshape(product(), tf.concat([tf.shape(inputs)[:-1], [cols]], 0))
    y.set_shape(inputs.shape[:-1].concatenate([cols]))
    if layer.use_bias:
      y = tf.nn.bias_add(y, tf.cast(layer.bias, tf.float32))
    if layer.activation is not None:
      y = layer.activation(y)
    return tf.cast(y, layer.compute_dtype)
  return call


class _Serving(tf.Module):
  """Tracks only what is saved: packed weights and the other variables.

  The Keras model lives in the serving function's closure, not in an
  attribute, so its dense kernels are not part of the saved object graph.
  `kernel_plans` maps a layer name to the plan (`sparse_products`) of its
  kernel's products.
  """

  def __init__(self, model, sparse, values_dtype="float32", kernel_plans=None):
    super().__init__()
    kernel_plans = kernel_plans or {}
    swaps, calls = [], []
    for layer in _layers(model):
      for attr, value in list(vars(layer).items()):
        if isinstance(value, tf.Variable) and not attr.startswith("_"):
          array = value.numpy()
          if sparse and _worth_packing(array):
            plan = kernel_plans.get(layer.name, ()) if attr == "kernel" else ()
            packed = _Packed(array, name=f"{layer.name}_{attr}", values_dtype=values_dtype,
                             dense_weight=not plan or plan[-1][1] is not None,
                             sparse_formats={fmt for fmt, _ in plan})
            if plan:
              calls.append((layer, _sparse_call(layer, packed, plan)))
            # A mixed-precision layer reads its AutoCastVariables in its compute
            # dtype; the densified tensor must arrive in that dtype too.
            dtype = layer.compute_dtype if hasattr(value, "_variable") else value.dtype
            swaps.append((layer, attr, packed, dtype))
    swapped = {id(getattr(l, a)) for l, a, _, _ in swaps}
    self.packed = [p for _, _, p, _ in swaps]
    self.fill_at_load = _FillAtLoad(self.packed)
    self.kept = [v for v in model.variables if id(v) not in swapped]
    sparse_layers = {id(layer) for layer, _ in calls}

    def call(*inputs):
      originals = [(l, a, getattr(l, a)) for l, a, _, _ in swaps]
      try:
        for layer, attr, packed, dtype in swaps:  # layers read the densified tensor
          if not (attr == "kernel" and id(layer) in sparse_layers):
            object.__setattr__(layer, attr, tf.cast(packed.dense(), dtype))
        for layer, fn in calls:
          object.__setattr__(layer, "call", fn)
        out = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
      finally:
        for layer, attr, original in originals:
          object.__setattr__(layer, attr, original)
        for layer, _ in calls:
          object.__delattr__(layer, "call")
      return out if isinstance(out, dict) else {"output": out}

    spec = _input_specs(model)
    self.serve = tf.function(call, input_signature=spec)


def _worth_packing(array):
  """Weights stored as bitmap + values: >= 2-D and at least half zeros."""
  return array.ndim >= 2 and np.mean(array == 0) >= 0.5


def _write_atomically(model, path, sparse, overwrite, values_dtype="float32",
                      kernel_plans=None):
  """Saves the serving module into a fresh temporary sibling of `path`, then
  swaps it in (`owned_dir.staged`): a failure leaves `path` as it was, and only
  an earlier keras_signflip export is ever replaced."""
  with owned_dir.staged(path, "export", overwrite) as tmp:
    module = _Serving(model, sparse, values_dtype, kernel_plans)
    module.serve.get_concrete_function()
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
  return module


VALUES_DTYPES = ("float32", "float16", "int8")
KERNELS = ("dense", "sparse", "auto")


def _kernel_plans(model, kernels):
  """{layer name: plan (`sparse_products`)} for the `kernels` option, layers
  served dense left out; raises ValueError for a bad option."""
  kernels_by_layer = {layer.name: layer.kernel.numpy() for layer in _layers(model)
                      if sparse_kernel_layer(layer)}
  candidates = {name: k for name, k in kernels_by_layer.items() if _worth_packing(k)}
  if isinstance(kernels, dict):
    unknown = sorted(set(kernels) - set(candidates))
    if unknown:
      raise ValueError(f"kernels names {unknown}, which are not Dense or 1x1 Conv2D layers "
                       f"with a kernel at least half zeros; those are {sorted(candidates)}.")
    plans = {}
    for name, value in kernels.items():
      try:
        plans[name] = sparse_products.check_plan(value)
      except ValueError as e:
        raise ValueError(f"kernels[{name!r}]: {e} Pass rows (int >= 0: COO up to them), "
                         "None (COO always) or ((\"ell\"|\"coo\", rows), ...).") from None
  elif kernels == "dense":
    plans = {}
  elif kernels == "sparse":
    plans = {name: (("coo", None),) for name in candidates}
  else:
    plans = {name: sparse_products.measure_plan(kernel) for name, kernel in candidates.items()}
  return {name: plan for name, plan in plans.items() if plan}


def export_saved_model(model, path, sparse=True, overwrite=False, compare_sizes=False,
                       verbose=True, values_dtype="float32", kernels="dense"):
  """Strips pruning and writes a SavedModel with a `serving_default` signature.

  Args:
    model: a tf_keras model, wrapped or not (a subclassed one must have been
      called: its first call's inputs are the signature).
    path: the SavedModel directory to write.
    sparse: store mostly-zero weights as bitmap + values. Defaults to True.
    overwrite: replace an earlier keras_signflip export at `path`. Defaults
      to False. A directory keras_signflip did not write (no
      `owned_dir.MARKER`) is never replaced; an empty one is used.
    compare_sizes: also save the dense model and TF-MOT's strip+save path to a
      temporary directory and compare gzip sizes. Defaults to False.
    verbose: print the report (`format_report`). Defaults to True.
    values_dtype: "float32", "float16" or "int8" (per-channel scales) for the
      stored non-zero values (module docstring). Defaults to "float32".
    kernels: "dense", "sparse", "auto" or {layer name: plan}: how Dense and
      1x1 Conv2D layers with sparse kernels multiply (module docstring).
      Defaults to "dense".

  Returns:
    A dict: `layers` {weight: sparsity}, `overall_sparsity`, `nonzero_params`,
    `params`, `gzip_bytes`, `kernels` ({layer: plan}, layers with a sparse
    product), and with `compare_sizes`, `dense_gzip_bytes`,
    `ratio`, `tfmot_path_gzip_bytes` and `tfmot_path_ratio`.

  Raises:
    ValueError: `path` is a file, a non-empty directory keras_signflip did not
      write, or an earlier export and `overwrite` is False (nothing is
      written: `owned_dir.check_target`).
  """
  _check_format(sparse, values_dtype, kernels)
  owned_dir.check_target(path, "export", overwrite)
  with prune_lib.stripped(model) as stripped:
    kernel_plans = _kernel_plans(stripped, kernels)
    _write_atomically(stripped, path, sparse, overwrite, values_dtype, kernel_plans)
    out = dict(path=path, **_sparsity(stripped), gzip_bytes=gzip_size(path),
               values_dtype=values_dtype, kernels=kernel_plans)
    if compare_sizes:
      out.update(_compared_sizes(stripped, out["gzip_bytes"]))
  if verbose:
    print(format_report(out))
  return out


def _check_format(sparse, values_dtype, kernels):
  """Refuses a storage or kernel choice that does not exist or does not apply."""
  if values_dtype not in VALUES_DTYPES:
    raise ValueError(f"Received an invalid value for `values_dtype`, expected one of "
                     f"{list(VALUES_DTYPES)}. Received: values_dtype={values_dtype!r}")
  if values_dtype != "float32" and not sparse:
    raise ValueError(f"values_dtype={values_dtype!r} applies to the sparse format; pass "
                     "sparse=True.")
  if not isinstance(kernels, dict) and kernels not in KERNELS:
    raise ValueError(f"Received an invalid value for `kernels`, expected one of "
                     f"{list(KERNELS)} or a dict {{layer name: rows}}. Received: "
                     f"kernels={kernels!r}")
  if kernels != "dense" and not sparse:
    raise ValueError(f"kernels={kernels!r} needs the sparse format; pass sparse=True.")


def _sparsity(stripped):
  """The report's sparsity entries: `layers` {weight: sparsity} and
  `overall_sparsity` over the >= 2-D trainable weights, `nonzero_params`, `params`."""
  layers, zeros, total = {}, 0, 0
  for w in stripped.trainable_weights:  # each variable once (a nested model's are its layers')
    if len(w.shape) >= 2:
      a = w.numpy()
      layers[w.name] = float(np.mean(a == 0))
      zeros += int(np.sum(a == 0))
      total += a.size
  return {"layers": layers, "overall_sparsity": zeros / total if total else 0.0,
          "nonzero_params": int(sum(np.count_nonzero(v.numpy())
                                    for v in stripped.trainable_weights)),
          "params": int(sum(np.prod(v.shape) for v in stripped.trainable_weights))}


def _compared_sizes(stripped, gzip_bytes):
  """`compare_sizes`' entries: the dense baseline's and TF-MOT's path's gzip sizes
  (two more saves, into a temporary directory) and the ratios to the baseline."""
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    stripped.save(os.path.join(tmp, "tfmot"), save_format="tf", include_optimizer=False)
    out["tfmot_path_gzip_bytes"] = gzip_size(os.path.join(tmp, "tfmot"))
    saved = [v.numpy() for v in stripped.variables]
    try:
      _fill_zeros(stripped)
      _write_atomically(stripped, os.path.join(tmp, "dense"), sparse=False, overwrite=False)
    finally:
      for v, a in zip(stripped.variables, saved):
        v.assign(a)
    out["dense_gzip_bytes"] = gzip_size(os.path.join(tmp, "dense"))
  out["ratio"] = gzip_bytes / out["dense_gzip_bytes"]
  out["tfmot_path_ratio"] = out["tfmot_path_gzip_bytes"] / out["dense_gzip_bytes"]
  return out


def _fill_zeros(model, seed=0):
  """Replaces the zeros of >= 2-D weights by normal draws at their scale."""
  rng = np.random.RandomState(seed)
  for v in model.trainable_weights:
    a = v.numpy()
    if a.ndim >= 2 and np.any(a == 0):
      scale = a[a != 0].std() if np.any(a != 0) else 0.05
      v.assign(np.where(a == 0, rng.randn(*a.shape) * scale, a).astype(a.dtype))


def export_tflite(model, path, overwrite=False):
  """Writes a TFLite flatbuffer with TF's sparsity optimisation; returns bytes.

  `path` is one file, written under a fresh temporary name beside it and
  renamed into place (a failure leaves no partial file). An existing file
  at `path` is replaced only with `overwrite=True` (it is the file named);
  a directory or symbolic link there is never replaced. Checked before
  converting.
  """
  _check_file_target(path, overwrite)
  with prune_lib.stripped(model) as stripped:
    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    data = converter.convert()
  _check_file_target(path, overwrite)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return len(data)


def _check_file_target(path, overwrite):
  if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
    raise ValueError(f"`path` must be a non-empty file path. Received: path={path!r}")
  if os.path.islink(path) or os.path.isdir(path):
    raise ValueError(f"{path} is a {'symbolic link' if os.path.islink(path) else 'directory'}; "
                     "export_tflite writes a file and never replaces one. Choose another path.")
  if os.path.exists(path) and not overwrite:
    raise ValueError(f"{path} exists; pass overwrite=True to replace that file, or choose "
                     "another path.")


def format_report(report):
  """Human-readable lines for an export report."""
  lines = [f"Exported {report['path']}"]
  for name, s in report["layers"].items():
    lines.append(f"  {name:40s} sparsity {100 * s:6.2f}%")
  lines.append(f"  overall sparsity {100 * report['overall_sparsity']:.2f}%, "
               f"{report['nonzero_params']:,} of {report['params']:,} parameters non-zero")
  lines.append(f"  gzip size {report['gzip_bytes']:,} bytes")
  for name, plan in report.get("kernels", {}).items():
    steps = [f"{fmt} " + ("at every row count" if rows is None else f"up to {rows} rows")
             for fmt, rows in plan]
    dense = "" if plan[-1][1] is None else ", dense above"
    lines.append(f"  {name}: sparse kernel, " + ", then ".join(steps) + dense)
  if "dense_gzip_bytes" in report:
    lines.append(f"  vs dense (unpruned) {report['dense_gzip_bytes']:,} bytes: "
                 f"x{report['ratio']:.3f}; TF-MOT's strip+save path: "
                 f"{report['tfmot_path_gzip_bytes']:,} bytes, x{report['tfmot_path_ratio']:.3f}")
  return "\n".join(lines)
