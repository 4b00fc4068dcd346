"""`PrunerHooks`: the `fit` hooks both families' pruning-step callbacks share.

Each family's callback (`TfKerasPruningStep`, `Keras3PruningStep`) holds the
family's pruner (`keras_signflip.Pruner`'s per-family classes) in `pruner`
and differs only in how it starts it (`on_train_begin`) and, on Keras 3, in
calling it before each step; the rest is here, written once. Framework-free:
mixed in before each Keras' own `Callback`.
"""
from keras_signflip import schedule_checks

__all__ = ["PrunerHooks"]


class PrunerHooks:
  """Mixin: warns at the first epoch of each `fit` call (the first moment the
  call's steps are known: `initial_epoch` tells a resumed fit's remaining
  epochs) when the call ends before the schedule's final sparsity, once per
  model; hands epoch and training ends to the pruner. The callback sets
  `_reach_pending` in `on_train_begin`."""

  _reach_pending = False
  pruner = None

  def on_epoch_begin(self, epoch, logs=None):
    if self._reach_pending:
      self._reach_pending = False
      self.warn_if_unreachable(epoch)

  def warn_if_unreachable(self, initial_epoch=0):
    """Warns (once per model) when this fit call ends before the final sparsity."""
    if self.pruner is None:
      return None
    return self.pruner.warn_if_unreachable(
        schedule_checks.fit_steps(self.params, initial_epoch))

  def on_epoch_end(self, epoch, logs=None):
    if self.pruner is not None:
      self.pruner.epoch_end()

  def on_train_end(self, logs=None):
    if self.pruner is not None:
      self.pruner.end()
