"""FlipOut's recipe through the training binary on Keras 3 (JAX), in its own process.

The optimizer itself (noise, coupled decay, resume) is tested per backend in
tests/keras3/test_keras3_noise.py.
"""
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
IDX = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not IDX.exists() or importlib.util.find_spec("jax") is None,
                    reason="needs Debian's dataset-fashion-mnist and jax")
def test_train_binary_keras3_flipout_reaches_the_target(tmp_path):
  """--optimizer=flipout --noise_scale=1 --schedule=flipout: 90% is m = 4 halvings
  (50, 75, 87.5, then 90% capped), all in the first epoch of a 2-epoch run of 4
  steps an epoch (events 1 step apart: whole epochs leave no recovery tail)."""
  out = tmp_path / "run"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TF_USE_LEGACY_KERAS", None)
  result = subprocess.run(
      [sys.executable, "-m", "examples.train", "--keras=3", "--backend=jax",
       "--dataset=fashion_mnist", "--data_source=idx", "--model=lenet_300_100",
       "--criterion=hybrid", "--scope=global", "--schedule=flipout", "--optimizer=flipout",
       "--learning_rate=0.1", "--noise_scale=1", "--target_sparsity=0.9", "--epochs=2",
       "--batch_size=64", "--train_examples=256", "--test_examples=64", "-v", "0",
       f"--output_dir={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  per_epoch = [line.split("sparsity ")[1].split("%")[0]
               for line in result.stdout.splitlines() if line.startswith("epoch ")]
  assert per_epoch == ["90.0", "90.0"]
  # -v 0 (absl's --verbosity) brings Keras' own line per epoch back beside the binary's.
  keras_lines = [line for line in result.stdout.splitlines()
                 if re.match(r"\d+/\d+ - .* - loss: ", line)]
  assert [line.split(" - ")[0] for line in keras_lines] == ["4/4", "4/4"], result.stdout
  summary = json.loads((out / "summary.json").read_text())
  assert summary["backend"] == "jax" and summary["steps"] == 8
  assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)
