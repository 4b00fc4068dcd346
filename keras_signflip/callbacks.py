"""The callbacks a user passes to `fit`, for models of either wrapper family.

`UpdatePruningStep` is the one users pass: it runs the pruning-step callback
of the family that owns the model (`keras_signflip.tf_keras.pruning_step.
TfKerasPruningStep`, TF-MOT's `UpdatePruningStep` extended, for tf_keras;
`keras_signflip.keras3.pruning_step.Keras3PruningStep` for Keras 3), so one
line serves both. `SignFlipSummaries` lives in
`keras_signflip.summaries` and is re-exported here.
"""
from keras_signflip import families
from keras_signflip.callback_base import Callback
from keras_signflip.summaries import SignFlipSummaries

__all__ = ["UpdatePruningStep", "SignFlipSummaries"]


class UpdatePruningStep(Callback):
  """Steps the pruning schedules of a model's keras_signflip wrappers; needed in `fit`.

  In a custom training loop use `keras_signflip.Pruner` (keras_signflip/custom_loop.py),
  which runs the same code step by step; calling this callback's hooks works too.
  """

  def __init__(self):
    super().__init__()
    self.callback = None  # the family's own callback, made in set_model

  def set_model(self, model):
    super().set_model(model)
    self.callback = families.of(model).update_pruning_step()
    self.callback.set_model(model)
    if self.params:
      self.callback.set_params(self.params)

  def set_params(self, params):
    super().set_params(params)
    if self.callback is not None:
      self.callback.set_params(params)

  def _family_callback(self):
    if self.callback is None:
      raise ValueError("UpdatePruningStep has no model yet: pass it to "
                       "model.fit(callbacks=[...]), or call set_model(model) first "
                       "in a custom training loop.")
    return self.callback

  def _implements_train_batch_hooks(self):
    # tf_keras calls batch hooks only when some callback implements them:
    # TF-MOT's does not, so forwarding must not switch them on.
    ask = getattr(self.callback, "_implements_train_batch_hooks", None)
    return ask() if ask is not None else True

  def on_train_begin(self, logs=None):
    self._family_callback().on_train_begin(logs)

  def on_train_end(self, logs=None):
    self._family_callback().on_train_end(logs)

  def on_epoch_begin(self, epoch, logs=None):
    self._family_callback().on_epoch_begin(epoch, logs)

  def on_epoch_end(self, epoch, logs=None):
    self._family_callback().on_epoch_end(epoch, logs)

  def on_train_batch_begin(self, batch, logs=None):
    self._family_callback().on_train_batch_begin(batch, logs)

  def on_train_batch_end(self, batch, logs=None):
    self._family_callback().on_train_batch_end(batch, logs)
