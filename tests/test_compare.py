"""benchmarks/compare.py --quick on a few hundred examples: report, raw, plots agree."""
import json
import os
import re
import subprocess
import sys

import pytest

from keras_signflip import data as data_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(not os.path.exists(os.path.join(data_lib.DEFAULT_IDX_DIR,
                                                    "train-images-idx3-ubyte.gz")),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_quick_grid_report_matches_raw_results(tmp_path):
  out, report = tmp_path / "results", tmp_path / "BENCHMARKS.md"
  cmd = [sys.executable, "-m", "benchmarks.compare", "--quick", "--train_examples=300",
         "--test_examples=200", "--overhead=false", f"--output_dir={out}", f"--report={report}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
  raw = [json.loads((out / "raw" / f).read_text()) for f in sorted(os.listdir(out / "raw"))]
  methods = {r["method"] for r in raw}
  assert methods == {"dense", "tfmot", "global_magnitude", "hybrid", "sign_flip", "lfss",
                     "random", "lottery_magnitude", "lottery_hybrid", "early_bird"}
  text = report.read_text()
  assert "## Answer" in text and "python -m benchmarks.compare --quick" in text
  rows = [line for line in text.splitlines() if line.startswith("| lenet_300_100 |")]
  assert len(rows) == len({(r["method"], r["target"]) for r in raw})
  for r in raw:  # every raw run's accuracy appears in its table row (n = 1)
    target = f"{100 * r['target']:g}%"
    row = next(x for x in rows if f"| {r['method']} | {target} |" in x)
    assert f"{100 * r['test_accuracy']:.2f} ± 0.00" in row
    assert re.search(rf"\| {r['steps']:.0f} \|", row)
    if r["method"] not in ("dense", "sign_flip"):
      assert r["sparsity"] >= r["target"] - 0.005
  for png in ("lenet_300_100_accuracy.png", "lenet_300_100_flips.png"):
    assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert png in text
  # A second run redoes nothing and regenerates the same table.
  before = {f: os.path.getmtime(out / "raw" / f) for f in os.listdir(out / "raw")}
  subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
  assert before == {f: os.path.getmtime(out / "raw" / f) for f in os.listdir(out / "raw")}
  assert [l for l in report.read_text().splitlines() if l.startswith("|")] == \
      [l for l in text.splitlines() if l.startswith("|")]
