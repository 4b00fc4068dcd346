"""`PruneSignFlip` for Keras 3: any backend, state in Keras variables.

The wrapper owns the pruning state of its layer's prunable weights (see
`state`) and, in a training call:

    w_eff      = w * mask                     # what the layer computes with
    flips     += prev_sign * sign(w_eff) < 0  # the previous step's flips
    prev_sign  = sign(w_eff)
    pruning_step += 1

The layer runs through `Layer.stateless_call` with `w_eff` in place of `w`,
so gradients reach `w` multiplied by the mask (pruned weights get exactly
zero) on TensorFlow, JAX and PyTorch alike. Masks change only at mask
updates, which `keras_signflip.keras3.UpdatePruningStep` runs on the host
between steps (`mask_update`); that is also where pruned weights and their
optimizer slots are zeroed, so they stay zero at every step.
"""
import inspect

from keras_signflip import arguments
from keras_signflip import criteria as criteria_lib
from keras_signflip import wrapper_config
from keras_signflip.keras3 import gradient_noise
from keras_signflip.keras3 import schedules as schedules_lib
from keras_signflip.keras3 import state as state_lib
from keras_signflip.keras3._framework import keras, ops

__all__ = ["PruneSignFlip", "prunable_weights", "supports", "SCOPES"]

SCOPES = arguments.SCOPES

MISSING_CALLBACK = (
    "training a pruned model needs the keras_signflip.UpdatePruningStep() callback, which "
    "updates the masks: model.fit(..., callbacks=[ksf.UpdatePruningStep()]) with `import "
    "keras_signflip as ksf`. Without it the model would train unpruned. In a custom loop, "
    "call keras_signflip.Pruner(model, optimizer).begin() first (docs/custom_loops.md).")

# Layer class -> attributes holding its prunable weights (TF-MOT's registry,
# for Keras 3's layers). Order matters: subclasses before their bases.
_PRUNABLE = (
    ("SeparableConv1D", ("depthwise_kernel", "pointwise_kernel")),
    ("SeparableConv2D", ("depthwise_kernel", "pointwise_kernel")),
    ("DepthwiseConv1D", ("kernel",)),  # Keras 3 names the depthwise kernel `kernel`
    ("DepthwiseConv2D", ("kernel",)),
    ("Conv1DTranspose", ("kernel",)), ("Conv2DTranspose", ("kernel",)),
    ("Conv3DTranspose", ("kernel",)), ("Conv1D", ("kernel",)), ("Conv2D", ("kernel",)),
    ("Conv3D", ("kernel",)), ("Dense", ("kernel",)), ("EinsumDense", ("kernel",)),
    ("Embedding", ("embeddings",)),
    # Recurrent cells: the input and recurrent kernels, which the cell reads at every
    # time step (the wrapper runs the whole layer on the masked values).
    ("LSTMCell", ("kernel", "recurrent_kernel")), ("GRUCell", ("kernel", "recurrent_kernel")),
    ("SimpleRNNCell", ("kernel", "recurrent_kernel")),
)

# Layers that run other layers -> those layers; their prunable weights are pruned.
_CONTAINERS = (
    ("Bidirectional", lambda l: [l.forward_layer, l.backward_layer]),
    ("TimeDistributed", lambda l: [l.layer]),
    ("StackedRNNCells", lambda l: list(l.cells)),
    ("RNN", lambda l: [l.cell]),  # LSTM, GRU, SimpleRNN and RNN(cell)
    ("MultiHeadAttention", lambda l: [l._query_dense, l._key_dense,  # pylint: disable=protected-access
                                      l._value_dense, l._output_dense]),  # pylint: disable=protected-access
)


def _known_attrs(layer):
  for class_name, attrs in _PRUNABLE:
    cls = getattr(keras.layers, class_name, None)
    if cls is not None and isinstance(layer, cls):
      return attrs
  return None


def _inner(layer):
  """The layers a container layer runs (None for other layers)."""
  for class_name, inner in _CONTAINERS:
    cls = getattr(keras.layers, class_name, None)
    if cls is not None and isinstance(layer, cls):
      return inner(layer)
  return None


def supports(layer):
  """Whether `layer` can be wrapped (built or not)."""
  if hasattr(layer, "get_prunable_weights") or _known_attrs(layer) is not None:
    return True
  inner = _inner(layer)
  return inner is not None and all(supports(l) for l in inner)


def prunable_weights(layer):
  """The weights of `layer` that pruning masks, or None if it has none known.

  A layer may define `get_prunable_weights()` (TF-MOT's `PrunableLayer`
  protocol); built-in Dense, EinsumDense, Conv*, DepthwiseConv*,
  SeparableConv*, Embedding and recurrent cells are known, and layers that run
  known layers (Bidirectional, TimeDistributed, LSTM/GRU/SimpleRNN/RNN,
  MultiHeadAttention) prune theirs.
  """
  if hasattr(layer, "get_prunable_weights"):
    return list(layer.get_prunable_weights())
  attrs = _known_attrs(layer)
  if attrs is None:
    inner = _inner(layer)
    if inner is None or not all(supports(l) for l in inner):
      return None
    return [w for l in inner for w in prunable_weights(l)]
  weights = [getattr(layer, "_" + a) if hasattr(layer, "_" + a) else getattr(layer, a)
             for a in attrs]
  if not all(isinstance(w, keras.Variable) for w in weights):
    raise ValueError(f"Layer {layer.name} has a non-variable {attrs} (LoRA or "
                     "quantization enabled?); prune it before enabling those.")
  return weights


def _own_names(layer, weights):
  """"<layer name>/<weight name>" of each weight, repeats told apart
  (`criteria.distinct_names`), so `Random` scores each tensor apart."""
  return criteria_lib.distinct_names([f"{layer.name}/{w.name}" for w in weights])


@keras.saving.register_keras_serializable(package="keras_signflip")
class PruneSignFlip(keras.layers.Wrapper):
  """Prunes a Keras 3 layer's weights by a criterion, counting sign flips.

  Args:
    layer: a Keras 3 layer with known prunable weights (see `prunable_weights`).
    pruning_schedule: a `keras_signflip.keras3.schedules` schedule (TF-MOT's
      convert). Defaults to `ConstantSparsity(0.5, 0)`.
    criterion: a `keras_signflip.criteria.Criterion` or its name. Defaults to
      "hybrid" (FlipOut's |w|^2 / (flips + 1)).
    scope: "layer" or "global" (one ranking over all global wrappers of the model).
    min_flips: None, or the flip count (>= 1) at which an unpruned weight is pruned.
    position: this wrapper's index in its model (kept for files of 0.2;
      `Random` is keyed by the weight's name, `criteria.tensor_key`).
    keep_reference: keep the reference weights (4 bytes per weight). None:
      only when the criterion reads them; files written before this option
      load with True, as they hold them.
  """

  def __init__(self, layer, pruning_schedule=None, criterion="hybrid",
               scope="layer", min_flips=None, position=0, keep_reference=None,
               score_normalization=None, **kwargs):
    if not isinstance(layer, keras.layers.Layer):
      raise ValueError("PruneSignFlip wraps a Keras 3 layer; received "
                       f"{type(layer).__name__}.")
    if not supports(layer):
      raise ValueError(
          f"Layer {layer.name} ({type(layer).__name__}) cannot be pruned: it has "
          "no known prunable weights. Give it a `get_prunable_weights()` method "
          "returning its prunable variables, or leave it unwrapped.")
    self.pruning_schedule = schedules_lib.get(pruning_schedule)
    self.criterion = arguments.check(criteria_lib.get(criterion), scope, min_flips)
    self.scope, self.min_flips, self.position = scope, min_flips, int(position)
    keep_reference = arguments.check_optional_bool("keep_reference", keep_reference)
    if keep_reference is None:
      keep_reference = self.criterion.uses_reference
    elif not keep_reference and self.criterion.uses_reference:
      raise ValueError(f"{type(self.criterion).__name__} reads the reference weights; "
                       "keep_reference=False cannot serve it.")
    self.keep_reference = bool(keep_reference)
    self.score_normalization = arguments.check_normalization(score_normalization, scope)
    kwargs.setdefault("name", f"prune_sign_flip_{layer.name}")
    kwargs.setdefault("dtype", layer.dtype_policy)
    super().__init__(layer, **kwargs)
    self.flip_states = []
    self._call_takes_training = "training" in inspect.signature(layer.call).parameters
    # Set by UpdatePruningStep between its on_train_begin and on_train_end:
    # masks change only in that callback, so a training call without it
    # would train the model unpruned (see `call`).
    self.pruning_callback_active = False

  def build(self, input_shape=None):
    super().build(input_shape)
    self.pruning_step = self.add_weight(
        name="pruning_step", shape=(), dtype="int32", trainable=False,
        initializer=keras.initializers.Constant(-1))
    self.flip_states = []
    weights = prunable_weights(self.layer)
    for w, key in zip(weights, _own_names(self.layer, weights)):
      base = w.name
      gradient_noise.mark_prunable(w)  # where with_gradient_noise puts its noise
      if self.criterion.uses_gradients:  # sum of w * g, kept by the optimizer
        gradient_noise.request_gradients(w)

      def copy(dtype_out, w=w, sign=False):
        def init(shape, dtype=None):
          value = state_lib.float32_copy(w)
          return ops.cast(ops.sign(value), dtype_out) if sign else value
        return init

      def var(suffix, shape, dtype, initializer):
        return self.add_weight(name=f"{base}_{suffix}", shape=shape, dtype=dtype,
                               initializer=initializer, trainable=False,
                               aggregation="only_first_replica")

      self.flip_states.append(state_lib.PruningState(
          weight=w,
          mask=var("mask", w.shape, "int8", "ones"),
          threshold=var("threshold", (), "float32", "zeros"),
          prev_sign=var("prev_sign", w.shape, "int8", copy("int8", sign=True)),
          flips=var("flips", w.shape, "int32", "zeros"),
          reference=(var("reference", w.shape, "float32", copy("float32"))
                     if self.keep_reference else None),
          key=criteria_lib.tensor_key(key),
          flips_at_update=(var("flips_at_update", w.shape, "int32", "zeros")
                           if self.criterion.uses_window else None)))
    self.built = True

  def call(self, inputs, *args, training=None, **kwargs):  # *args: MultiHeadAttention's value
    if training is True and not self.pruning_callback_active:
      # A Python check: it runs when the train step is traced (JAX,
      # TensorFlow) or run (PyTorch), before the first step changes anything.
      # (Models made by prune_sign_flip refuse such a `fit` earlier, in
      # on_train_begin: see prune._check_fit.)
      raise ValueError(f"{self.name}: {MISSING_CALLBACK}")
    masked = {}
    for s in self.flip_states:
      weight = ops.convert_to_tensor(s.weight)
      value = ops.multiply(weight, ops.cast(s.mask, weight.dtype))
      if training:
        state_lib.count(s, value)
      masked[id(s.weight)] = value
    layer = self.layer
    trainable = [masked.get(id(v), v) for v in layer.trainable_variables]
    non_trainable = [masked.get(id(v), v) for v in layer.non_trainable_variables]
    trainable = [ops.convert_to_tensor(v) for v in trainable]
    non_trainable = [ops.convert_to_tensor(v) for v in non_trainable]
    if self._call_takes_training:
      kwargs["training"] = training
    outputs, updated = layer.stateless_call(trainable, non_trainable, inputs, *args, **kwargs)
    for v, new in zip(layer.non_trainable_variables, updated):
      if id(v) not in masked and new is not None:
        v.assign(new)
    if training:
      self.pruning_step.assign(ops.add(self.pruning_step, 1))
    if layer.activity_regularizer is not None:
      self.add_loss(layer.activity_regularizer(outputs))
    return outputs

  def compute_output_shape(self, *args, **kwargs):
    return self.layer.compute_output_shape(*args, **kwargs)

  def compute_output_spec(self, *args, **kwargs):
    kwargs.pop("training", None)
    return self.layer.compute_output_spec(*args, **kwargs)

  def get_config(self):
    return dict(super().get_config(), pruning_schedule=self.pruning_schedule.get_config(),
                **wrapper_config.config_of(self))

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = wrapper_config.arguments_of(config)
    layer = keras.saving.deserialize_keras_object(config.pop("layer"),
                                                  custom_objects=custom_objects)
    return cls(layer, **config)
