"""An optimizer's own variables (step and slots), for rewinding them (lottery tickets)."""
from keras_signflip.tf_keras._compat import keras

__all__ = ["optimizer_variables"]


def optimizer_variables(optimizer, model, build=False):
  """The optimizer's variables -- its step first, then slots -- in a fixed order.

  Args:
    optimizer: a tf_keras optimizer (current or legacy, loss-scaled or not).
    model: the model it trains.
    build: create the slots for `model.trainable_variables` if the optimizer
      has not made them yet (before its first step).

  Returns:
    A list of variables; empty when the optimizer has made none and `build`
    is False.
  """
  if isinstance(optimizer, keras.optimizers.legacy.Optimizer):
    if build:
      optimizer._create_all_weights(model.trainable_variables)  # pylint: disable=protected-access
    return list(optimizer.variables())
  inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
  if not getattr(inner, "_built", False):
    if not build:
      return []
    optimizer.build(model.trainable_variables)
  return list(optimizer.variables)
