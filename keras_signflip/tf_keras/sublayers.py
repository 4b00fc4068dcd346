"""The layers a subclassed tf_keras model or a custom block holds, replaced in place.

tf_keras clones only Sequential and Functional models: a subclassed model's `call`
is Python code that reads its layers from its attributes when it runs. So
`prune_sign_flip` replaces, in the model itself, each layer it holds in an
attribute, a list or a dict by that layer's wrapper, and `call` then runs the
wrappers; a block (a layer that is not prunable but holds layers) is walked the
same way. Keras' tracking stays whole: an attribute is set through Keras (so a
checkpoint names the wrapper where it named the layer) and the wrapper takes the
layer's place among the tracked sublayers (so `model.weights` keep their order); a
list or dict item is replaced through the container's own item assignment. A layer
held anywhere else (a tuple, a nested list) cannot be replaced and is refused by
name. `.h5`/SavedModel files of a subclassed model rebuild it without its Python
class: save and resume its weights instead (`save_weights`, then `load_weights`
into a model made and wrapped the same way).
"""
from keras_signflip.tf_keras._framework import keras

__all__ = ["containers", "replace", "own_weights"]


def _tracked(layer):
  """The layers and containers Keras tracks on `layer`, in order (a plain list)."""
  return layer._self_tracked_trackables  # pylint: disable=protected-access


def _is(value, items):
  return any(value is item for item in items)


def containers(layer):
  """[(container, key, sublayer)] for each layer `layer` holds in an attribute, a
  list or a dict, in Keras' tracking order.

  Raises:
    ValueError: `layer` tracks a layer held some other way (a tuple, a nested
      list), which could not be replaced by its wrapper.
  """
  names = {}
  for name, value in vars(layer).items():
    names.setdefault(id(value), []).append(name)
  found = []
  for value in _tracked(layer):
    if isinstance(value, keras.layers.Layer):
      found.extend((layer, name, value) for name in names.get(id(value), []))
    elif isinstance(value, (list, dict)) and not isinstance(value, tuple):
      items = value.items() if isinstance(value, dict) else enumerate(value)
      found.extend((value, key, item) for key, item in list(items)
                   if isinstance(item, keras.layers.Layer))
  held = [sub for _, _, sub in found]
  hidden = [sub.name for sub in layer._flatten_layers(include_self=False, recursive=False)  # pylint: disable=protected-access
            if not _is(sub, held)]
  if hidden:
    raise ValueError(
        f"{type(layer).__name__} {layer.name!r} holds layers {hidden} in a way "
        "prune_sign_flip cannot replace with their wrappers (a tuple, or a list inside "
        "a list or dict). Hold each layer in an attribute, a list or a dict.")
  return found


def replace(layer, new_of):
  """Puts `new_of(sub)` in place of each sublayer `sub` that `layer` holds (when it
  differs); returns [(old, new)] of what changed. Nothing changes unless every
  sublayer is held where it can be replaced (`containers` checks first)."""
  found = containers(layer)
  news = {}
  for _, _, old in found:
    if id(old) not in news:
      news[id(old)] = new_of(old)
  changed = []
  for container, key, old in found:
    new = news[id(old)]
    if new is old:
      continue
    if container is layer:
      _set_attribute(layer, key, old, new)
    else:
      container[key] = new
      # TensorFlow marks a list whose item was replaced as unsaveable, since it
      # restores lists by appending; the item keeps its index here, so a model
      # made and wrapped the same way restores it in place.
      if hasattr(container, "_non_append_mutation"):
        container._non_append_mutation = False  # pylint: disable=protected-access
    changed.append((old, new))
  return changed


def _set_attribute(layer, name, old, new):
  """`layer.name = new` through Keras (its checkpoint dependency follows), with
  `new` where `old` stood in the tracked sublayers rather than appended last."""
  tracked = _tracked(layer)
  position = next(i for i, t in enumerate(tracked) if t is old)
  setattr(layer, name, new)
  tracked = _tracked(layer)
  rest = [t for t in tracked if t is not new]
  rest.insert(min(position, len(rest)), new)
  tracked[:] = rest


def own_weights(layer):
  """The variables `layer` created itself (`self.add_weight` in a model or block),
  which no wrapper can prune."""
  return list(layer._trainable_weights) + list(layer._non_trainable_weights)  # pylint: disable=protected-access
