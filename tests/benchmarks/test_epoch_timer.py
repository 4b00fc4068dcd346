"""benchmarks/epoch_timer.py: it times the epochs, not what `fit` does around them."""
import time

import numpy as np

from benchmarks.epoch_timer import EpochTimer
from keras_signflip.tf_keras._framework import keras


class _Sleeps(keras.callbacks.Callback):
  """Sleeps 0.2 s at train begin and end (outside epochs), 0.05 s per batch (inside)."""

  def on_train_begin(self, logs=None):
    time.sleep(0.2)

  def on_train_end(self, logs=None):
    time.sleep(0.2)

  def on_train_batch_end(self, batch, logs=None):
    time.sleep(0.05)


def test_epoch_timer_counts_batches_but_not_train_begin_and_end():
  model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
  model.compile("sgd", "mse")
  timer = EpochTimer()
  start = time.perf_counter()
  model.fit(np.zeros((16, 3)), np.zeros((16, 2)), batch_size=8, epochs=2, verbose=0,
            callbacks=[_Sleeps(), timer])
  wall = time.perf_counter() - start
  assert len(timer.seconds) == 2
  assert min(timer.seconds) >= 0.1  # two batches of 0.05 s each are inside
  assert wall - sum(timer.seconds) >= 0.4  # the train begin/end sleeps are outside
