"""Which weights of a tf_keras layer are pruned: TF-MOT's PruneRegistry, and the layers it misses.

TF-MOT's registry (exact classes only) prunes Dense, Conv1D/2D/3D(Transpose), Embedding,
LSTM/GRU/SimpleRNN (kernel and recurrent kernel of each cell) and MultiHeadAttention's four
projections, but refuses Bidirectional, TimeDistributed and EinsumDense, prunes nothing of
DepthwiseConv2D and only the pointwise kernel of SeparableConv. Here, as in the Keras 3
family (`keras3/wrapper.py`):

| layer | pruned |
|---|---|
| EinsumDense | kernel |
| DepthwiseConv1D/2D | depthwise_kernel |
| SeparableConv1D/2D | depthwise_kernel, pointwise_kernel |
| Bidirectional | its forward and backward layers' |
| TimeDistributed | its inner layer's |

A layer with `get_prunable_weights` (TF-MOT's `PrunableLayer`) decides for itself. The
wrapper masks the variables themselves (TF-MOT's `weight_mask_op`, and the after-step
constraint), so a recurrent cell reads the masked kernel at every time step.
"""
from keras_signflip.tf_keras._framework import PruneRegistry, keras, tfmot

__all__ = ["supports", "prunable_weights", "make_prunable"]

# Layer class name -> attributes holding its prunable weights; subclasses before bases.
_OWN = (
    ("SeparableConv1D", ("depthwise_kernel", "pointwise_kernel")),
    ("SeparableConv2D", ("depthwise_kernel", "pointwise_kernel")),
    ("DepthwiseConv1D", ("depthwise_kernel",)),
    ("DepthwiseConv2D", ("depthwise_kernel",)),
    ("EinsumDense", ("kernel",)),
)


def _own_attrs(layer):
  for class_name, attrs in _OWN:
    cls = getattr(keras.layers, class_name, None)
    if cls is not None and type(layer) is cls:  # pylint: disable=unidiomatic-typecheck
      return attrs
  return None


def _inner(layer):
  """The layers a container layer runs, or None for any other layer."""
  if type(layer) is keras.layers.Bidirectional:  # pylint: disable=unidiomatic-typecheck
    return [layer.forward_layer, layer.backward_layer]
  if type(layer) is keras.layers.TimeDistributed:  # pylint: disable=unidiomatic-typecheck
    return [layer.layer]
  return None


def _declares(layer):
  return (isinstance(layer, tfmot.sparsity.keras.PrunableLayer)
          or hasattr(layer, "get_prunable_weights"))


def supports(layer):
  """Whether `layer` can be wrapped: it declares its prunable weights, the registry
  or the table above knows it, or it holds only layers that can be."""
  if _declares(layer) or _own_attrs(layer) is not None or PruneRegistry.supports(layer):
    return True
  inner = _inner(layer)
  return inner is not None and all(supports(l) for l in inner)


def _table_weights(layer):
  """The weights the table above gives `layer`, or None if it is not in it."""
  attrs = _own_attrs(layer)
  if attrs is not None:
    return [getattr(layer, a) for a in attrs]
  inner = _inner(layer)
  return None if inner is None else [w for l in inner for w in prunable_weights(l)]


def prunable_weights(layer):
  """The weights of built `layer` that pruning masks (its kernels first)."""
  if _declares(layer):
    return list(layer.get_prunable_weights())
  weights = _table_weights(layer)
  if weights is not None:
    return weights
  return list(PruneRegistry.make_prunable(layer).get_prunable_weights())


def make_prunable(layer):
  """`layer`, given a `get_prunable_weights` method when only this module knows it
  (as TF-MOT's `PruneRegistry.make_prunable` does for its own layers), so TF-MOT's
  wrapper accepts it. Raises the error that names the way out for any other layer."""
  if not supports(layer):
    raise ValueError(
        f"Layer {layer.name} ({type(layer).__name__}) cannot be pruned: it is not in "
        "TF-MOT's PruneRegistry nor keras_signflip's additions (see "
        "keras_signflip.tf_keras.layer_support) and has no `get_prunable_weights`. "
        "Implement tfmot.sparsity.keras.PrunableLayer, or exclude it with a "
        "`pruning_policy` (or wrap only the other layers).")
  if not _declares(layer) and (_own_attrs(layer) is not None or not PruneRegistry.supports(layer)):
    layer.get_prunable_weights = lambda: _table_weights(layer)
  return layer
