"""`Pruner`: the pruning steps of `fit` with `UpdatePruningStep`, for your own training loop.

Four calls around a loop, for either family (TF-MOT #271 asked for this):

    pruner = ksf.Pruner(model, optimizer)
    pruner.begin()
    for epoch in range(epochs):
      for x, y in batches:
        pruner.before_step()
        ...  # forward with training=True, gradients, optimizer step
      pruner.epoch_end()
    pruner.end()

They run the code the callback runs at `on_train_begin`,
`on_train_batch_begin`, `on_epoch_end` and `on_train_end` (the callbacks are
thin shells over the same pruners), so the same data, seed and schedule give
the masks and flip counts of `fit`. A JAX loop over `stateless_call` passes its
state through each call and uses what it returns (docs/custom_loops.md).
"""
from keras_signflip import families

__all__ = ["Pruner"]


def Pruner(model, optimizer=None):  # pylint: disable=invalid-name
  """The pruning steps of `model`'s family, for a custom training loop.

  Args:
    model: a model wrapped by `prune_sign_flip` (tf_keras or Keras 3), built.
    optimizer: the optimizer the loop steps with (a Keras optimizer of the
      model's family). Defaults to `model.optimizer`.

  Returns:
    A `keras_signflip.tf_keras.pruning_step.TfKerasPruner` or a
    `keras_signflip.keras3.pruning_step.Keras3Pruner`, with `begin()`,
    `before_step()`, `epoch_end()` and `end()` (on Keras 3 each takes and returns
    an optional JAX `state`, and `state()` makes one).

  Raises:
    ValueError: `optimizer` is not a Keras optimizer of the model's family.
  """
  family = families.of(model)
  if optimizer is not None:
    _check_optimizer(optimizer, family)
  return family.update_pruning_step.pruner_class(model, optimizer)


def _check_optimizer(optimizer, family):
  """A Keras optimizer of the model's family: mask updates zero its slots of pruned
  weights, which they find by Keras' names (a torch.optim or optax one hides them)."""
  roots = {(cls.__module__ or "").split(".")[0] for cls in type(optimizer).__mro__}
  if not roots & {"keras", "tf_keras"}:
    raise ValueError(
        f"Expected a Keras optimizer; received {type(optimizer).__module__}."
        f"{type(optimizer).__name__}. Mask updates zero a pruned weight's optimizer slots "
        "(momentum, Adam's moments) so that it stays at 0, and find them only in a Keras "
        "optimizer; in a PyTorch or JAX loop, step with a keras.optimizers optimizer "
        "(optimizer.apply(grads, model.trainable_variables), optimizer.stateless_apply).")
  if families.of(optimizer) is not family:
    raise ValueError(f"The optimizer is a {families.of(optimizer).name} optimizer and the "
                     f"model a {family.name} model; pass an optimizer of the model's "
                     "Keras (or compile the model and leave `optimizer` out).")
