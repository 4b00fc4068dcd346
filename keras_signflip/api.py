"""The public functions, each sending its call to the family that owns the model.

A tf_keras model goes to `keras_signflip.tf_keras` (TF-MOT's wrappers), a
Keras 3 model to `keras_signflip.keras3` (`keras_signflip.families.of`);
arguments and results are the same. Reading a model and SNIP are written once
for both (`keras_signflip.inspection`, `keras_signflip.connection_sensitivity`).
"""
from keras_signflip import connection_sensitivity
from keras_signflip import families
from keras_signflip import inspection

__all__ = ["prune_sign_flip", "strip_pruning", "collect_wrappers", "flip_states",
           "flip_counts", "masks", "set_reference", "sparsity_report", "export_saved_model",
           "record_gradients", "with_gradient_noise", "snip"]


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
  """Every wrapped weight's `PruningState` (weight, mask, flips, ...)."""
  return families.of(model).flip_states(model)


flip_counts = inspection.flip_counts
masks = inspection.masks
set_reference = inspection.set_reference
sparsity_report = inspection.sparsity_report
snip = connection_sensitivity.snip


def export_saved_model(model, path, **kwargs):
  """Strips `model` and writes a SavedModel at `path`; returns a report.

  `path` must be absent, empty, or (with `overwrite=True`) an earlier
  keras_signflip export; nothing else is ever replaced (`owned_dir`).

  See `keras_signflip.tf_keras.export.export_saved_model` (sparse format,
  size report) and `keras_signflip.keras3.export.export_saved_model`.
  """
  return families.of(model).export_saved_model(model, path, **kwargs)


def record_gradients(optimizer):
  """A copy of `optimizer` that records sum_t w_t * g_t for `Saliency` and
  `MovementScore` (see `keras_signflip.tf_keras.gradient_noise.record_gradients` and
  `keras_signflip.keras3.optimizers.record_gradients`)."""
  return families.of(optimizer).record_gradients(optimizer)


def with_gradient_noise(optimizer, factor, seed=0, weight_decay=0.0, noise_on="prunable"):
  """A copy of `optimizer` that adds FlipOut's gradient noise to pruned weights'
  gradients (or to every trainable variable's), then `weight_decay * w` to every
  gradient (PyTorch's coupled decay);
  it also records gradients as `record_gradients` does (see
  `keras_signflip.tf_keras.gradient_noise.with_gradient_noise` and
  `keras_signflip.keras3.optimizers.with_gradient_noise`).

  Args:
    optimizer: a tf_keras or Keras 3 optimizer instance (its config is copied).
    factor: the noise scale relative to each pruned weight's gradient RMS
      (FlipOut's lambda), a finite number >= 0; 0 for none.
    seed: integer seed of the noise. Defaults to 0.
    weight_decay: coupled (PyTorch-style) weight decay added to every
      gradient after the noise, >= 0. Defaults to 0.
    noise_on: "prunable" (the pruned layers' kernels, masked; the default) or
      "all" (every trainable variable, biases and normalisation included, as
      FlipOut's published runs; kernels still masked).
  """
  return families.of(optimizer).with_gradient_noise(optimizer, factor, seed, weight_decay,
                                                    noise_on)
