"""A Keras 3 (JAX) user without TensorFlow, tf_keras or TF-MOT gets everything generic.

The child process blocks those three imports with a meta-path hook before
anything else runs, so a stray module-level import anywhere in the package
fails the test instead of passing silently on a machine that has them.
"""
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r'''
import importlib.abc, sys
BLOCKED = ("tensorflow", "tf_keras", "tensorflow_model_optimization")
class Blocker(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in BLOCKED:
      raise ImportError(f"blocked for this test: {name}")
sys.meta_path.insert(0, Blocker())

import numpy as np
import keras
import keras_signflip as ksf
from keras_signflip import lottery
from keras_signflip.keras3 import schedules

rng = np.random.RandomState(0)
x = rng.randn(192, 8).astype("float32")
y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)

class Batches(keras.utils.PyDataset):
  def __init__(self):
    super().__init__()
  def __len__(self):
    return 6
  def __getitem__(self, i):
    return x[32 * i:32 * (i + 1)], y[32 * i:32 * (i + 1)]

def make_model():
  return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                           keras.layers.Dense(3)])

def compile_model(m):
  m.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"])

# prune_sign_flip + UpdatePruningStep + RewindPoint + EarlyBird in one fit.
keras.utils.set_random_seed(0)
model = ksf.prune_sign_flip(make_model(),
                            pruning_schedule=schedules.ConstantSparsity(0.5, 0, frequency=1),
                            criterion="hybrid", scope="global")
compile_model(model)
rewind_point = ksf.RewindPoint("2it")
bird = ksf.EarlyBird(0.5, "magnitude", epsilon=1.0, window=2)
model.fit(Batches(), epochs=3, verbose=0,
          callbacks=[ksf.UpdatePruningStep(), rewind_point, bird])
assert abs(ksf.sparsity_report(model)["overall"] - 0.5) < 0.01, ksf.sparsity_report(model)
assert rewind_point.snapshot is not None and rewind_point.snapshot.step == 2
assert bird.epoch == 1, bird.distances   # window 2, epsilon 1: holds at the second epoch
try:
  ksf.SignFlipSummaries("/tmp/unused").on_train_begin()
except ImportError as e:
  assert "TensorFlow" in str(e) and "pip install tensorflow" in str(e), e
else:
  raise AssertionError("SignFlipSummaries without TensorFlow did not say so")

# The lottery loop with the three re-initialisations the issue names.
config = lottery.LotteryConfig(rounds=2, epochs=1, prune_rate=0.5, prune_rate_output=0.5,
                               criterion="magnitude",
                               modes=("rewind", "random", "signed_constant"), rewind_step=1)
results = lottery.run(make_model, compile_model, lambda r, e: Batches(), Batches(), Batches(),
                      config, sys.argv[1], log=lambda *a: None)
rows = {(r["mode"], r["round"]): r for r in results}
assert sorted(rows) == sorted([("rewind", 0), ("rewind", 1), ("rewind", 2), ("random", 1),
                              ("random", 2), ("signed_constant", 1), ("signed_constant", 2)])
np.testing.assert_allclose([rows[("rewind", r)]["weights_remaining_pct"] for r in range(3)],
                           [100.0, 50.0, 25.0], atol=0.5)
masks2 = lottery.load_masks(lottery.RunFiles(sys.argv[1]).masks(2))
assert [int(m.sum()) for m in masks2] == [32, 12], [int(m.sum()) for m in masks2]
blocked = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras",
                                                         "tensorflow_model_optimization")]
assert not blocked, blocked
print("ok")
'''


def test_keras3_jax_without_tensorflow(tmp_path):
  if importlib.util.find_spec("jax") is None:
    pytest.skip("jax is not installed (pip install 'keras_signflip[jax]')")
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env.update(KERAS_BACKEND="jax", PYTHONPATH=str(ROOT))
  result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "lt")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
      result.stdout[-3000:] + result.stderr[-5000:])
