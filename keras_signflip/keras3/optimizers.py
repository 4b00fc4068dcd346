"""Keras 3 optimizers: their variables for rewinding, and gradient recording.

Criteria that read gradients (`Saliency`, `MovementScore`) rank by

    A = sum over steps t of w_t * g_t        (w before the step, g its gradient)

which only the optimizer sees. `record_gradients(optimizer)` returns a copy
of a Keras 3 optimizer whose `apply` adds w * g to a float32 accumulator per
recorded weight before its usual update. The accumulators are optimizer
variables (made by `add_variable_from_reference`, named `<weight>_grad_product`):
on JAX the train step is pure and only the optimizer's own variables come out
of `stateless_apply`, so a layer variable written there would be lost. They are
saved and restored with the optimizer, and zeroed where pruned with its slots.

Keras 3 optimizers have no gradient-transform hook, hence the subclass; a
saved recording optimizer loads back as one (registered as
"keras_signflip>RecordGradients", the wrapped optimizer's config inside).
"""
from keras_signflip.keras3._keras import keras, ops

__all__ = ["optimizer_variables", "record_gradients", "records_gradients",
           "request_gradients", "grad_product"]

# Set on a weight by its wrapper (None: wanted) and then by the recording
# optimizer's build (its accumulator). Keras variables are not hashable, so
# the link lives on the variable, as Keras' own `constraint` does.
_GRAD_PRODUCT = "_keras_signflip_grad_product"
_REGISTERED_NAME = "RecordGradients"
_RECORDING_CLASSES = {}


def optimizer_variables(optimizer, model, build=False):
  """The Keras 3 optimizer's variables (its step first, then slots), fixed order.

  Args:
    optimizer: a Keras 3 optimizer.
    model: the model it trains.
    build: create the slots for `model.trainable_variables` if the optimizer
      has not been built yet (before its first step).

  Returns:
    A list of variables; empty when unbuilt and `build` is False.
  """
  if not optimizer.built:
    if not build:
      return []
    optimizer.build(model.trainable_variables)
  return list(optimizer.variables)


def request_gradients(weight):
  """Marks `weight` as read by a gradient criterion (a wrapper's build)."""
  if not hasattr(weight, _GRAD_PRODUCT):
    setattr(weight, _GRAD_PRODUCT, None)


def grad_product(weight):
  """The accumulator of sum w * g for `weight`, or None if nothing records it."""
  return getattr(weight, _GRAD_PRODUCT, None)


def _recording_class(base):
  """`base` with an `apply` that first adds w * g to each accumulator."""
  if base in _RECORDING_CLASSES:
    return _RECORDING_CLASSES[base]

  def build(self, variables):
    base.build(self, variables)
    self._grad_products = {}
    for v in variables:
      if hasattr(v, _GRAD_PRODUCT):
        accumulator = self.add_variable_from_reference(v, "grad_product", initializer="zeros")
        setattr(v, _GRAD_PRODUCT, accumulator)
        self._grad_products[id(v)] = accumulator

  def apply(self, grads, trainable_variables=None):
    if not self.built and trainable_variables is not None:  # as base.apply would
      with keras.name_scope(self.name, caller=self):
        self.build(list(trainable_variables))
      self.built = True
    variables = self._trainable_variables if trainable_variables is None else trainable_variables
    scale = self.loss_scale_factor
    for g, v in zip(grads, variables):
      accumulator = self._grad_products.get(id(v)) if g is not None else None
      if accumulator is not None:
        g = ops.cast(g, "float32") if scale is None else ops.cast(g, "float32") / scale
        accumulator.assign(accumulator + ops.cast(v, "float32") * g)
    return base.apply(self, grads, trainable_variables)

  def get_config(self):
    return {"optimizer": keras.optimizers.serialize(base(**_config(self, base)))}

  cls = type(base.__name__, (base,), {"build": build, "apply": apply, "get_config": get_config,
                                      "from_config": classmethod(_load),
                                      "__module__": base.__module__})
  # Every recording class loads any saved one (the base is in the config).
  keras.saving.register_keras_serializable("keras_signflip", _REGISTERED_NAME)(cls)
  _RECORDING_CLASSES[base] = cls
  return cls


def _config(optimizer, base=None):
  """`optimizer`'s constructor arguments (its learning-rate schedule rebuilt)."""
  config = (base or type(optimizer)).get_config(optimizer)
  if isinstance(config.get("learning_rate"), dict):
    config["learning_rate"] = keras.saving.deserialize_keras_object(config["learning_rate"])
  return config


def _load(cls, config, custom_objects=None):
  """from_config of a saved recording optimizer: the inner one, recording."""
  del cls
  return record_gradients(keras.optimizers.deserialize(config["optimizer"],
                                                       custom_objects=custom_objects))


@keras.saving.register_keras_serializable("keras_signflip", _REGISTERED_NAME)
class _SavedRecorder:
  """Loads a saved recording optimizer before any recording class exists here."""
  from_config = classmethod(_load)

  def get_config(self):
    return {}


def record_gradients(optimizer):
  """A copy of a Keras 3 `optimizer` that records sum_t w_t * g_t for the
  weights of wrappers whose criterion reads gradients (`Saliency`,
  `MovementScore`); every update is the original optimizer's.

  Example:
    >>> model.compile(ksf.record_gradients(keras.optimizers.Adam(1e-3)), loss)
  """
  if not isinstance(optimizer, keras.optimizers.Optimizer):
    raise ValueError("Received an invalid value for `optimizer`, expected a Keras 3 "
                     f"optimizer instance. Received: {optimizer!r}")
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    raise ValueError("record_gradients wraps the inner optimizer: use "
                     "LossScaleOptimizer(record_gradients(inner)).")
  base = type(optimizer)
  if records_gradients(optimizer):
    base = next(b for b, c in _RECORDING_CLASSES.items() if c is base)
  return _recording_class(base)(**_config(optimizer, base))


def records_gradients(optimizer):
  """Whether `optimizer` (or the inner optimizer of a LossScaleOptimizer) records."""
  inner = getattr(optimizer, "inner_optimizer", None)
  return type(optimizer) in _RECORDING_CLASSES.values() or (
      inner is not None and records_gradients(inner))
