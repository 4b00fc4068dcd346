"""`shrink(model)`: a physically smaller plain model, its pruned units removed.

Structured pruning (`keras_signflip.units`) zeroes whole kernel columns; the
layers keep their shapes, so the masked model is no faster. `shrink` removes
every unit whose kernel column is all zero (Dense output columns, conv filters)
together with what reads it: the consumer's input rows (Dense after Dense,
conv after conv, the Dense rows of a dropped channel at every position after
Flatten, in (h, w, c) order) and BatchNormalization's per-channel weights.

A removed unit's output is the constant c = act(bias) (bias and activation of
the producer, then any BatchNormalization or activation on the way). Removing
it is exact only when its effect on the consumer is a constant too, so:

    Dense consumer:        bias += sum over removed rows r of c_r * kernel[r, :]
    conv, padding 'valid': bias += sum over removed channels r of c_r * sum of
                           kernel[..., r, :] over the window (every output sees it)
    anything else:         the unit is removed only where c == 0 (e.g. a conv with
                           'same' padding, whose borders see fewer taps); else kept
    the model's output:    never removed (the output shape stays)

so the shrunk model's predictions equal the masked model's (up to float
rounding). Scope: Sequential or Functional models that are a linear chain of
Dense, Conv1D/2D/3D (channels_last), BatchNormalization, elementwise activations,
pooling, dropout and Flatten; anything else is refused with the layer's name,
before anything is built. Both families (`families.of`).

    small = ksf.shrink(pruned_model)   # or of ksf.strip_pruning(pruned_model)
"""
import numpy as np

from keras_signflip import families

__all__ = ["shrink", "PRODUCERS", "PASS_THROUGH"]

PRODUCERS = ("Dense", "Conv1D", "Conv2D", "Conv3D")
_ELEMENTWISE = ("Activation", "ReLU", "LeakyReLU", "ELU", "BatchNormalization")
_IDENTITY_ON_CONSTANTS = (  # a per-channel constant input gives the same constant output
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
    "GaussianNoise", "AlphaDropout", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D")
# Average pooling with 'same' padding: whether the border average counts the zero
# padding differs across backends, so a nonzero constant is kept there.
_AVERAGE = ("AveragePooling1D", "AveragePooling2D", "AveragePooling3D")
PASS_THROUGH = _ELEMENTWISE + _IDENTITY_ON_CONSTANTS + _AVERAGE + ("Flatten",)
_NOT_ELEMENTWISE = ("softmax", "log_softmax")


def _as_tuple(shape):
  shape = shape.as_list() if hasattr(shape, "as_list") else shape
  return tuple(shape)


def _chain(model, keras):
  """The layers of a linear-chain model, InputLayer excluded, or a ValueError."""
  if not isinstance(model, keras.Model):
    raise ValueError(f"shrink takes a Sequential or Functional model; received "
                     f"{type(model).__name__}.")
  if not model.built or not getattr(model, "inputs", None):
    raise ValueError(f"shrink needs a built model with a known input shape; {model.name} "
                     "has none: give it a keras.Input (or call `model.build(...)`) first.")
  if len(model.inputs) != 1 or len(model.outputs) != 1:
    raise ValueError(f"shrink supports models with one input and one output; {model.name} has "
                     f"{len(model.inputs)} inputs and {len(model.outputs)} outputs.")
  layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
  for layer in layers:
    kind = type(layer).__name__
    if kind not in PRODUCERS + PASS_THROUGH:
      raise ValueError(
          f"Layer {layer.name} ({kind}) is not supported by shrink, which handles linear "
          f"chains of {list(PRODUCERS)} and {sorted(PASS_THROUGH)}. Strip the pruning "
          "wrappers first (strip_pruning) and keep such layers out of the model you shrink.")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
      raise ValueError(f"Layer {layer.name} ({kind}) has data_format="
                       f"{layer.data_format!r}; shrink supports 'channels_last' only.")
    if getattr(layer, "groups", 1) != 1:
      raise ValueError(f"Layer {layer.name} ({kind}) is a grouped convolution (groups="
                       f"{layer.groups}); shrink supports groups=1 only.")
    if kind == "Activation" and _activation_name(layer) in _NOT_ELEMENTWISE:
      raise ValueError(f"Layer {layer.name} ({kind}) mixes channels ({_activation_name(layer)})"
                       "; shrink supports it as the activation of the output layer only.")
    if kind == "BatchNormalization":
      axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
      if len(axis) != 1 or axis[0] not in (-1, len(_as_tuple(layer.input.shape)) - 1):
        raise ValueError(f"Layer {layer.name} (BatchNormalization) normalises axis "
                         f"{layer.axis}; shrink supports the channel (last) axis only.")
  if not isinstance(model, keras.Sequential):
    tensor = model.inputs[0]
    for layer in layers:
      if len(getattr(layer, "_inbound_nodes", [])) != 1 or layer.input is not tensor:
        raise ValueError(f"Layer {layer.name} ({type(layer).__name__}) is not fed by the "
                         "layer before it (or is called more than once): shrink supports "
                         "linear chains only.")
      tensor = layer.output
    if tensor is not model.outputs[0]:
      raise ValueError(f"{model.name}'s output is not its last layer's: shrink supports "
                       "linear chains only.")
  return layers


def _activation_name(layer):
  activation = getattr(layer, "activation", None)
  return getattr(activation, "__name__", str(activation))


def _numpy(x, family):
  """float32 NumPy of a tensor (tf_keras' linear activation returns its NumPy input)."""
  return np.asarray(x if isinstance(x, np.ndarray) else family.to_numpy(x), np.float32)


def _producer_constants(layer, kernel, bias, family):
  """(dead units: bool (units,), their constant outputs act(bias))."""
  units = kernel.shape[-1]
  dead = ~np.any(kernel.reshape(-1, units) != 0, axis=0)
  if _activation_name(layer) in _NOT_ELEMENTWISE:  # a dead unit's softmax output is not constant
    return np.zeros(units, bool), np.zeros(units, np.float32)
  before = np.zeros(units, np.float32) if bias is None else bias.astype(np.float32)
  after = _numpy(layer.activation(before[None]), family)[0]
  return dead, after


def _through(layer, const, shape, family):
  """The per-channel constants after `layer` (an elementwise layer), inference mode."""
  x = const.reshape((1,) * (len(shape) - 1) + (const.shape[0],))
  return _numpy(layer(x, training=False), family).reshape(-1)


def _plan(layers, input_shape, family):
  """Which units each producer loses and what each layer's input channels carry.

  Returns (tracks, accepted): tracks[i] = (producer index or None, unit of each input
  channel of layer i (-1 for none), constants of those channels); accepted[p] =
  bool (units,): producer p's units that are removed.
  """
  tracks, accepted, shape = [], {}, input_shape
  source, unit_of, const, ok = None, None, None, None

  def close(veto_nonzero):
    """The consumer of `source`'s channels decides; returns nothing."""
    if source is None:
      return
    allowed = ok & ((const == 0) | (not veto_nonzero))
    units = accepted[source]
    for j in np.flatnonzero(units):
      units[j] = bool(np.all(allowed[unit_of == j]))

  for i, layer in enumerate(layers):
    kind = type(layer).__name__
    tracks.append((source, unit_of, const))
    if kind in PRODUCERS:
      use_bias = getattr(layer, "use_bias", True)
      folds = kind == "Dense" or getattr(layer, "padding", "valid") == "valid"
      close(veto_nonzero=not (folds and use_bias))
      weights = layer.get_weights()
      kernel, bias = weights[0], (weights[1] if use_bias else None)
      dead, const = _producer_constants(layer, kernel, bias, family)
      last = i == len(layers) - 1 or all(type(l).__name__ not in PRODUCERS
                                         for l in layers[i + 1:])
      source, unit_of, ok = i, np.arange(kernel.shape[-1]), dead & (not last)
      accepted[i] = ok.copy()
    elif source is not None:
      if kind in _ELEMENTWISE:
        const = _through(layer, const, shape, family)
      elif kind in _AVERAGE and getattr(layer, "padding", "valid") != "valid":
        ok = ok & (const == 0)
      elif kind == "Flatten":
        positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        unit_of, const, ok = (np.tile(unit_of, positions), np.tile(const, positions),
                              np.tile(ok, positions))
    shape = _as_tuple(layer.compute_output_shape(shape))
  close(veto_nonzero=True)  # channels reaching the model's output are never removed
  return tracks, accepted


def _removed_inputs(track, accepted):
  """bool per input channel: removed (its producer unit is)."""
  source, unit_of, _ = track
  if source is None:
    return None
  return accepted[source][unit_of]


def _new_weights(layer, removed_in, const, removed_out):
  """The layer's weights without the removed input channels and output units,
  the removed inputs' constants folded into the bias."""
  weights = layer.get_weights()
  kind = type(layer).__name__
  if kind in PRODUCERS:
    kernel = weights[0]
    out_keep = np.ones(kernel.shape[-1], bool) if removed_out is None else ~removed_out
    rest = weights[1:]
    if removed_in is not None and removed_in.any():
      if rest:  # fold: what the removed constant channels added to every output
        folded = np.tensordot(const[removed_in].astype(np.float64),
                              kernel[..., removed_in, :].astype(np.float64),
                              axes=([0], [kernel.ndim - 2]))
        folded = folded.reshape(-1, kernel.shape[-1]).sum(axis=0)
        rest = [(rest[0].astype(np.float64) + folded).astype(rest[0].dtype)] + rest[1:]
      kernel = kernel[..., ~removed_in, :]
    return [kernel[..., out_keep]] + [b[out_keep] for b in rest]
  if removed_in is not None and weights:  # per-channel weights (BatchNormalization)
    return [w[..., ~removed_in] for w in weights]
  return weights


def _new_layer(layer, units):
  config = layer.get_config()
  kind = type(layer).__name__
  if kind == "Dense":
    config["units"] = int(units)
  elif kind in PRODUCERS:
    config["filters"] = int(units)
  return type(layer).from_config(config)


def shrink(model):
  """A plain model of `model`'s family without its all-zero units (module docstring).

  Args:
    model: a Sequential or Functional model (wrapped for pruning or plain):
      a linear chain of the supported layers.

  Returns:
    A new plain model, Sequential if `model` is, else Functional, with fresh
    weights; `model` is left as it was. Its predictions equal `model`'s masked
    predictions; units that cannot be removed exactly stay.

  Raises:
    ValueError: a layer outside the supported chain (named), a non-linear graph,
      several inputs or outputs; raised before anything is built.
  """
  family = families.of(model)
  keras = family.keras
  if family.collect_wrappers(model):
    model = family.strip_pruning(model)
  layers = _chain(model, keras)
  input_shape = _as_tuple(model.inputs[0].shape)
  tracks, accepted = _plan(layers, input_shape, family)
  new_layers, new_weights = [], []
  for i, layer in enumerate(layers):
    removed_in = _removed_inputs(tracks[i], accepted)
    removed_out = accepted.get(i)
    weights = _new_weights(layer, removed_in, tracks[i][2], removed_out)
    units = None if removed_out is None else int(np.sum(~removed_out))
    new_layers.append(_new_layer(layer, units))
    new_weights.append(weights)
  inputs = keras.Input(input_shape[1:], dtype=model.inputs[0].dtype)
  if isinstance(model, keras.Sequential):
    small = keras.Sequential([inputs] + new_layers, name=model.name)
  else:
    x = inputs
    for layer in new_layers:
      x = layer(x)
    small = keras.Model(inputs, x, name=model.name)
  for layer, weights in zip(new_layers, new_weights):
    layer.set_weights(weights)
  return small
