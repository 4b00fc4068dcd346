"""`TfKerasPruningStep`: TF-MOT's `UpdatePruningStep` callback, extended for
keras_signflip's tf_keras wrappers.

Users pass `keras_signflip.UpdatePruningStep` (keras_signflip/callbacks.py),
which runs this one for a tf_keras model and `keras3.pruning_step.Keras3PruningStep`
for a Keras 3 model. It stays a subclass of TF-MOT's callback, so it steps
TF-MOT's own wrappers too, and TF-MOT's callback steps ours. (Named
`UpdatePruningStep` in 0.3; that name still imports from here and from
`keras_signflip.tf_keras`.)
"""
import numpy as np

from keras_signflip import schedule_checks
from keras_signflip import sparsity_schedules
from keras_signflip.tf_keras import gradient_noise
from keras_signflip.tf_keras import optimizers
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras._framework import tf, tfmot

__all__ = ["TfKerasPruningStep", "UpdatePruningStep"]


class TfKerasPruningStep(tfmot.sparsity.keras.UpdatePruningStep):
  """TF-MOT's `UpdatePruningStep`, plus what keras_signflip wrappers need.

  At train begin it also links scope="global" wrappers of a loaded model,
  refuses NaN/Inf weights (before any step runs), re-applies the masks (in
  case weights were set since) and re-reads the weights' signs so flips
  count from the weights training starts with. Before the first step of a
  `fit` whose length is known it warns (`ScheduleWarning`, once per model)
  when the schedule's final sparsity comes only after this call's steps.
  For tf_keras models only; `keras_signflip.UpdatePruningStep` takes either family.
  """

  _reach_pending = False

  def on_train_begin(self, logs=None):
    prune_lib.link_global(self.model)
    states = prune_lib.flip_states(self.model)
    for s in states:
      if not np.all(np.isfinite(s.weight.numpy())):
        raise ValueError(
            f"Weight {s.weight.name} holds NaN or Inf before training; "
            "pruning cannot rank it. Restore it from a checkpoint or "
            "re-initialise the model.")
    if any(s.grad_product is not None for s in states) and not gradient_noise.records_gradients(
        getattr(self.model, "optimizer", None)):
      raise ValueError("The model's criterion reads gradients (Saliency, MovementScore): "
                       "compile with optimizer=keras_signflip.record_gradients(optimizer) "
                       "(or with_gradient_noise), which records sum w * g every step.")
    super().on_train_begin(logs)
    prune_lib.count_tables(self.model)
    rows_only = optimizers.updates_only_gradient_rows(getattr(self.model, "optimizer", None))
    for w in prune_lib.collect_wrappers(self.model):
      w.table_rows_only = rows_only
    for s in states:
      state_lib.apply_mask(s)
      state_lib.sync_signs(s)
    self._reach_pending = bool(self.prunable_layers)

  def on_epoch_begin(self, epoch, logs=None):
    # The first epoch of this fit call: its number is `initial_epoch`, so the
    # call's steps are known here, before its first step (on_train_begin
    # cannot tell a resumed fit's remaining epochs).
    if self._reach_pending:
      self._reach_pending = False
      self.warn_if_unreachable(epoch)
    super().on_epoch_begin(epoch, logs)

  def warn_if_unreachable(self, initial_epoch=0):
    """Warns (once per model) when this fit call ends before the final sparsity."""
    if not self.prunable_layers:
      return None
    return schedule_checks.warn_if_unreachable(
        self.model, [l.pruning_schedule for l in self.prunable_layers],
        int(self.prunable_layers[0].pruning_step.numpy()),
        schedule_checks.fit_steps(self.params, initial_epoch),
        lambda schedule, step: float(schedule(tf.constant(step, tf.int64))[1]),
        sparsity_schedules.max_sparsity)

  def on_epoch_end(self, epoch, logs=None):
    prune_lib.count_tables(self.model)  # embedding tables: the epoch's last step
    super().on_epoch_end(epoch, logs)

  def on_train_end(self, logs=None):
    prune_lib.count_tables(self.model)


UpdatePruningStep = TfKerasPruningStep  # its 0.3 name
