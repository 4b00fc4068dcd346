"""Sparse SavedModels that load with plain `tf.saved_model.load`.

`export_saved_model(model, path)` strips the pruning wrappers and writes a
SavedModel whose `serving_default` signature computes the model's outputs.
With `sparse=True` (default) every weight tensor that is at least half zeros
is stored as

    bits   = packbits(w != 0)       # 1 bit per weight (uint8)
    values = w[w != 0]              # the non-zero values, float32

and densified by the serving function on its first call
(`w = where(bits, values[cumsum(bits) - 1], 0)`) into a cache variable that is
saved empty, so the files hold about n/8 + 4 * nnz bytes instead of 4 * n and
every later call reads the dense weight as the dense SavedModel does (one
`cond` on a flag more). Other variables are saved as they are.
The directory is written beside `path` and renamed into place, so an
interrupted export never leaves a half-written model.

`values_dtype` stores the non-zero values smaller: "float16" (2 bytes each),
or "int8" with a float32 scale per output channel (the last axis),
scale_c = max |w[..., c]| / 127, q = round(w / scale_c) -- weights that round
to 0 become zeros too; the serving function computes q * scale_c in float32.

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
import io
import os
import shutil
import tarfile
import tempfile
import zlib

import numpy as np

from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras._compat import keras, tf

__all__ = ["export_saved_model", "format_report", "gzip_size", "export_tflite"]


def gzip_size(path):
  """Bytes of gzip -9 over a deterministic tar of `path` (file or directory)."""
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w") as tar:
    entries = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
    for p in entries:
      info = tar.gettarinfo(p, arcname=os.path.relpath(p, os.path.dirname(path)))
      info.mtime = info.uid = info.gid = 0
      with open(p, "rb") as f:
        tar.addfile(info, f)
  return len(zlib.compress(buf.getvalue(), 9))


def _layers(model):
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from _layers(layer)
    yield layer


class _Packed(tf.Module):
  """One sparse weight: a bitmap of its non-zeros and their values, and the
  dense weight cached at the first call (saved empty: `cache` has no fixed
  shape, `ready` is False until then)."""

  def __init__(self, value, name, values_dtype="float32"):
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
    self.bits = tf.Variable(np.packbits(nonzero), trainable=False, name="bits")
    # A trailing 0 keeps the gather valid when every weight is pruned.
    self.values = tf.Variable(np.append(flat[nonzero], 0).astype(values_dtype),
                              trainable=False, name="values")
    self.cache = tf.Variable(tf.zeros([0], tf.float32), shape=tf.TensorShape(None),
                             trainable=False, name="cache")
    self.ready = tf.Variable(False, trainable=False, name="ready")

  def dense(self):
    """The dense weight: from the cache, or densified and cached on the first call."""
    def densify_and_cache():
      flat = tf.reshape(self._densify(), [-1])
      with tf.control_dependencies([self.cache.assign(flat)]):
        with tf.control_dependencies([self.ready.assign(True)]):
          return tf.identity(flat)
    # The flag, not tf.size(cache): the cache's saved (empty) shape would be
    # folded into the graph as a constant.
    flat = tf.cond(self.ready, lambda: tf.identity(self.cache.read_value()), densify_and_cache)
    return tf.reshape(flat, self.shape)

  def _densify(self):
    shifts = tf.constant([7, 6, 5, 4, 3, 2, 1, 0], tf.uint8)
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(self.bits[:, None], shifts), 1)
    keep = tf.cast(tf.reshape(bits, [-1])[:self.size], tf.bool)
    index = tf.math.cumsum(tf.cast(keep, tf.int32)) - 1
    values = tf.cast(tf.gather(self.values, tf.maximum(index, 0)), tf.float32)
    dense = tf.reshape(tf.where(keep, values, 0.0), self.shape)
    return dense if self.scales is None else dense * self.scales


class _Serving(tf.Module):
  """Tracks only what is saved: packed weights and the other variables.

  The Keras model lives in the serving function's closure, not in an
  attribute, so its dense kernels are not part of the saved object graph.
  """

  def __init__(self, model, sparse, values_dtype="float32"):
    super().__init__()
    swaps = []
    for layer in _layers(model):
      for attr, value in list(vars(layer).items()):
        if isinstance(value, tf.Variable) and not attr.startswith("_"):
          array = value.numpy()
          if sparse and array.ndim >= 2 and np.mean(array == 0) >= 0.5:
            # A mixed-precision layer reads its AutoCastVariables in its compute
            # dtype; the densified tensor must arrive in that dtype too.
            dtype = layer.compute_dtype if hasattr(value, "_variable") else value.dtype
            swaps.append((layer, attr, _Packed(array, name=f"{layer.name}_{attr}",
                                               values_dtype=values_dtype), dtype))
    swapped = {id(getattr(l, a)) for l, a, _, _ in swaps}
    self.packed = [p for _, _, p, _ in swaps]
    self.kept = [v for v in model.variables if id(v) not in swapped]

    def call(*inputs):
      originals = [(l, a, getattr(l, a)) for l, a, _, _ in swaps]
      try:
        for layer, attr, packed, dtype in swaps:  # layers read the densified tensor
          object.__setattr__(layer, attr, tf.cast(packed.dense(), dtype))
        out = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
      finally:
        for layer, attr, original in originals:
          object.__setattr__(layer, attr, original)
      return out if isinstance(out, dict) else {"output": out}

    spec = [tf.TensorSpec([None] + list(i.shape[1:]), i.dtype) for i in model.inputs]
    self.serve = tf.function(call, input_signature=spec)


def _stripped(model):
  return prune_lib.strip_pruning(model) if prune_lib.collect_wrappers(model) else model


def _write_atomically(model, path, sparse, overwrite, values_dtype="float32"):
  parent = os.path.dirname(os.path.abspath(path)) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
  try:
    module = _Serving(model, sparse, values_dtype)
    module.serve.get_concrete_function()
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    if os.path.exists(path):
      if not overwrite:
        raise ValueError(f"{path} exists; pass overwrite=True to replace it.")
      shutil.rmtree(path)
    os.replace(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return module


VALUES_DTYPES = ("float32", "float16", "int8")


def export_saved_model(model, path, sparse=True, overwrite=False, compare_sizes=False,
                       verbose=True, values_dtype="float32"):
  """Strips pruning and writes a SavedModel with a `serving_default` signature.

  Args:
    model: a tf_keras Sequential/Functional model, wrapped or not.
    path: the SavedModel directory to write.
    sparse: store mostly-zero weights as bitmap + values. Defaults to True.
    overwrite: replace an existing `path`. Defaults to False.
    compare_sizes: also save the dense model and TF-MOT's strip+save path to a
      temporary directory and compare gzip sizes. Defaults to False.
    verbose: print the report (`format_report`). Defaults to True.
    values_dtype: "float32", "float16" or "int8" (per-channel scales) for the
      stored non-zero values (module docstring). Defaults to "float32".

  Returns:
    A dict: `layers` {weight: sparsity}, `overall_sparsity`, `nonzero_params`,
    `params`, `gzip_bytes`, and with `compare_sizes`, `dense_gzip_bytes`,
    `ratio`, `tfmot_path_gzip_bytes` and `tfmot_path_ratio`.

  Raises:
    ValueError: `path` exists and `overwrite` is False (nothing is written).
  """
  if values_dtype not in VALUES_DTYPES:
    raise ValueError(f"Received an invalid value for `values_dtype`, expected one of "
                     f"{list(VALUES_DTYPES)}. Received: values_dtype={values_dtype!r}")
  if values_dtype != "float32" and not sparse:
    raise ValueError(f"values_dtype={values_dtype!r} applies to the sparse format; pass "
                     "sparse=True.")
  if os.path.exists(path) and not overwrite:
    raise ValueError(f"Export path {path} exists; pass overwrite=True (or "
                     "--overwrite) to replace it, or choose another path.")
  stripped = _stripped(model)
  _write_atomically(stripped, path, sparse, overwrite, values_dtype)
  layers, zeros, total = {}, 0, 0
  for layer in _layers(stripped):
    for w in getattr(layer, "trainable_weights", []):
      if len(w.shape) >= 2:
        a = w.numpy()
        layers[w.name] = float(np.mean(a == 0))
        zeros += int(np.sum(a == 0))
        total += a.size
  params = int(sum(np.prod(v.shape) for v in stripped.trainable_weights))
  out = {
      "path": path,
      "layers": layers,
      "overall_sparsity": zeros / total if total else 0.0,
      "nonzero_params": int(sum(np.count_nonzero(v.numpy()) for v in stripped.trainable_weights)),
      "params": params,
      "gzip_bytes": gzip_size(path),
      "values_dtype": values_dtype,
  }
  if compare_sizes:
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
    out["ratio"] = out["gzip_bytes"] / out["dense_gzip_bytes"]
    out["tfmot_path_ratio"] = out["tfmot_path_gzip_bytes"] / out["dense_gzip_bytes"]
  if verbose:
    print(format_report(out))
  return out


def _fill_zeros(model, seed=0):
  """Replaces the zeros of >= 2-D weights by normal draws at their scale."""
  rng = np.random.RandomState(seed)
  for v in model.trainable_weights:
    a = v.numpy()
    if a.ndim >= 2 and np.any(a == 0):
      scale = a[a != 0].std() if np.any(a != 0) else 0.05
      v.assign(np.where(a == 0, rng.randn(*a.shape) * scale, a).astype(a.dtype))


def export_tflite(model, path):
  """Writes a TFLite flatbuffer with TF's sparsity optimisation; returns bytes."""
  stripped = _stripped(model)
  converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
  converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  data = converter.convert()
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
  return len(data)


def format_report(report):
  """Human-readable lines for an export report."""
  lines = [f"Exported {report['path']}"]
  for name, s in report["layers"].items():
    lines.append(f"  {name:40s} sparsity {100 * s:6.2f}%")
  lines.append(f"  overall sparsity {100 * report['overall_sparsity']:.2f}%, "
               f"{report['nonzero_params']:,} of {report['params']:,} parameters non-zero")
  lines.append(f"  gzip size {report['gzip_bytes']:,} bytes")
  if "dense_gzip_bytes" in report:
    lines.append(f"  vs dense (unpruned) {report['dense_gzip_bytes']:,} bytes: "
                 f"x{report['ratio']:.3f}; TF-MOT's strip+save path: "
                 f"{report['tfmot_path_gzip_bytes']:,} bytes, x{report['tfmot_path_ratio']:.3f}")
  return "\n".join(lines)
