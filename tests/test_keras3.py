"""The Keras 3 path on every backend, each in its own process; across paths.

tests/keras3 runs once per backend (TensorFlow, JAX, PyTorch) in a fresh
interpreter with KERAS_BACKEND set (JAX's, the longest, in two parts that
pytest-xdist's workers can share); test_keras3_path.py also writes its
conformance masks, which must equal the tf_keras path's masks for the same
weights and flip counts (computed here, in this tf_keras process).
"""
import functools
import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.keras3 import conformance
from tests import test_conformance

ROOT = pathlib.Path(__file__).resolve().parents[1]
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _env(backend, **extra):
  env = dict(os.environ, KERAS_BACKEND=backend, KSF_KERAS3_BACKEND_TESTS="1",
             TF_CPP_MIN_LOG_LEVEL="2", **extra)
  env.pop("TF_USE_LEGACY_KERAS", None)
  return env


MODELS = ["tests/keras3/test_keras3_layers.py", "tests/keras3/test_keras3_subclassed.py",
          "tests/keras3/test_keras3_units.py"]
PARTS = {"all": ["tests/keras3"], "models": MODELS,
         "others": ["tests/keras3", *(f"--ignore={m}" for m in MODELS)]}
# One process a part (each starts in about 6 s): JAX's, which compiles every model, in
# two, so that no single test holds a worker for much more than a minute.
RUNS = [("jax", "others"), ("jax", "models"), ("tensorflow", "all"), ("torch", "all")]


@functools.lru_cache(maxsize=None)
def _tf_keras_masks():
  return conformance.run(test_conformance.compute_tf_keras)


@pytest.mark.parametrize("backend,part", RUNS, ids=[f"{b}-{p}" for b, p in RUNS])
def test_keras3_path_on_backend(backend, part, tmp_path, jax_cache_env):
  if importlib.util.find_spec(BACKEND_PACKAGES[backend]) is None:
    pytest.skip(f"{backend} is not installed (pip install 'keras_signflip[{backend}]')")
  extra = jax_cache_env if backend == "jax" else {}
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", *PARTS[part], "-p", "no:cacheprovider"],
      cwd=ROOT, env=_env(backend, KSF_CONFORMANCE_OUT=str(tmp_path), **extra),
      capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
  if part == "models":  # tests/keras3/test_keras3_path.py writes the conformance masks
    return
  got = np.load(tmp_path / f"{backend}.npz")
  for case, masks in _tf_keras_masks().items():
    for i, m in enumerate(masks):
      np.testing.assert_array_equal(got[f"{case}|{i}"], m, err_msg=f"{backend} {case}")


def test_keras3_model_without_keras3_support_fails_with_one_line():
  code = (
      "import keras\n"
      "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
      "keras.__version__ = '2.15.0'  # as if Keras 3 support were missing\n"
      "import keras_signflip as ksf\n"
      "ksf.prune_sign_flip(model)\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env("tensorflow"),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("ImportError: keras_signflip: Keras 3 models need Keras >= 3.5")
  assert "pip install 'keras_signflip[keras3]'" in last and "2.15.0" in last


def test_tf_keras_path_works_without_keras3():
  code = (
      "import sys; sys.modules['keras'] = None  # Keras 3 not installed\n"
      "import numpy as np, tf_keras as keras, keras_signflip as ksf\n"
      "base = keras.Sequential([keras.layers.Dense(4, input_shape=(3,)), keras.layers.Dense(2)])\n"
      "m = ksf.prune_sign_flip(base, criterion='hybrid', "
      "pruning_schedule=ksf.tf_keras.schedules.GeometricSparsity(0.5, 1))\n"
      "m.compile('sgd', 'mse')\n"
      "m.fit(np.ones((8, 3)), np.ones((8, 2)), verbose=0, callbacks=[ksf.UpdatePruningStep()])\n"
      "print('sparsity', ksf.sparsity_report(m)['overall'])\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "sparsity 0.5" in result.stdout


IDX = pathlib.Path("/usr/share/datasets/fashion-mnist")


def _train(backend, out, *flags):
  cmd = [sys.executable, "-m", "examples.train", "--keras=3", f"--backend={backend}",
         "--dataset=fashion_mnist", "--data_source=idx", "--model=lenet_300_100",
         "--criterion=hybrid", "--scope=global", "--target_sparsity=0.8", "--frequency=5",
         "--train_examples=600", "--test_examples=200", "--verbose=0",
         f"--output_dir={out}", *flags]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TF_USE_LEGACY_KERAS", None)
  result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  import json  # pylint: disable=g-import-not-at-top
  return json.loads((out / "summary.json").read_text()), result.stdout


@pytest.mark.skipif(not IDX.exists() or importlib.util.find_spec("torch") is None,
                    reason="needs Debian's dataset-fashion-mnist and torch")
def test_train_binary_keras3_resume_equals_uninterrupted(tmp_path):
  # --end_step fixes the schedule: by default it spans 2/3 of --epochs.
  flags = ("--end_step=15", "--optimizer=momentum", "--learning_rate=0.2")
  whole, _ = _train("torch", tmp_path / "whole", "--epochs=2", *flags)
  # A run planned for 2 epochs (--schedule_epochs), stopped after 1, extended by --resume.
  _train("torch", tmp_path / "split", "--epochs=1", "--schedule_epochs=2", *flags)
  resumed, stdout = _train("torch", tmp_path / "split", "--epochs=2", "--resume", *flags)
  assert "Resumed from" in stdout
  assert whole["backend"] == "torch" and whole["steps"] == resumed["steps"] == 20
  for key in ("sparsity", "flips", "flips_per_layer", "test_accuracy"):
    assert whole[key] == resumed[key], key
  assert abs(whole["sparsity"] - 0.8) < 0.01 and whole["flips"] > 0


@pytest.mark.skipif(not IDX.exists() or importlib.util.find_spec("jax") is None,
                    reason="needs Debian's dataset-fashion-mnist and jax")
def test_train_binary_keras3_jax_exports(tmp_path):
  summary, _ = _train("jax", tmp_path / "run", "--epochs=1",
                      f"--export_dir={tmp_path / 'export'}")
  assert summary["backend"] == "jax" and summary["test_accuracy"] > 0.3
  assert (tmp_path / "export" / "model.keras").exists()
  assert (tmp_path / "export" / "saved_model" / "saved_model.pb").exists()
