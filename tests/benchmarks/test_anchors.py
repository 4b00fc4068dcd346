"""benchmarks/anchors.py: the verdict rule, and a tiny run whose figures agree."""
import json
import os
import subprocess
import sys

import pytest

from keras_signflip import data as data_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
HAVE_DATA = os.path.exists(os.path.join(data_lib.DEFAULT_IDX_DIR, "train-images-idx3-ubyte.gz"))

_VERDICTS = r"""
import sys
from benchmarks import anchors
anchors.FLAGS(["anchors"])
v = anchors.verdict
print(v("variational", "lenet_300_100", 2.5, 60.0))   # within 1 point, above half of 68x
print(v("variational", "lenet_300_100", 3.1, 60.0))   # error too high
print(v("variational", "lenet5_caffe", 0.8, 100.0))   # compression under 140x
print(v("l0", "lenet_300_100", 2.0, 1.0))             # no compression anchor
print(v("l0", "lenet5", 2.0, 1.0))                    # no anchor at all
sys.stdout.flush()
# Then the command line, in this process: a pair without a recipe is refused (status 2).
from absl import app
sys.argv = ["anchors", "--runs=magnitude:lenet5"]
app.run(anchors.main)
"""


def test_verdicts_flag_runs_far_from_the_papers_and_bad_runs_are_refused():
  out = subprocess.run([sys.executable, "-c", _VERDICTS], cwd=ROOT, env=ENV, text=True,
                       capture_output=True, timeout=300)
  assert out.returncode == 2 and "bad --runs" in out.stderr, out.stderr[-2000:]
  lines = out.stdout.strip().splitlines()[-5:]
  assert lines[0] == "near"
  assert lines[1].startswith("FAR: error 3.10% > 1.92%")
  assert lines[2].startswith("FAR: compression 100x < 280x / 2")
  assert lines[3] == "near" and lines[4] == "-"


@pytest.mark.skipif(not HAVE_DATA, reason="Debian's dataset-fashion-mnist is not installed")
def test_tiny_run_reports_error_and_compression(tmp_path):
  path = tmp_path / "anchors.json"
  cmd = [sys.executable, "-m", "benchmarks.anchors", "--dataset=fashion_mnist", "--epochs=1",
         "--train_examples=256", "--runs=variational:lenet_300_100", f"--json={path}",
         f"--output_dir={tmp_path / 'out'}"]
  out = subprocess.run(cmd, cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  (r,) = json.loads(path.read_text())
  assert r["train_examples"] == 256 and r["verdict"] == "-"  # no anchor off MNIST
  assert r["compression"] == pytest.approx(1 / (1 - r["sparsity"]))
  assert 0 <= r["error"] <= 100
  assert f"| variational | lenet_300_100 | {r['error']:.2f} |" in out.stdout
  saved = tmp_path / "out" / "fashion_mnist_variational_lenet_300_100_e1_n256_seed0_r2.json"
  assert json.loads(saved.read_text()) == r
  again = subprocess.run(cmd, cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=600)
  assert again.returncode == 0 and "finished before" in again.stdout  # not rerun
  assert "Epoch 1/1" not in again.stdout + again.stderr


@pytest.mark.skipif(not HAVE_DATA, reason="Debian's dataset-fashion-mnist is not installed")
def test_interrupted_run_resumes_from_its_last_epoch(tmp_path):
  cmd = [sys.executable, "-u", "-m", "benchmarks.anchors", "--dataset=fashion_mnist",
         "--epochs=3", "--train_examples=200", "--runs=l0:lenet_300_100",
         f"--output_dir={tmp_path}"]
  first = subprocess.Popen(cmd, cwd=ROOT, env=ENV, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
  for line in first.stdout:  # killed as its second epoch starts: the first is backed up
    if line.startswith("Epoch 2/3"):
      first.kill()
      break
  first.wait(timeout=60)
  assert not list(tmp_path.glob("*.json"))  # nothing finished
  second = subprocess.run(cmd, cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=600)
  assert second.returncode == 0, second.stderr[-2000:]
  log = second.stdout + second.stderr
  assert "Epoch 2/3" in log and "Epoch 1/3" not in log  # resumed, not restarted
  (done,) = tmp_path.glob("*.json")
  assert json.loads(done.read_text())["epochs"] == 3
