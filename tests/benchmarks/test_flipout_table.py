"""FlipOut's CIFAR-10 recipe end to end on tiny synthetic CIFAR-10 batches:
`examples.train --dataset=cifar10` reaches its target, and `benchmarks.flipout_table`
runs, resumes and writes a table whose numbers are the raw runs' (recounted here)."""
import json
import math
import os
import statistics
import subprocess
import sys

import pytest
from scipy import stats

from tests.test_data_cifar import write_batches

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTEROP_THREADS="1")


def _run(args):
  return subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, env=ENV, capture_output=True,
                        text=True, check=False, timeout=600)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("cifar"))
  write_batches(directory)  # 20 training images, 6 test images
  return directory


def test_train_binary_runs_flipouts_recipe_on_cifar10(cifar_dir, tmp_path):
  out = tmp_path / "run"
  result = _run(["examples.train", "--dataset=cifar10", f"--data_dir={cifar_dir}",
                 "--model=lenet5", "--criterion=hybrid", "--power=2", "--scope=global",
                 "--schedule=flipout", "--optimizer=flipout", "--learning_rate=0.1",
                 "--noise_scale=1", "--target_sparsity=0.999", "--epochs=1", "--batch_size=1",
                 "--verbose=0", f"--output_dir={out}"])
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["dataset"] == "cifar10" and "python batches" in summary["data_source"]
  assert summary["steps"] == 20  # 20 examples, batch 1: FlipOut's 10 events and a tail
  assert summary["sparsity"] >= 0.999 - 1e-4


def _rows(directory):
  raw = os.path.join(directory, "raw")
  return [json.load(open(os.path.join(raw, name))) for name in sorted(os.listdir(raw))]


def test_table_runs_resumes_and_recounts(cifar_dir, tmp_path):
  out = str(tmp_path / "table")
  args = ["benchmarks.flipout_table", "--allow_cpu", f"--data_dir={cifar_dir}",
          f"--output_dir={out}", "--models=vgg19", "--width=0.0625", "--epochs=1",
          "--batch_size=1", "--test_examples=6"]
  result = _run(args + ["--methods=flipout", "--seeds=0"])
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  [run] = _rows(out)
  assert run["method"] == "flipout" and run["regime"] == "tf_keras"
  assert run["steps"] == 20 and len(run["event_steps"]) == 10  # FlipOut's 10 events at 99.9%
  assert run["sparsity"] == pytest.approx(0.999, abs=1e-4)
  assert run["test_examples"] == 6 and run["batch"] == 1  # the settings a table must share
  # The other runs, as a GPU machine would leave them (accuracies chosen here); then the
  # grid's command keeps every finished run and trains nothing again.
  for method, seed, accuracy in (("flipout", 1, 0.25), ("magnitude", 0, 0.5),
                                 ("magnitude", 1, 0.0625)):
    with open(os.path.join(out, "raw", f"vgg19__tf_keras__{method}__0.999__{seed}.json"), "w") as f:
      json.dump(dict(run, method=method, seed=seed, test_accuracy=accuracy), f)
  # A run that failed and one that diverged after its last event: listed, never averaged.
  for seed, extra in ((0, {"failed": "ValueError: non-finite weights", "test_accuracy": None}),
                      (1, {"test_loss": float("nan"), "test_accuracy": 0.1})):
    with open(os.path.join(out, "raw", f"vgg19__tf_keras__random__0.999__{seed}.json"), "w") as f:
      json.dump(dict(run, method="random", seed=seed, **extra), f)
  result = _run(args + ["--methods=flipout,magnitude", "--seeds=0,1"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "4 runs (tf_keras), 4 done, 0 for shard" in result.stdout
  acc = {(r["method"], r["seed"]): r["test_accuracy"] for r in _rows(out)}
  table = open(os.path.join(out, "README.md")).read()
  line = next(l for l in table.splitlines() if l.startswith("| vgg19 | tf_keras | 99.9% | flipout"))
  flips = [acc[("flipout", s)] for s in (0, 1)]
  d = [acc[("flipout", s)] - acc[("magnitude", s)] for s in (0, 1)]
  half = stats.t.ppf(0.975, 1) * statistics.stdev(d) / math.sqrt(2)
  mean = statistics.mean(d)
  assert f"{100 * statistics.mean(flips):.2f} ± {100 * statistics.stdev(flips):.2f}" in line
  assert f"{100 * mean:+.2f} [{100 * (mean - half):+.2f}, {100 * (mean + half):+.2f}]" in line
  assert "87.39 ± 0.23" in line and line.endswith("| 2 |")  # FlipOut's published VGG-19 row
  assert "Not FlipOut's budget" in table
  assert "| random |" not in table
  assert "- vgg19 tf_keras 99.9% random seed 0: failed: ValueError: non-finite weights" in table
  assert "- vgg19 tf_keras 99.9% random seed 1: test loss nan at the end" in table
  assert "6 test examples, not 10000" in table and "batch 1, not 128" in table
  # Another budget in the same directory is refused before anything runs.
  result = _run(args + ["--seeds=0,1,2", "--epochs=2"])
  assert result.returncode != 0 and "epochs 1 there, 2 here" in result.stderr
  assert len(_rows(out)) == 6


_FAILING_RUN_SCRIPT = r"""
import json, sys
from absl import flags
from benchmarks import compare, flipout_table as table
flags.FLAGS(["flipout_table.py", "--output_dir=" + sys.argv[1], "--models=vgg19",
             "--methods=flipout,magnitude", "--seeds=0", "--allow_cpu"])
def run_one_shot(method, regime, builder, data, target, seed):
  if method == "flipout":
    raise ValueError("mask update on non-finite weights")
  return {"test_accuracy": 0.5, "test_loss": 1.0, "sparsity": 0.999, "wall_seconds": 1.0}
compare.run_one_shot = run_one_shot
data = {"source": "stub", "input_shape": (32, 32, 3), "classes": 10,
        "train_examples": 50000, "test_examples": 10000}
table.run_grid(data)
rows = sorted(table.results_io.read_raw(sys.argv[1]), key=lambda r: r["method"])
print(json.dumps([dict(r, left_out=table.left_out(r)) for r in rows]))
# A row of the network as built before revisions were recorded (Glorot, "same" padding).
old = {k: v for k, v in rows[1].items() if k != "model_revision"}
table.results_io.write_row(table.raw_path("vgg19", "magnitude", 0.999, 7), dict(old, seed=7))
try:
  table.check_output_dir(table.settings(data))
  print(json.dumps(None))
except table.UsageError as e:
  print(json.dumps(str(e)))
"""


def test_a_failing_run_is_recorded_and_the_grid_goes_on(tmp_path):
  result = subprocess.run([sys.executable, "-c", _FAILING_RUN_SCRIPT, str(tmp_path)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  flip, magnitude = json.loads(result.stdout.strip().splitlines()[-2])
  assert flip["failed"] == "ValueError: mask update on non-finite weights"
  assert flip["test_accuracy"] is None and flip["left_out"].startswith("failed: ")
  # The job after it ran, and counts.
  assert magnitude["test_accuracy"] == 0.5 and magnitude["left_out"] is None
  # Rows record the network's revision; an older network's rows are not mixed in.
  assert flip["model_revision"] == magnitude["model_revision"] == 2
  clash = json.loads(result.stdout.strip().splitlines()[-1])
  assert "vgg19 revision 1 there, 2 here" in clash


_BACKEND_SCRIPT = r"""
import json, os, sys
os.environ["KERAS_BACKEND"] = "torch"  # a user's setting, with no --backend
sys.argv = ["flipout_table.py", "--keras=3"]
from benchmarks import flipout_table as table
out = {"import": [os.environ["KERAS_BACKEND"], table.FLAGS["backend"].default]}
for name, env, argv in (("flag", "torch", ["--keras", "3", "--backend=jax"]),
                        ("unset", None, ["--keras=3"]), ("invalid", "numpy", ["--keras=3"]),
                        ("tf_keras", None, ["--keras=2", "--backend=torch"])):
  os.environ.pop("KERAS_BACKEND", None)
  if env:
    os.environ["KERAS_BACKEND"] = env
  chosen = table._preselect_keras_backend(["flipout_table.py"] + argv)
  out[name] = [chosen, os.environ.get("KERAS_BACKEND")]
print(json.dumps(out))
"""


def test_keras3_backend_follows_the_flag_then_keras_backend_then_jax():
  """--keras=3 without --backend runs on KERAS_BACKEND's backend, which the flag's default
  names too (a mismatch failed after loading the data); tf_keras leaves it alone."""
  env = dict(ENV, PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out == {"import": ["torch", "torch"], "flag": ["jax", "jax"], "unset": ["jax", "jax"],
                 "invalid": ["jax", "jax"], "tf_keras": ["torch", None]}
