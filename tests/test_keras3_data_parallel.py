"""Keras 3 on JAX with `keras.distribution.DataParallel` over 2 CPU devices equals 1 device.

Each run is a fresh process (XLA_FLAGS must be set before JAX starts): the
same model, data and schedule, masks and flip counts saved for comparison.
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

devices, out = int(sys.argv[1]), sys.argv[2]
assert len(jax.devices()) == devices, jax.devices()
if devices > 1:
  keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
rng = np.random.RandomState(0)
x, y = rng.randn(192, 8).astype("float32"), rng.randint(0, 3, 192)
keras.utils.set_random_seed(3)
base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="a"),
                         keras.layers.Dense(12, activation="tanh", name="b"),
                         keras.layers.Dense(3, name="c")])
model = ksf.prune_sign_flip(base, criterion="random", scope="global",
                            pruning_schedule=schedules.PolynomialDecay(0.1, 0.3, 2, 30, frequency=3))
model.compile(keras.optimizers.SGD(0.5, momentum=0.9),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0,
          callbacks=[ksf.UpdatePruningStep()])
np.savez(out, **{f"flips|{k}": np.asarray(v) for k, v in ksf.flip_counts(model).items()},
         **{f"mask|{k}": np.asarray(v) for k, v in ksf.masks(model).items()},
         **{f"weight|{i}": np.asarray(w) for i, w in enumerate(model.get_weights())})
'''


def _run(devices, out):
  env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "XLA_FLAGS")}
  env.update(KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
  if devices > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  result = subprocess.run([sys.executable, "-c", SCRIPT, str(devices), str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  return np.load(out)


def test_data_parallel_on_two_devices_equals_one(tmp_path):
  if importlib.util.find_spec("jax") is None:
    pytest.skip("jax is not installed (pip install 'keras_signflip[jax]')")
  one, two = _run(1, tmp_path / "one.npz"), _run(2, tmp_path / "two.npz")
  assert sorted(one.files) == sorted(two.files)
  assert sum(int(one[k].sum()) for k in one.files if k.startswith("flips|")) > 0
  for k in one.files:
    if k.startswith(("flips|", "mask|")):
      np.testing.assert_array_equal(two[k], one[k], err_msg=k)
    else:  # gradients summed across devices in another order: the last bits may differ
      np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-5, err_msg=k)
