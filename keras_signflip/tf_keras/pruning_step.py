"""The tf_keras family's pruning steps: `TfKerasPruner` (for custom training loops)
and `TfKerasPruningStep`, the callback that runs it in `fit`.

Users pass `keras_signflip.UpdatePruningStep` (keras_signflip/callbacks.py),
which runs this callback for a tf_keras model, or write their own loop with
`keras_signflip.Pruner` (keras_signflip/custom_loop.py), which runs
`TfKerasPruner`: one implementation behind both. The callback stays a
subclass of TF-MOT's `UpdatePruningStep`, so TF-MOT's code recognises it, and
the pruner steps TF-MOT's own wrappers too. (The callback was named
`UpdatePruningStep` in 0.3; that name still imports from here and from
`keras_signflip.tf_keras`.)
"""
import numpy as np

from keras_signflip import pruner_hooks
from keras_signflip import schedule_checks
from keras_signflip import sparsity_schedules
from keras_signflip.tf_keras import gradient_noise
from keras_signflip.tf_keras import optimizers
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras._framework import pruning_wrapper, tf, tfmot

__all__ = ["TfKerasPruner", "TfKerasPruningStep", "UpdatePruningStep"]


class TfKerasPruner:
  """What `fit` with `UpdatePruningStep` does to a tf_keras model, step by step.

  In this family the wrappers' training call advances `pruning_step` and runs
  the mask updates in-graph (TF-MOT's design), and the optimizer's variable
  constraint counts the flips after each `apply_gradients`; so `before_step`
  does nothing here. `begin` prepares the model and `epoch_end`/`end` count
  and re-mask the embedding tables.

  Args:
    model: a tf_keras model wrapped by `prune_sign_flip`.
    optimizer: the optimizer the loop applies gradients with. Defaults to
      `model.optimizer`.
  """

  def __init__(self, model, optimizer=None):
    self.model = model
    self.optimizer = getattr(model, "optimizer", None) if optimizer is None else optimizer
    self.prunable_layers = []

  def begin(self):
    """Before the first step: checks the weights and the optimizer, then sets the
    pruning step (0 for a new model), re-applies the masks and re-reads the signs."""
    model = self.model
    unbuilt = [w.name for w in prune_lib.collect_wrappers(model) if not w.built]
    if unbuilt:
      raise ValueError(
          f"The pruning wrappers {unbuilt} are not built, so their masks and flip counts "
          "do not exist yet: call the model on a batch (model(x[:1])) or "
          "model.build(input_shape) before training. (A subclassed model that was never "
          "called has unbuilt layers; a Sequential model needs an input shape.)")
    prune_lib.link_global(model)
    states = prune_lib.flip_states(model)
    for s in states:
      if not np.all(np.isfinite(s.weight.numpy())):
        raise ValueError(
            f"Weight {s.weight.name} holds NaN or Inf before training; "
            "pruning cannot rank it. Restore it from a checkpoint or "
            "re-initialise the model.")
    if (any(s.grad_product is not None for s in states)
        and not gradient_noise.records_gradients(self.optimizer)):
      raise ValueError("The model's criterion reads gradients (Saliency, MovementScore): "
                       "compile with optimizer=keras_signflip.record_gradients(optimizer) "
                       "(or with_gradient_noise), which records sum w * g every step.")
    # TF-MOT's callback: a new model's step is -1 (0 from here); a restored one keeps its own.
    # TF-MOT looks in models only; the wrappers of blocks (custom layers) count too.
    found = pruning_wrapper.collect_prunable_layers(model)
    self.prunable_layers = found + [w for w in prune_lib.collect_wrappers(model)
                                    if all(w is not l for l in found)]
    if self.prunable_layers and int(self.prunable_layers[0].pruning_step.numpy()) == -1:
      for layer in self.prunable_layers:
        layer.pruning_step.assign(0)
    prune_lib.count_tables(model)
    rows_only = optimizers.updates_only_gradient_rows(self.optimizer)
    for w in prune_lib.collect_wrappers(model):
      w.table_rows_only = rows_only
    for s in states:
      state_lib.apply_mask(s)
      state_lib.sync_signs(s)

  def before_step(self):
    """Before each training step: nothing in this family (see the class docstring)."""

  def epoch_end(self):
    """Counts the tables' last step and re-masks every weight (TF-MOT's epoch end),
    so that a model saved now holds weight * mask."""
    prune_lib.count_tables(self.model)
    for layer in self.prunable_layers:
      if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
        layer.pruning_obj.weight_mask_op()

  def end(self):
    """After the last step: counts what the tables' last step flipped."""
    prune_lib.count_tables(self.model)

  def warn_if_unreachable(self, steps):
    """Warns (`ScheduleWarning`, once per model) when `steps` more steps end
    before the schedule's final sparsity; `steps` None: unknown, no warning."""
    if not self.prunable_layers:
      return None
    return schedule_checks.warn_if_unreachable(
        self.model, [l.pruning_schedule for l in self.prunable_layers],
        int(self.prunable_layers[0].pruning_step.numpy()), steps,
        lambda schedule, step: float(schedule(tf.constant(step, tf.int64))[1]),
        sparsity_schedules.max_sparsity)


class TfKerasPruningStep(pruner_hooks.PrunerHooks, tfmot.sparsity.keras.UpdatePruningStep):
  """TF-MOT's `UpdatePruningStep`, plus what keras_signflip wrappers need: runs
  `TfKerasPruner` in `fit`.

  At train begin it also links scope="global" wrappers of a loaded model,
  refuses NaN/Inf weights (before any step runs), re-applies the masks (in
  case weights were set since) and re-reads the weights' signs so flips
  count from the weights training starts with. Before the first step of a
  `fit` whose length is known it warns (`ScheduleWarning`, once per model)
  when the schedule's final sparsity comes only after this call's steps.
  For tf_keras models only; `keras_signflip.UpdatePruningStep` takes either family.
  """

  pruner_class = TfKerasPruner
  pruner = None
  _reach_pending = False

  def on_train_begin(self, logs=None):
    self.pruner = TfKerasPruner(self.model)
    self.pruner.begin()
    self.prunable_layers = self.pruner.prunable_layers
    self._reach_pending = bool(self.prunable_layers)  # PrunerHooks: the first epoch warns


UpdatePruningStep = TfKerasPruningStep  # its 0.3 name
