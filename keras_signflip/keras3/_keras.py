"""The one place the Keras 3 path imports Keras, with one clear line on failure."""
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

__all__ = ["keras", "ops", "INSTALL", "MIN_KERAS"]
