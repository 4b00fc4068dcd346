"""The one place that chooses Keras 2 (`tf_keras`) for the TF-MOT path.

TF-MOT 0.8 works only with Keras 2; with TF >= 2.16 `tf.keras` is Keras 3
unless `TF_USE_LEGACY_KERAS=1` is set before TensorFlow is imported.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
# TF-MOT's wrapper, registry and pruning internals are not public API; setup.py
# pins TF-MOT to 0.8.x and tests/test_tfmot_compat.py checks they still exist.
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper  # noqa: E402

PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude
PruneRegistry = prune_registry.PruneRegistry

from keras_signflip.detect import is_keras3_object  # noqa: E402,F401

__all__ = ["tf", "keras", "tfmot", "is_keras3_object", "PruneLowMagnitude",
           "PruneRegistry"]
