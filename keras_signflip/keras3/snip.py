"""SNIP (Lee et al. 2019) for Keras 3 models: `keras_signflip.connection_sensitivity`'s,
shared with the tf_keras family and re-exported here under its old name."""
from keras_signflip.connection_sensitivity import sensitivities, snip

__all__ = ["snip", "sensitivities"]
