"""Per-epoch training time, without `fit`'s own setup and teardown.

The overhead benchmarks call `fit` once per epoch so variants can run
interleaved. Timing the whole call measured, besides the epoch, what `fit`
does around it: many calls (of dense and pruned models alike) waited
0.1-0.6 s after their last callback had run. That wait is tf.data's
autotuning: with `options.autotune.enabled = False` on the dataset, 0 of 30
calls waited, against 15 of 30 with it. It made per-epoch times bimodal and
medians of a few rounds unreliable. A training run calls `fit` once, so that
cost is not per epoch. This callback, placed last, times from
`on_epoch_begin` to the end of `on_epoch_end`: every step, every batch hook
and the other callbacks' epoch-end work.
"""
import time

from keras_signflip.callback_base import Callback

__all__ = ["EpochTimer"]


class EpochTimer(Callback):
  """Appends each epoch's seconds to `self.seconds`; put it last in `callbacks`."""

  def __init__(self):
    super().__init__()
    self.seconds = []
    self._start = None

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.seconds.append(time.perf_counter() - self._start)
