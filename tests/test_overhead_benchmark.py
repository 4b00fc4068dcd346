"""benchmarks/overhead.py: what it counts and watches is right."""
import time

import numpy as np

from benchmarks import overhead
from keras_signflip.tf_keras._compat import keras


def test_slow_callback_watch_catches_keras_warning():
  class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      time.sleep(0.05)

  model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
  model.compile("sgd", "mse")
  with overhead.watch_slow_callbacks() as slow:
    model.fit(np.zeros((80, 3)), np.zeros((80, 2)), batch_size=8, verbose=0)
    assert not slow
    model.fit(np.zeros((80, 3)), np.zeros((80, 2)), batch_size=8, verbose=0, callbacks=[Slow()])
  assert len(slow) == 1 and "on_train_batch_end" in slow[0]


def test_extra_bytes_per_weight_meet_the_five_byte_goal():
  extra = overhead.extra_bytes_per_weight()
  for name in ("magnitude", "sign_flip", "hybrid", "random"):
    assert extra[name] == 5.0, (name, extra[name])  # int8 previous sign + int32 flips
  for name in ("large_final_same_sign", "movement", "recent_flips"):
    assert extra[name] == 9.0, (name, extra[name])  # + 4 bytes of reference / window
