"""Callbacks: the pruning step (TF-MOT's, extended) and TensorBoard summaries."""
import numpy as np

from keras_signflip import flips as flips_lib
from keras_signflip import prune as prune_lib
from keras_signflip._compat import keras, tf, tfmot

__all__ = ["UpdatePruningStep", "SignFlipSummaries"]


class UpdatePruningStep(tfmot.sparsity.keras.UpdatePruningStep):
  """TF-MOT's `UpdatePruningStep`, plus what keras_signflip wrappers need.

  At train begin it also links scope="global" wrappers of a loaded model,
  refuses NaN/Inf weights (before any step runs), and re-reads the weights'
  signs so flips count from the weights training starts with.
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
    self._epoch_start = int(self.model.optimizer.iterations.numpy())

  def on_epoch_end(self, epoch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    steps = max(step - self._epoch_start, 1)
    zeros = total = 0
    with self._writer.as_default():
      for s in prune_lib.flip_states(self.model):
        name = s.weight.name.split(":")[0]
        mask = s.mask.numpy() > 0
        count = s.flips.numpy()
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
