"""A Keras 3 optimizer's own variables (its step and slots), for rewinding them
(lottery tickets). Gradient recording and FlipOut's noise are in `gradient_noise`;
their names still import from here, where 0.3 kept them."""
from keras_signflip.keras3.gradient_noise import (grad_product, mark_prunable,  # noqa: F401
                                                  record_gradients, records_gradients,
                                                  request_gradients, with_gradient_noise)

__all__ = ["optimizer_variables"]


def optimizer_variables(optimizer, model, build=False):
  """A Keras 3 optimizer's variables, its step first, then slots, in a fixed order
  (as `keras_signflip.tf_keras.optimizers.optimizer_variables`); `build` builds an
  unbuilt optimizer for `model.trainable_variables`, else it has none yet: []."""
  if build and not optimizer.built:
    optimizer.build(model.trainable_variables)
  return list(optimizer.variables) if optimizer.built else []
