"""An optimizer's own variables (step and slots), for rewinding them (lottery tickets)."""
from keras_signflip.tf_keras._framework import keras

__all__ = ["optimizer_variables", "updates_only_gradient_rows"]


def updates_only_gradient_rows(optimizer):
  """True when a sparse (row) gradient changes only its own rows of a table.

  Legacy SGD (with or without momentum: lazy, per-row momentum), Adagrad and
  Ftrl apply sparse gradients row by row; so does the current SGD without
  momentum or weight decay. Adam and momentum in the current optimizers
  move every row at every step (moments decay everywhere), so an embedding
  table's flips must then be counted over the whole table.
  """
  inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
  legacy = keras.optimizers.legacy
  if isinstance(inner, (legacy.SGD, legacy.Adagrad, legacy.Ftrl)):
    return True
  if isinstance(inner, keras.optimizers.SGD) and not isinstance(inner, legacy.Optimizer):
    return not float(inner.momentum) and not getattr(inner, "weight_decay", None)
  return False


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
