"""keras_signflip: sign-flip, FlipOut and lottery-ticket pruning for Keras.

    import keras_signflip as ksf
    model = ksf.prune_sign_flip(base, pruning_schedule=schedule,
                                criterion=ksf.criteria.Hybrid(power=2),
                                scope="global")
    model.fit(x, y, callbacks=[ksf.UpdatePruningStep()])
    final = ksf.strip_pruning(model)

`base` may be a tf_keras model (TF-MOT's path) or a Keras 3 model on any
backend (`keras_signflip.keras3`); the entry points choose by its type.
Both paths are imported on first use.
"""
import importlib
import os
import sys

# TF-MOT needs Keras 2: make `tf.keras` tf_keras unless the user chose.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from keras_signflip import criteria  # noqa: E402  (no TensorFlow needed)
from keras_signflip.api import (collect_wrappers, flip_counts, flip_states, masks,  # noqa: E402
                                prune_sign_flip, set_reference, sparsity_report,
                                strip_pruning)

__version__ = "0.2.0"

# Register the serializable classes of each installed path, so that
# `load_model` finds them right after `import keras_signflip`: the tf_keras
# path whenever TensorFlow and TF-MOT are installed; the Keras 3 path when
# Keras 3 is already imported (importing it here would fix its backend
# before the user sets KERAS_BACKEND).
try:
  from keras_signflip import callbacks as _tf_keras_path  # noqa: E402,F401
except ImportError:  # no TensorFlow / TF-MOT: the Keras 3 path only
  pass
if "keras" in sys.modules:
  try:
    from keras_signflip import keras3 as _keras3_path  # noqa: E402,F401
  except ImportError:
    pass

# name -> (tf_keras module, Keras 3 fallback module when TensorFlow is absent)
_LAZY = {
    "UpdatePruningStep": ("keras_signflip.callbacks", "keras_signflip.keras3.callbacks"),
    "SignFlipSummaries": ("keras_signflip.callbacks", None),
    "EarlyBird": ("keras_signflip.early_bird", None),
    "RewindPoint": ("keras_signflip.rewind", None),
    "with_gradient_noise": ("keras_signflip.noise", None),
    "PruneSignFlip": ("keras_signflip.wrapper", None),
    "link_global": ("keras_signflip.prune", None),
    "prune_scope": ("keras_signflip.prune", None),
}
_SUBMODULES = ("schedules", "selection", "keras3", "paths", "lottery", "rewind",
               "reinit", "early_bird", "export", "data", "models")


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"keras_signflip.{name}")
  if name not in _LAZY:
    raise AttributeError(f"module 'keras_signflip' has no attribute {name!r}")
  module, fallback = _LAZY[name]
  try:
    value = getattr(importlib.import_module(module), name)
  except ImportError:
    if fallback is None:
      raise
    value = getattr(importlib.import_module(fallback), name)
  globals()[name] = value
  return value


__all__ = ["criteria", "schedules", "selection", "keras3", "prune_sign_flip",
           "strip_pruning", "prune_scope", "flip_counts", "masks", "set_reference",
           "link_global", "collect_wrappers", "flip_states", "UpdatePruningStep",
           "SignFlipSummaries", "sparsity_report", "with_gradient_noise", "PruneSignFlip",
           "EarlyBird", "RewindPoint"]
