"""`SignFlipSummaries`: TensorBoard summaries of sign flips and sparsity, per epoch.

Generic over both wrapper families; it writes through TensorFlow's
`tf.summary` (as `keras.callbacks.TensorBoard` does on every backend), so it
needs TensorFlow installed and says so when it is not.
"""
import numpy as np

from keras_signflip import families
from keras_signflip.callback_base import Callback

__all__ = ["SignFlipSummaries"]


def _tf_summary():
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "SignFlipSummaries writes TensorBoard files with TensorFlow's tf.summary, "
        f"and TensorFlow is not importable ({e}). Install it (pip install tensorflow) "
        "or read ksf.flip_counts(model) / ksf.sparsity_report(model) yourself.") from None
  return tf.summary


class SignFlipSummaries(Callback):
  """TensorBoard summaries of sign flips and sparsity, every epoch.

  Writes, under `log_dir`/signflip, per wrapped weight: `flips/<name>` (total
  count over unpruned weights), `flip_rate/<name>` (flips this epoch per
  unpruned weight per step), `sparsity/<name>`, a histogram of flip counts of
  unpruned weights, and `sparsity/overall`. Counts carry over between `fit`
  calls that continue one training (one `fit` per epoch), so `flip_rate` is
  per epoch either way.

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
    self._last = {}
    self._model_id = None
    self._end_step = None

  def on_train_begin(self, logs=None):
    summary = _tf_summary()
    if self._writer is None:
      self._writer = summary.create_file_writer(self.log_dir.rstrip("/") + "/signflip")
    step = int(families.synced(self.model).optimizer.iterations.numpy())
    continuing = (self._model_id == id(self.model) and self._end_step is not None
                  and step >= self._end_step)
    if not continuing:  # another model, or a restarted optimizer: counts start over
      self._last = {}
      self._model_id = id(self.model)

  def on_epoch_begin(self, epoch, logs=None):
    # No batch hooks: overriding one makes Keras sync its logs every step.
    self._epoch_start = int(families.synced(self.model).optimizer.iterations.numpy())

  def on_epoch_end(self, epoch, logs=None):
    summary = _tf_summary()
    model = families.synced(self.model)
    family = families.of(model)
    step = int(model.optimizer.iterations.numpy())
    steps = max(step - self._epoch_start, 1)
    zeros = total = 0
    family.count_pending(model)  # counts what the last step flipped
    with self._writer.as_default():
      for s in family.flip_states(model):
        name = families.weight_name(s.weight).split(":")[0]
        mask = family.to_numpy(s.mask) > 0
        count = family.to_numpy(s.flips)
        previous = self._last.get(name, np.zeros_like(count))
        new_flips = int((count - previous)[mask].sum())
        alive = int(mask.sum())
        summary.scalar(f"flips/{name}", int(count[mask].sum()), step=step)
        summary.scalar(f"flip_rate/{name}", new_flips / max(alive * steps, 1), step=step)
        summary.scalar(f"sparsity/{name}", 1.0 - alive / mask.size, step=step)
        summary.histogram(f"flip_counts/{name}", count[mask], step=step)
        self._last[name] = count
        zeros += mask.size - alive
        total += mask.size
      summary.scalar("sparsity/overall", zeros / max(total, 1), step=step)
    self._writer.flush()

  def on_train_end(self, logs=None):
    self._end_step = int(families.synced(self.model).optimizer.iterations.numpy())
    if self._writer is not None:
      self._writer.close()
      self._writer = None
