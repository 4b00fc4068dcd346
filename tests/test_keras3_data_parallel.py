"""Keras 3 on JAX with `keras.distribution.DataParallel` over 2 CPU devices equals 1 device.

One fresh process with 2 CPU devices (XLA_FLAGS must be set before JAX starts)
trains the same model, data and schedule twice: on one device (no distribution:
JAX's default device), then data-parallel on both; masks and flip counts are
saved for comparison.
"""
import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r'''
import sys
import numpy as np
import jax
import keras
import keras_signflip as ksf
from keras_signflip.keras3 import schedules

out = sys.argv[1]
assert len(jax.devices()) == 2, jax.devices()
rng = np.random.RandomState(0)
x, y = rng.randn(192, 8).astype("float32"), rng.randint(0, 3, 192)


def train(devices):
  if devices > 1:
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
  try:
    keras.utils.set_random_seed(3)
    base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="a"),
                             keras.layers.Dense(12, activation="tanh", name="b"),
                             keras.layers.Dense(3, name="c")],
                            name="sequential")  # as named in a fresh process: `random` reads it
    model = ksf.prune_sign_flip(
        base, criterion="random", scope="global",
        pruning_schedule=schedules.PolynomialDecay(0.1, 0.3, 2, 30, frequency=3))
    model.compile(keras.optimizers.SGD(0.5, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0,
              callbacks=[ksf.UpdatePruningStep()])
  finally:
    keras.distribution.set_distribution(None)
  for v in model.weights:  # where the variables lived: one device, or both
    assert len(v.value.sharding.device_set) == devices, (v.path, v.value.sharding)
  return {**{f"{devices}|flips|{k}": np.asarray(v) for k, v in ksf.flip_counts(model).items()},
          **{f"{devices}|mask|{k}": np.asarray(v) for k, v in ksf.masks(model).items()},
          **{f"{devices}|weight|{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}}


np.savez(out, **train(1), **train(2))
'''


def test_data_parallel_on_two_devices_equals_one(tmp_path):
  if importlib.util.find_spec("jax") is None:
    pytest.skip("jax is not installed (pip install 'keras_signflip[jax]')")
  env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "XLA_FLAGS")}
  env.update(KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs.npz")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  runs = np.load(tmp_path / "runs.npz")
  one = {k[2:]: runs[k] for k in runs.files if k.startswith("1|")}
  two = {k[2:]: runs[k] for k in runs.files if k.startswith("2|")}
  assert sorted(one) == sorted(two)
  assert sum(int(one[k].sum()) for k in one if k.startswith("flips|")) > 0
  for k in one:
    if k.startswith(("flips|", "mask|")):
      np.testing.assert_array_equal(two[k], one[k], err_msg=k)
    else:  # gradients summed across devices in another order: the last bits may differ
      np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-5, err_msg=k)
