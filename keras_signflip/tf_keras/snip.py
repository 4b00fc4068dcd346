"""SNIP (Lee et al. 2019) for tf_keras models: `keras_signflip.connection_sensitivity`'s,
shared with the Keras 3 family and re-exported here under its old name."""
from keras_signflip.connection_sensitivity import sensitivities, snip

__all__ = ["snip", "sensitivities"]
