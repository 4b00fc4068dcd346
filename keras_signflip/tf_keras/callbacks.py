"""`UpdatePruningStep`: TF-MOT's callback, extended for keras_signflip's wrappers.

`keras_signflip.UpdatePruningStep` (keras_signflip/callbacks.py) chooses
between this one and `keras_signflip.keras3.UpdatePruningStep` by model.
"""
import numpy as np

from keras_signflip.tf_keras import noise
from keras_signflip.tf_keras import optimizers
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras._compat import tfmot

__all__ = ["UpdatePruningStep"]


class UpdatePruningStep(tfmot.sparsity.keras.UpdatePruningStep):
  """TF-MOT's `UpdatePruningStep`, plus what keras_signflip wrappers need.

  At train begin it also links scope="global" wrappers of a loaded model,
  refuses NaN/Inf weights (before any step runs), re-applies the masks (in
  case weights were set since) and re-reads the weights' signs so flips
  count from the weights training starts with. For tf_keras
  models only; `keras_signflip.UpdatePruningStep` takes either family.
  """

  def on_train_begin(self, logs=None):
    prune_lib.link_global(self.model)
    states = prune_lib.flip_states(self.model)
    for s in states:
      if not np.all(np.isfinite(s.weight.numpy())):
        raise ValueError(
            f"Weight {s.weight.name} holds NaN or Inf before training; "
            "pruning cannot rank it. Restore it from a checkpoint or "
            "re-initialise the model.")
    if any(s.grad_product is not None for s in states) and not noise.records_gradients(
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

  def on_epoch_end(self, epoch, logs=None):
    prune_lib.count_tables(self.model)  # embedding tables: the epoch's last step
    super().on_epoch_end(epoch, logs)

  def on_train_end(self, logs=None):
    prune_lib.count_tables(self.model)
