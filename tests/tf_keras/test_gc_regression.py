"""TF-MOT's suite crashed the interpreter after loading TF-format weights and pruning.

`Fatal Python error: Aborted` ("double free" in protobuf's upb) while the
cyclic garbage collector freed what an autograph-converted `PruneSignFlip.call`
had left behind (TF-MOT's prune_integration_test.py, testLoadTFWeightsThenPrune
followed by any test). The wrapper's `call` is no longer converted; this runs
the same sequence in a fresh pytest process, where the crash reproduced.
"""
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

SEQUENCE = '''
import tempfile
import numpy as np
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
import keras_signflip as ksf


def build():
  return keras.Sequential([keras.layers.Dense(8, activation="relu", input_shape=(10,)),
                           keras.layers.Dense(5, activation="softmax")])


class Sequence(tf.test.TestCase):

  def test_1_load_tf_weights_then_prune(self):
    model = build()
    model.compile(loss="categorical_crossentropy", optimizer="sgd")
    model.fit(np.random.rand(20, 10),
              keras.utils.to_categorical(np.random.randint(5, size=(20, 1)), 5), verbose=0)
    _, path = tempfile.mkstemp(".tf")
    model.save_weights(path)
    same = build()
    same.load_weights(path)
    pruned = ksf.prune_sign_flip(
        same, criterion="magnitude",
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, -1, 1))
    np.testing.assert_array_equal(model.predict(np.ones((4, 10)), verbose=0),
                                  pruned.predict(np.ones((4, 10)), verbose=0))

  def test_2_allocate(self):
    for _ in range(40):
      keras.layers.Conv2D(4, 3)
'''


def test_load_tf_weights_prune_then_collect_does_not_crash(tmp_path):
  (tmp_path / "test_sequence.py").write_text(SEQUENCE)
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=str(ROOT))
  result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_sequence.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "2 passed" in result.stdout
