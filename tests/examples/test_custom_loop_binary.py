"""examples/custom_loop.py runs on both families (Keras 3 on JAX here) and prints its epochs."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("keras_version", ["2", "3"])
def test_custom_loop_example_runs(keras_version):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  if keras_version == "3":
    env.pop("TF_USE_LEGACY_KERAS", None)
    env.setdefault("KERAS_BACKEND", "jax")
  result = subprocess.run(
      [sys.executable, "examples/custom_loop.py", f"--keras={keras_version}", "--epochs=2",
       "--examples=64"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  lines = [l for l in result.stdout.splitlines() if l.startswith("epoch ")]
  assert len(lines) == 2, result.stdout
  sparsity = float(re.search(r"sparsity ([0-9.]+)", lines[-1]).group(1))
  assert abs(sparsity - 0.8) < 0.01, lines  # --sparsity's default, reached mid-training
