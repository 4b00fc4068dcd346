"""The one place the tf_keras family imports TensorFlow, tf_keras and TF-MOT.

TF-MOT 0.8 works only with Keras 2 (`tf_keras`, of TensorFlow's minor
version). Importing TF-MOT sets `os.environ["TF_USE_LEGACY_KERAS"] = "1"`
(TF-MOT's own code), which makes `tf.keras` mean tf_keras if `tf.keras` has
not been used yet in the process; keras_signflip adds no effect of its own.
When tf_keras is missing or does not match TensorFlow, the import fails here
with one line that names the fix.
"""
import functools

import tensorflow as tf

_TF_MINOR = ".".join(tf.__version__.split(".")[:2])
try:
  import tf_keras as keras  # noqa: E402
except ImportError as e:
  raise ImportError(
      "keras_signflip's tf_keras family (TF-MOT) needs Keras 2, which is not "
      f"importable ({e}); TensorFlow {tf.__version__} is, and its tf.keras is Keras 3, which "
      f"TF-MOT cannot use. Install it with: pip install 'tf-keras=={_TF_MINOR}.*' "
      "-- or give keras_signflip Keras 3 models (keras_signflip.keras3).") from None

if ".".join(keras.__version__.split(".")[:2]) != _TF_MINOR:
  raise ImportError(
      f"keras_signflip's tf_keras family (TF-MOT) needs tf_keras of TensorFlow's minor "
      f"version: TensorFlow is {tf.__version__}, tf_keras {keras.__version__}. Install "
      f"the matching one with: pip install 'tf-keras=={_TF_MINOR}.*'")

import tensorflow_model_optimization as tfmot  # noqa: E402
# TF-MOT's wrapper, registry and pruning internals are not public API; setup.py
# pins TF-MOT to 0.8.x and tests/tf_keras/test_tfmot_compat.py checks they still exist.
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper  # noqa: E402

# Whether tf.saved_model.save is tracing: TensorFlow's private flag, the one
# tf_keras' own saving reads (no public equivalent exists).
from tensorflow.python.saved_model.save_context import in_save_context  # noqa: E402  pylint: disable=g-direct-tensorflow-import

from keras_signflip import array_namespace  # noqa: E402

PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude
PruneRegistry = prune_registry.PruneRegistry


# The core's formulas (`keras_signflip.array_namespace`) on TensorFlow's own ops.
xp = array_namespace.namespace(
    "tensorflow",
    abs=tf.abs, cast=tf.cast, clip=tf.clip_by_value, convert_to_tensor=tf.convert_to_tensor,
    exp=tf.exp, floor_divide=tf.math.floordiv, greater=tf.math.greater,
    greater_equal=tf.math.greater_equal, less=tf.math.less, log=tf.math.log,
    log1p=tf.math.log1p, logical_and=tf.math.logical_and, logical_not=tf.math.logical_not,
    maximum=tf.math.maximum, minimum=tf.math.minimum, power=tf.math.pow,
    reshape=tf.reshape, round=tf.math.round, sigmoid=tf.sigmoid,
    sort=lambda x, axis=-1: tf.sort(x, axis=axis), sqrt=tf.sqrt, square=tf.square,
    sum=lambda x, axis=None: tf.reduce_sum(x, axis), where=tf.where,
    zeros=lambda shape, dtype="float32": tf.zeros(shape, dtype), zeros_like=tf.zeros_like)


def xla_available():
  """Whether this TensorFlow compiles with XLA here: not on Apple silicon nor
  with pluggable devices such as tensorflow-metal (tf_keras' own check, the
  one its optimizers make before they use XLA)."""
  from tf_keras.src.utils import tf_utils  # pylint: disable=g-import-not-at-top
  return bool(tf_utils.can_jit_compile())


def fused(fn):
  """`fn` as a tf.function compiled by XLA, which fuses its element-wise ops
  into one pass over memory; a plain tf.function where `xla_available()` is
  False (decided at the first call). One trace serves every shape."""
  function = []

  @functools.wraps(fn)
  def call(*args, **kwargs):
    if not function:
      call.jit_compile = xla_available()
      function.append(tf.function(fn, jit_compile=call.jit_compile, reduce_retracing=True))
    return function[0](*args, **kwargs)
  call.jit_compile = None  # not decided yet
  return call


__all__ = ["tf", "keras", "tfmot", "PruneLowMagnitude", "PruneRegistry", "in_save_context",
           "xla_available", "fused", "xp"]
