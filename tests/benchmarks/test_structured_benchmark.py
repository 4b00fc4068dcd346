"""benchmarks/structured.py: the matched unstructured sparsity against a hand count, the
units it removes against kept_count, and the report's paired differences against a
NumPy recount, from rows written the way the binary writes them."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACC = {"units": [0.80, 0.82, 0.81], "weights": [0.83, 0.82, 0.85]}
# benchmarks.structured defines absl flags (through benchmarks.compare) that clash with
# the examples' in a shared test process: its answers are computed in a fresh one.
_SCRIPT = """
import json, sys
from benchmarks import structured as bench
acc = json.loads(sys.argv[1])
model = bench.models_lib.get("lenet5")(bench.INPUT_SHAPE, bench.CLASSES)
small = bench.remove_units(model, 0.9, seed=0)
rows = [{"part": "accuracy", "model": "lenet_300_100", "method": m, "fraction": 0.9,
         "seed": s, "test_accuracy": acc[m][s], "kernel_weights": 1234,
         "target_sparsity": 0.95, "masked_test_accuracy": acc[m][s], "epochs": 1,
         "train_examples": 100, "source": "test"}
        for m in acc for s in range(3)]
print(json.dumps({
    "matched": bench.matched_sparsity("lenet_300_100", 0.75),
    "units": [l.get_weights()[0].shape[-1] for l in small.layers
              if type(l).__name__ in ("Dense", "Conv2D")],
    "report": bench.report(rows)}))
"""


@pytest.fixture(scope="module")
def bench():
  env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
  out = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(ACC)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_matched_sparsity_keeps_the_shrunk_kernel_weights(bench):
  # LeNet-300-100 at 75% of units removed: 75 and 25 hidden units kept, 10 outputs.
  kept = 784 * 75 + 75 * 25 + 25 * 10
  total = 784 * 300 + 300 * 100 + 100 * 10
  assert bench["matched"] == pytest.approx(1 - kept / total)


def test_remove_units_keeps_kept_count_units_and_the_output(bench):
  assert bench["units"] == [max(round(n * 0.1), 1) for n in (6, 16, 120, 84)] + [10]


def test_report_pairs_units_with_weights_by_seed(bench):
  acc = ACC
  text = bench["report"]
  d = np.subtract(acc["units"], acc["weights"])
  half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
  want = f"{100 * d.mean():+.2f} [{100 * (d.mean() - half):+.2f}, {100 * (d.mean() + half):+.2f}]"
  assert "equals the masked model's in 3 of 3" in text
  assert want in text and "| lenet_300_100 | 90% | 1,234 | 95.00% | 81.00% | 83.33% |" in text
