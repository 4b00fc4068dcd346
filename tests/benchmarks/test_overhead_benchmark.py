"""benchmarks/overhead.py: what it counts and watches is right.

Run in a subprocess: the benchmark's absl flags (--rounds, ...) would clash
with the example binaries' flags in the test process.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CODE = """
import json, time
import numpy as np
from benchmarks import overhead
from keras_signflip.tf_keras._framework import keras

class Slow(keras.callbacks.Callback):
  def on_train_batch_end(self, batch, logs=None):
    time.sleep(0.05)

model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
model.compile("sgd", "mse")
counts = []
with overhead.watch_slow_callbacks() as slow:
  model.fit(np.zeros((80, 3)), np.zeros((80, 2)), batch_size=8, verbose=0)
  counts.append(len(slow))
  model.fit(np.zeros((80, 3)), np.zeros((80, 2)), batch_size=8, verbose=0, callbacks=[Slow()])
  counts.append(len(slow))
print("RESULT " + json.dumps({"slow": counts, "messages": slow,
                              "bytes": overhead.extra_bytes_per_weight()}))
"""


def _run():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")][0]
  return json.loads(line[len("RESULT "):])


def test_slow_callback_watch_and_extra_bytes_per_weight():
  result = _run()
  assert result["slow"] == [0, 1] and "on_train_batch_end" in result["messages"][0]
  extra = result["bytes"]
  for name in ("magnitude", "sign_flip", "hybrid", "random"):
    assert extra[name] == 5.0, (name, extra[name])  # int8 previous sign + int32 flips
  for name in ("large_final_same_sign", "movement", "recent_flips"):
    assert extra[name] == 9.0, (name, extra[name])  # + 4 bytes of reference / window
