"""The public functions, sending each call to the path its model belongs to.

A tf_keras model goes to TF-MOT's path (`keras_signflip.prune`), a Keras 3
model to `keras_signflip.keras3`; the arguments and results are the same.
"""
import numpy as np

from keras_signflip import paths

__all__ = ["prune_sign_flip", "strip_pruning", "collect_wrappers", "flip_states",
           "flip_counts", "masks", "set_reference", "sparsity_report", "summarize"]


def prune_sign_flip(to_prune, *args, **kwargs):
  """Wraps a layer, list of layers or Sequential/Functional model for pruning.

  See `keras_signflip.prune.prune_sign_flip` (tf_keras) and
  `keras_signflip.keras3.prune_sign_flip` (Keras 3) for the arguments.
  """
  return paths.of(to_prune).prune_sign_flip(to_prune, *args, **kwargs)


def strip_pruning(model):
  """The model without pruning wrappers (pruned weights zero)."""
  return paths.of(model).strip_pruning(model)


def collect_wrappers(model):
  """Every keras_signflip wrapper of `model`, in layer order."""
  return paths.of(model).collect_wrappers(model)


def flip_states(model):
  """Every wrapped weight's pruning state (weight, mask, flips, ...)."""
  return paths.of(model).flip_states(model)


def flip_counts(model):
  """{weight name: np.ndarray of sign-flip counts}."""
  return paths.of(model).flip_counts(model)


def masks(model):
  """{weight name: np.ndarray mask (0/1)}."""
  return paths.of(model).masks(model)


def set_reference(model):
  """Moves the reference weights (of the reference criteria) to the current ones."""
  return paths.of(model).set_reference(model)


def sparsity_report(model):
  """{'layers': {name: sparsity}, 'overall': sparsity, 'flips': {name: total}}."""
  return paths.of(model).sparsity_report(model)


def summarize(masks, flips):
  """The report both paths return, from {name: mask array} and {name: flip array}."""
  sizes = {n: int(np.size(m)) for n, m in masks.items()}
  zeros = {n: sizes[n] - int(np.count_nonzero(m)) for n, m in masks.items()}
  total = sum(sizes.values())
  return {"layers": {n: zeros[n] / sizes[n] for n in masks},
          "overall": sum(zeros.values()) / total if total else 0.0,
          "flips": {n: int(np.sum(f)) for n, f in flips.items()}}
