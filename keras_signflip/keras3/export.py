"""Export a pruned Keras 3 model: strip the wrappers, then `model.export`.

`model.export(path, format="tf_saved_model")` writes a SavedModel on the
TensorFlow backend (on JAX through jax2tf, which needs TensorFlow). The
pruned weights are exact zeros, so the directory compresses by the sparsity
(`keras_signflip.tf_keras.export.gzip_size` measures it). The directory is
written beside `path` under a fresh temporary name and renamed into place
(`keras_signflip.owned_dir`), so an interrupted export never leaves a
half-written model at `path`, and only an earlier keras_signflip export is
ever replaced (with `overwrite=True`): a directory with a user's files is not.
"""
from keras_signflip import owned_dir
from keras_signflip.keras3 import prune as prune_lib

__all__ = ["export_saved_model"]


def export_saved_model(model, path, overwrite=False, verbose=True):
  """Strips `model` and exports it as a SavedModel at `path`.

  Args:
    model: a Keras 3 model, wrapped or not.
    path: the SavedModel directory to write (absent or empty, or an earlier
      keras_signflip export with `overwrite`).
    overwrite: replace an earlier keras_signflip export at `path`. Defaults
      to False. A directory keras_signflip did not write is never replaced.
    verbose: print one line saying what was written. Defaults to True.

  Returns:
    The model's `sparsity_report` (per-weight and overall sparsity, flips).

  Raises:
    ValueError: `path` cannot be written under those rules
      (`owned_dir.check_target`); nothing is written.
  """
  if not isinstance(path, str) or not path:
    raise ValueError(f"`path` must be a non-empty directory path. Received: path={path!r}")
  owned_dir.check_target(path, "export", overwrite)
  report = prune_lib.sparsity_report(model)
  stripped = prune_lib.strip_pruning(model)
  with owned_dir.staged(path, "export", overwrite) as tmp:
    stripped.export(tmp, format="tf_saved_model", verbose=False)
  if verbose:
    print(f"keras_signflip: exported {path} (overall sparsity {report['overall']:.1%})")
  return report
