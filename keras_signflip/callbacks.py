"""Callbacks: the pruning step (TF-MOT's, extended) and TensorBoard summaries.

Both also take Keras 3 models: `UpdatePruningStep` hands them to
`keras_signflip.keras3.UpdatePruningStep`; the summaries read either path's
state through `keras_signflip.paths`.
"""
import numpy as np

from keras_signflip import flips as flips_lib
from keras_signflip import paths
from keras_signflip import prune as prune_lib
from keras_signflip._compat import keras, tf, tfmot
from keras_signflip.detect import is_keras3_object

__all__ = ["UpdatePruningStep", "SignFlipSummaries"]


class UpdatePruningStep(tfmot.sparsity.keras.UpdatePruningStep):
  """TF-MOT's `UpdatePruningStep`, plus what keras_signflip wrappers need.

  At train begin it also links scope="global" wrappers of a loaded model,
  refuses NaN/Inf weights (before any step runs), and re-reads the weights'
  signs so flips count from the weights training starts with. Given a Keras 3
  model, it runs `keras_signflip.keras3.UpdatePruningStep` instead.
  """

  _keras3 = None

  def set_model(self, model):
    if is_keras3_object(model):
      from keras_signflip.keras3 import callbacks as keras3_callbacks  # pylint: disable=g-import-not-at-top
      self._keras3 = keras3_callbacks.UpdatePruningStep()
      self._keras3.set_model(model)
      self._keras3.set_params(getattr(self, "params", None) or {})
      return
    self._keras3 = None
    super().set_model(model)

  def set_params(self, params):
    super().set_params(params)
    if self._keras3 is not None:
      self._keras3.set_params(params)

  def on_train_batch_begin(self, batch, logs=None):
    if self._keras3 is not None:
      self._keras3.on_train_batch_begin(batch, logs)

  def on_train_end(self, logs=None):
    if self._keras3 is not None:
      self._keras3.on_train_end(logs)

  def on_epoch_end(self, batch, logs=None):
    if self._keras3 is not None:
      return self._keras3.on_epoch_end(batch, logs)
    return super().on_epoch_end(batch, logs)

  def on_train_begin(self, logs=None):
    if self._keras3 is not None:
      return self._keras3.on_train_begin(logs)
    prune_lib.link_global(self.model)
    states = prune_lib.flip_states(self.model)
    for s in states:
      if not np.all(np.isfinite(s.weight.numpy())):
        raise ValueError(
            f"Weight {s.weight.name} holds NaN or Inf before training; "
            "pruning cannot rank it. Restore it from a checkpoint or "
            "re-initialise the model.")
    super().on_train_begin(logs)
    for s in states:
      flips_lib.sync_signs(s)


class SignFlipSummaries(keras.callbacks.Callback):
  """TensorBoard summaries of sign flips and sparsity, every epoch.

  Writes, under `log_dir`/signflip, per wrapped weight: `flips/<name>` (total
  count over unpruned weights), `flip_rate/<name>` (flips this epoch per
  unpruned weight per step), `sparsity/<name>`, a histogram of flip counts of
  unpruned weights, and `sparsity/overall`.

  Args:
    log_dir: a non-empty directory path.
  """

  def __init__(self, log_dir):
    super().__init__()
    if not isinstance(log_dir, str) or not log_dir:
      raise ValueError("Received an invalid value for `log_dir`, expected a "
                       f"non-empty string. Received: log_dir={log_dir!r}")
    self.log_dir = log_dir
    self._writer = None

  def on_train_begin(self, logs=None):
    self._writer = tf.summary.create_file_writer(self.log_dir.rstrip("/") + "/signflip")
    self._last = {}

  def on_epoch_begin(self, epoch, logs=None):
    # No batch hooks: overriding one makes Keras sync its logs every step.
    self._epoch_start = int(paths.synced(self.model).optimizer.iterations.numpy())

  def on_epoch_end(self, epoch, logs=None):
    model = paths.synced(self.model)
    path = paths.of(model)
    step = int(model.optimizer.iterations.numpy())
    steps = max(step - self._epoch_start, 1)
    zeros = total = 0
    path.flip_counts(model)  # counts what the last step flipped (Keras 3 path)
    with self._writer.as_default():
      for s in path.flip_states(model):
        name = paths.weight_name(s.weight).split(":")[0]
        mask = path.to_numpy(s.mask) > 0
        count = path.to_numpy(s.flips)
        previous = self._last.get(name, np.zeros_like(count))
        new_flips = int((count - previous)[mask].sum())
        alive = int(mask.sum())
        tf.summary.scalar(f"flips/{name}", int(count[mask].sum()), step=step)
        tf.summary.scalar(f"flip_rate/{name}", new_flips / max(alive * steps, 1), step=step)
        tf.summary.scalar(f"sparsity/{name}", 1.0 - alive / mask.size, step=step)
        tf.summary.histogram(f"flip_counts/{name}", count[mask], step=step)
        self._last[name] = count
        zeros += mask.size - alive
        total += mask.size
      tf.summary.scalar("sparsity/overall", zeros / max(total, 1), step=step)
    self._writer.flush()

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.close()
