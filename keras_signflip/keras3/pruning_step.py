"""`Keras3PruningStep`: the Keras 3 family's pruning-step callback; runs mask updates
between steps.

Users pass `keras_signflip.UpdatePruningStep` (keras_signflip/callbacks.py),
which runs this one for a Keras 3 model. (Named `UpdatePruningStep` in 0.3;
that name still imports from here and from `keras_signflip.keras3`.)
TF-MOT's callback only sets the step; in the Keras 3 family the callback is
also where masks change (on the host, with `keras.ops`), because JAX
compiles the train step as a pure function. Per batch it only advances a
Python counter and asks each schedule (plain Python); it touches the model --
on JAX, syncing its state -- only at pruning steps and epoch ends.
"""
import sys

from keras_signflip import schedule_checks
from keras_signflip import sparsity_schedules
from keras_signflip.keras3 import mask_update
from keras_signflip.keras3 import gradient_noise
from keras_signflip.keras3 import prune as prune_lib
from keras_signflip.keras3._framework import keras, ops

__all__ = ["Keras3PruningStep", "UpdatePruningStep"]


def _check_distribution(model):
  """Multi-device training in this family: `keras.distribution` on JAX only."""
  backend = keras.backend.backend()
  if keras.distribution.distribution() is not None and backend != "jax":
    raise ValueError(
        "keras_signflip's Keras 3 family trains on several devices through "
        f"keras.distribution on the JAX backend only; this is {backend!r}. Train on "
        "one device, switch to KERAS_BACKEND=jax, or use a tf_keras model "
        "(tf.distribute strategies work on the tf_keras family).")
  tf = sys.modules.get("tensorflow") if backend == "tensorflow" else None  # the backend itself
  # Keras 3's TensorFlow trainer keeps the strategy a model was built under.
  if tf is not None and (tf.distribute.has_strategy() or
                         getattr(model, "_distribute_strategy", None) is not None):
    raise ValueError(
        "keras_signflip's Keras 3 family does not run under a tf.distribute strategy "
        "(its mask updates run between steps on the host). Use a tf_keras model for "
        "tf.distribute, or keras.distribution.DataParallel on the JAX backend.")


class Keras3PruningStep(keras.callbacks.Callback):
  """Steps the pruning schedules of a Keras 3 model's wrappers; needed in `fit`.

  In a custom training loop call `on_train_begin()` once, then
  `on_train_batch_begin(i)` before every step, and `on_train_end()`.
  Between `on_train_begin` and `on_train_end` the wrappers accept training
  calls; outside, a training call raises (masks would never change). Before
  the first step of a `fit` whose length is known it warns
  (`ScheduleWarning`, once per model) when the schedule's final sparsity
  comes only after this call's steps.
  """

  def __init__(self):
    super().__init__()
    self.step = None
    self._wrappers = []
    self._reach_pending = False

  def on_train_begin(self, logs=None):
    model = self.model
    if getattr(model, "steps_per_execution", 1) not in (1, None):
      raise ValueError("keras_signflip's Keras 3 family updates masks between steps and "
                       "needs compile(steps_per_execution=1); received "
                       f"{model.steps_per_execution}.")
    self._wrappers = prune_lib.collect_wrappers(model)
    if not self._wrappers:
      return
    _check_distribution(model)
    unbuilt = [w.name for w in self._wrappers if not w.built]
    if unbuilt:
      raise ValueError(f"Wrappers {unbuilt} are not built; build the model (give it "
                       "an input shape) before training.")
    for s in prune_lib.flip_states(model):
      mask_update.check_finite(s)
    if (any(w.criterion.uses_gradients for w in self._wrappers)
        and not gradient_noise.records_gradients(getattr(model, "optimizer", None))):
      raise ValueError("A criterion of this model reads gradients (Saliency, MovementScore): "
                       "compile with optimizer=keras_signflip.record_gradients(optimizer).")
    step = int(ops.convert_to_numpy(self._wrappers[0].pruning_step))
    if step < 0:
      for w in self._wrappers:
        w.pruning_step.assign(0)
      step = 0
    self.step = step
    # Count the flip the last step made, if nobody has yet: a checkpoint saved
    # by a callback that ran before ours at the last epoch end holds it
    # uncounted, and resuming from it must still count it. (Weights changed
    # from outside since are the caller's to re-sync: `set_reference`.)
    prune_lib.count_pending(model)
    for w in self._wrappers:
      w.pruning_callback_active = True
    self._reach_pending = True

  def on_epoch_begin(self, epoch, logs=None):
    # The first epoch of this fit call is `initial_epoch`: only here are the
    # call's steps known, still before its first step.
    if self._reach_pending:
      self._reach_pending = False
      self.warn_if_unreachable(epoch)

  def warn_if_unreachable(self, initial_epoch=0):
    """Warns (once per model) when this fit call ends before the final sparsity."""
    if not self._wrappers or self.step is None:
      return None
    return schedule_checks.warn_if_unreachable(
        self.model, [w.pruning_schedule for w in self._wrappers], self.step,
        schedule_checks.fit_steps(self.params, initial_epoch),
        lambda schedule, step: float(schedule(step)[1]), sparsity_schedules.max_sparsity)

  def on_train_batch_begin(self, batch, logs=None):
    if not self._wrappers:
      return
    self.step += 1  # the wrappers' in-graph pruning_step reaches it this batch
    if any(w.pruning_schedule(self.step)[0] for w in self._wrappers):
      model = self.model  # on JAX: syncs the state, so assignments reach the next step
      mask_update.update_masks(self._wrappers, self.step, getattr(model, "optimizer", None))

  def _count(self):
    if self._wrappers:
      prune_lib.count_pending(self.model)

  def on_epoch_end(self, epoch, logs=None):
    self._count()

  def on_train_end(self, logs=None):
    self._count()
    for w in self._wrappers:
      w.pruning_callback_active = False


UpdatePruningStep = Keras3PruningStep  # its 0.3 name
