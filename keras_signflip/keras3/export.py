"""Export a pruned Keras 3 model: strip the wrappers, then `model.export`.

`model.export(path, format="tf_saved_model")` writes a SavedModel on the
TensorFlow backend (on JAX through jax2tf, which needs TensorFlow). The
pruned weights are exact zeros, so the directory compresses by the sparsity
(`keras_signflip.tf_keras.export.gzip_size` measures it). The directory is written
next to `path` and renamed into place, so an interrupted export never leaves
a half-written model at `path`.
"""
import os
import shutil

from keras_signflip.keras3 import prune as prune_lib

__all__ = ["export_saved_model"]


def export_saved_model(model, path, verbose=True):
  """Strips `model` and exports it as a SavedModel at `path` (replaced if present).

  Returns:
    The model's `sparsity_report` (per-weight and overall sparsity, flips).
  """
  if not isinstance(path, str) or not path:
    raise ValueError(f"`path` must be a non-empty directory path. Received: path={path!r}")
  report = prune_lib.sparsity_report(model)
  stripped = prune_lib.strip_pruning(model)
  tmp = path.rstrip("/") + ".partial"
  shutil.rmtree(tmp, ignore_errors=True)
  stripped.export(tmp, format="tf_saved_model", verbose=False)
  if os.path.exists(path):
    shutil.rmtree(path)
  os.replace(tmp, path)
  if verbose:
    print(f"keras_signflip: exported {path} (overall sparsity {report['overall']:.1%})")
  return report
