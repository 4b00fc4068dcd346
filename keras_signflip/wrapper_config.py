"""What both families' `PruneSignFlip` wrappers add to Keras' config, and how it reads back.

The keys are those of keras_signflip 0.3 (files written since load as they
were); a file of 0.3.0 or before has no `keep_reference`, and its wrappers
held the reference weights, so it loads with True.
"""
from keras_signflip import criteria

__all__ = ["KEYS", "config_of", "arguments_of"]

KEYS = ("scope", "min_flips", "position", "keep_reference", "score_normalization")


def config_of(wrapper):
  """{"criterion": its serialised form, and each of `KEYS`} of a wrapper."""
  return {"criterion": criteria.serialize(wrapper.criterion),
          **{key: getattr(wrapper, key) for key in KEYS}}


def arguments_of(config):
  """A copy of a wrapper's config with its criterion rebuilt and the defaults of
  older files filled in: the wrapper's constructor arguments (and the layer's)."""
  config = dict(config)
  config["criterion"] = criteria.get(config["criterion"])
  config.setdefault("keep_reference", True)  # files of 0.3.0 and before hold it
  return config
