"""The one place the Keras 3 family imports Keras, with one clear line on failure."""
import sys

MIN_KERAS = (3, 5)
INSTALL = ("keras_signflip: Keras 3 models need Keras >= 3.5 and its backend; "
           "install them with: pip install 'keras_signflip[keras3]' "
           "(plus jax or torch for those backends)")


def _version(text):
  return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


try:
  import keras  # noqa: F401
  _FOUND = getattr(keras, "__version__", "0")
except ImportError as e:  # keras itself, or the backend it was told to use
  raise ImportError(f"{INSTALL} ({type(e).__name__}: {e})") from None
if _version(_FOUND) < MIN_KERAS:
  raise ImportError(f"{INSTALL} (found keras {_FOUND})")

from keras import ops  # noqa: E402

__all__ = ["keras", "ops", "INSTALL", "MIN_KERAS", "compiled"]


def compiled(fn):
  """`fn`, a pure function of tensors, compiled by the backend: `jax.jit` on
  JAX, `tf.function` on TensorFlow, as it is on PyTorch.

  Keras 3 has no public compile for a function outside a model, so this picks
  the backend's own. Why: a mask update is a few dozen small ops per tensor,
  run eagerly between steps, and JAX's eager dispatch costs more per op than
  such an op computes; compiled they are one call. PyTorch's eager ops
  dispatch cheaply, and `torch.compile` would add a long first-call compile.
  """
  backend = keras.backend.backend()
  if backend == "jax":
    return sys.modules["jax"].jit(fn)  # the backend itself, imported by Keras
  if backend == "tensorflow":
    # One function per tuple of ranks: reduce_retracing relaxes differing ranks
    # to an unknown shape, on which Keras' ops cannot broadcast (a model with
    # kernels of ranks 2 to 5, e.g. Dense, Conv1D, Conv3D).
    tf, by_ranks = sys.modules["tensorflow"], {}

    def call(*args):
      ranks = tuple(len(getattr(a, "shape", ())) for a in tf.nest.flatten(args))
      if ranks not in by_ranks:
        by_ranks[ranks] = tf.function(fn, reduce_retracing=True, autograph=False)
      return by_ranks[ranks](*args)
    return call
  return fn
