"""An optimizer's own variables (step and slots), for rewinding them (lottery tickets)."""

__all__ = ["optimizer_variables"]


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
