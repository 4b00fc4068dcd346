"""The public functions, each sending its call to the family that owns the model.

A tf_keras model goes to `keras_signflip.tf_keras` (TF-MOT's wrappers), a
Keras 3 model to `keras_signflip.keras3`; arguments and results are the same.
"""
from keras_signflip import families

__all__ = ["prune_sign_flip", "strip_pruning", "collect_wrappers", "flip_states",
           "flip_counts", "masks", "set_reference", "sparsity_report", "export_saved_model"]


def prune_sign_flip(to_prune, *args, **kwargs):
  """Wraps a layer, list of layers or Sequential/Functional model for pruning.

  See `keras_signflip.tf_keras.prune.prune_sign_flip` (tf_keras) and
  `keras_signflip.keras3.prune_sign_flip` (Keras 3) for the arguments.
  """
  return families.of(to_prune).prune_sign_flip(to_prune, *args, **kwargs)


def strip_pruning(model):
  """The model without pruning wrappers (pruned weights zero)."""
  return families.of(model).strip_pruning(model)


def collect_wrappers(model):
  """Every keras_signflip wrapper of `model`, in layer order."""
  return families.of(model).collect_wrappers(model)


def flip_states(model):
  """Every wrapped weight's `FlipState` (weight, mask, flips, ...)."""
  return families.of(model).flip_states(model)


def flip_counts(model):
  """{weight name: np.ndarray of sign-flip counts}."""
  return families.of(model).flip_counts(model)


def masks(model):
  """{weight name: np.ndarray mask (0/1)}."""
  return families.of(model).masks(model)


def set_reference(model):
  """Moves the reference weights (of the reference criteria) to the current ones."""
  return families.of(model).set_reference(model)


def sparsity_report(model):
  """{'layers': {name: sparsity}, 'overall': sparsity, 'flips': {name: total}}."""
  return families.of(model).sparsity_report(model)


def export_saved_model(model, path, **kwargs):
  """Strips `model` and writes a SavedModel at `path`; returns a report.

  See `keras_signflip.tf_keras.export.export_saved_model` (sparse format,
  size report) and `keras_signflip.keras3.export.export_saved_model`.
  """
  return families.of(model).export_saved_model(model, path, **kwargs)
