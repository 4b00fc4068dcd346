"""The layers a subclassed model or a custom block holds, replaced in place.

Keras clones only Sequential and Functional models: a subclassed model's `call` is
Python code that reads its layers from its attributes when it runs. So
`prune_sign_flip` replaces, in the model itself, each layer it holds in an
attribute, a list or a dict by that layer's wrapper, and `call` then runs the
wrappers; a block (a layer that is not prunable but holds layers) is walked the same
way. Keras' own list of sublayers (`_layers`) gets the new layer in the old one's
place, so the order of `model.weights` is kept. `.keras` files of a subclassed model
rebuild it from its config, without wrappers: save and resume its weights instead
(`save_weights`, then `load_weights` into a model made and wrapped the same way).
"""
from keras_signflip.keras3._framework import keras

__all__ = ["replace", "own_weights"]

# Keras' own bookkeeping, never a user's layers.
_KERAS_ATTRS = frozenset({"_layers", "_tracked", "_inbound_nodes", "_outbound_nodes",
                          "_metrics", "_seed_generators", "_losses", "_losses_override",
                          "_trainable_variables", "_non_trainable_variables"})


def _containers(layer):
  """(container, key, sublayer) for each layer `layer` holds in an attribute, list or dict."""
  for name, value in list(vars(layer).items()):
    if name in _KERAS_ATTRS or name.startswith("_self_"):
      continue
    if isinstance(value, keras.layers.Layer):
      yield layer, name, value
    elif isinstance(value, (list, dict)):
      items = value.items() if isinstance(value, dict) else enumerate(value)
      for key, item in list(items):
        if isinstance(item, keras.layers.Layer):
          yield value, key, item


def replace(layer, new_of):
  """Puts `new_of(sub)` in place of each sublayer `sub` that `layer` holds (when it
  differs); returns [(old, new)] of what changed."""
  changed = []
  for container, key, old in list(_containers(layer)):
    new = new_of(old)
    if new is old:
      continue
    if container is layer:
      object.__setattr__(layer, key, new)  # not Keras' tracking: _layers keeps its order
    else:  # the plain list's or dict's own item assignment: no tracking either
      (dict if isinstance(container, dict) else list).__setitem__(container, key, new)
    tracked = layer._layers  # pylint: disable=protected-access
    for i, l in enumerate(tracked):
      if l is old:
        tracked[i] = new
    changed.append((old, new))
  return changed


def own_weights(layer):
  """The variables `layer` created itself (`self.add_weight` in a model or block),
  which no wrapper can prune."""
  return list(layer._trainable_variables) + list(layer._non_trainable_variables)  # pylint: disable=protected-access
