"""keras_signflip: sign-flip, FlipOut and lottery-ticket pruning for Keras.

    import keras_signflip as ksf
    model = ksf.prune_sign_flip(base, pruning_schedule=schedule,
                                criterion=ksf.criteria.Hybrid(power=2),
                                scope="global")
    model.fit(x, y, callbacks=[ksf.UpdatePruningStep()])
    final = ksf.strip_pruning(model)

`base` may be a tf_keras model (the `keras_signflip.tf_keras` family, on
TF-MOT) or a Keras 3 model on any backend (`keras_signflip.keras3`); the
entry points choose by its type (`keras_signflip.families`).

Importing keras_signflip imports no framework and sets nothing in the
process. Each family is imported on first use; when tf_keras or Keras 3 is
already imported, that family is imported here so that `load_model` finds
its registered classes. Importing the tf_keras family imports TF-MOT, which
sets `TF_USE_LEGACY_KERAS=1` in `os.environ` (TF-MOT's behaviour). The one
other effect is an import hook answering only for the module names that
moved in 0.3 or were renamed in 0.4 (`keras_signflip._old_names`).
"""
import importlib
import sys

from keras_signflip import _old_names
from keras_signflip import criteria
from keras_signflip import flipout  # noqa: F401  (ksf.flipout, the recipe: framework-free)
from keras_signflip.api import (collect_wrappers, export_saved_model, flip_counts,
                                flip_states, masks, prune_sign_flip, record_gradients,
                                set_reference, snip, sparsity_report, strip_pruning,
                                with_gradient_noise)

__version__ = "0.3.0"

_old_names.install()

# Register the serializable classes of each family whose Keras is already
# imported (importing one here would be a surprise: Keras 3 fixes its backend
# when imported, and TF-MOT sets TF_USE_LEGACY_KERAS).
if "tf_keras" in sys.modules:
  try:
    from keras_signflip import tf_keras as _tf_keras_family  # noqa: F401
  except ImportError:
    pass
if "keras" in sys.modules:
  try:
    from keras_signflip import keras3 as _keras3_family  # noqa: F401
  except ImportError:
    pass

_LAZY = {  # public name -> module defining it, imported on first use
    "UpdatePruningStep": "keras_signflip.callbacks",
    "Pruner": "keras_signflip.custom_loop",
    "SignFlipSummaries": "keras_signflip.summaries",
    "EarlyBird": "keras_signflip.lottery.early_bird",
    "RewindPoint": "keras_signflip.lottery.rewind",
    "DynamicSparsity": "keras_signflip.dynamic",
    "PruneSignFlip": "keras_signflip.tf_keras.wrapper",
    "link_global": "keras_signflip.tf_keras.prune",
    "prune_scope": "keras_signflip.tf_keras.prune",
    "shrink": "keras_signflip.shrinking",
}
_SUBMODULES = ("tf_keras", "keras3", "lottery", "families", "callbacks", "callback_base",
               "custom_loop", "summaries", "inspection", "arguments", "api", "data", "models",
               "flipout",
               "distributions", "dynamic", "schedule_checks", "array_namespace",
               "connection_sensitivity", "dropout_candidates", "hard_concrete", "hoyer_square",
               "kernel_methods", "mask_rules", "sparsity_schedules", "variational_dropout",
               "units", "shrinking",
               "wrapper_config")


def __getattr__(name):
  if name in _SUBMODULES or name in _old_names.MOVED:
    return importlib.import_module(f"keras_signflip.{name}")
  if name in _old_names.RENAMED:
    raise AttributeError(_old_names.RENAMED[name])
  if name not in _LAZY:
    raise AttributeError(f"module 'keras_signflip' has no attribute {name!r}")
  value = getattr(importlib.import_module(_LAZY[name]), name)
  globals()[name] = value
  return value


__all__ = ["criteria", "prune_sign_flip", "strip_pruning", "flip_counts", "masks",
           "set_reference", "collect_wrappers", "flip_states", "UpdatePruningStep", "Pruner",
           "SignFlipSummaries", "sparsity_report", "export_saved_model", "EarlyBird",
           "RewindPoint", "record_gradients", "with_gradient_noise", "snip", "DynamicSparsity",
           "shrink"]
# Also public, for tf_keras models only (importing them imports TF-MOT):
# prune_scope, link_global, PruneSignFlip.
