"""benchmarks/training_length.py: its job list and its paired effects, from raw rows
written the way the study writes them, against a NumPy recount."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def study():
  from benchmarks import length_analysis as training_length  # pylint: disable=g-import-not-at-top
  return training_length


def test_jobs_cover_every_arm_target_and_seed_once_three_seeds_everywhere_first(study):
  jobs = study.jobs()
  assert study.SEEDS == (0, 1, 2, 3, 4)  # every cell gets every seed, fixed in advance
  assert len(jobs) == len(set(jobs)) == len(study.BLOCKS) * 5 * len(study.TARGETS) * len(study.ARMS)
  assert jobs[0][:2] == ("lenet_300_100", 30)
  first = [j for j in jobs if j[4] < study.FIRST_PASS]
  assert jobs[:len(first)] == first  # seeds 0-2 of every block before any seed 3
  assert {(j[0], j[1]) for j in first} == set(study.BLOCKS)
  # a seed's arms at one target run next to each other, so a partial study is paired
  assert {j[2] for j in jobs[:len(study.ARMS)]} == set(study.ARMS)
  # shards split by a hash of each job: together they are the whole list, apart disjoint
  from benchmarks import results_io  # pylint: disable=g-import-not-at-top
  shards = [results_io.shard_jobs(jobs, k, 2, lambda j: False) for k in range(2)]
  assert not set(shards[0]) & set(shards[1]) and len(shards[0]) + len(shards[1]) == len(jobs)


def _write(directory, model, method, target, seed, accuracy, epochs):
  os.makedirs(os.path.join(directory, "raw"), exist_ok=True)
  row = {"model": model, "regime": "flipout", "method": method, "target": target, "seed": seed,
         "test_accuracy": accuracy, "sparsity": target, "steps": 100 * epochs, "epochs": epochs,
         "train_examples": 1280, "batch": 128, "event_steps": [50 * epochs]}
  with open(os.path.join(directory, "raw", f"{model}__flipout__{method}__{target:g}__{seed}.json"),
            "w") as f:
    json.dump(row, f)


def test_effects_and_report_from_raw_rows(study, tmp_path):
  dirs = str(tmp_path / "length"), str(tmp_path / "grid")
  rng = np.random.RandomState(0)
  accuracy = {}
  for epochs in (10, 30):
    for seed in range(3):
      for method in study.ARMS:
        accuracy[(epochs, method, seed)] = a = float(rng.uniform(0.5, 0.9))
        _write(study.output_dir(epochs, *dirs), "lenet_300_100", method, 0.999, seed, a, epochs)
  # a row of another study (a different target) is left out
  _write(study.output_dir(30, *dirs), "lenet_300_100", "hybrid", 0.9, 0, 0.1, 30)
  rows = study.load_rows(*dirs)
  assert len(rows) == 2 * 3 * len(study.ARMS)
  effects = study.report(rows, str(tmp_path / "length" / "README.md"), "the test's rows")
  for epochs in (10, 30):
    d = np.array([accuracy[(epochs, "flipout", s)] - accuracy[(epochs, "magnitude_noise", s)]
                  for s in range(3)])
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)
    got = effects[("lenet_300_100", 0.999, epochs)]["flips_with_noise"]
    np.testing.assert_allclose([got["mean"], got["low"], got["high"]],
                               [d.mean(), d.mean() - half, d.mean() + half], rtol=1e-9)
  text = (tmp_path / "length" / "README.md").read_text()
  assert f"{100 * d.mean():+.2f}" in text
  assert (tmp_path / "length" / "lenet_300_100_flip_term_vs_epochs.png").stat().st_size > 0


def test_answer_counts_where_the_flip_term_helps_by_length(study):
  ahead, behind, noise = ({"mean": m, "low": lo, "high": hi, "n": n}
                          for m, lo, hi, n in ((0.02, 0.01, 0.03, 3), (-0.02, -0.03, -0.01, 3),
                                               (0.0, -0.01, 0.01, 2)))
  none = dict(flips_no_noise=None, flips_with_noise=None, recent_flips=None)
  eff = {("m", 0.995, 10): dict(none, flips_no_noise=behind, flips_with_noise=noise),
         ("m", 0.999, 10): dict(none, flips_no_noise=noise),
         ("m", 0.995, 30): dict(none, flips_no_noise=ahead, flips_with_noise=ahead),
         ("m", 0.999, 30): dict(none, recent_flips=ahead)}
  assert study.trend(eff, "m") == {10: {"ahead": 0, "behind": 1, "within noise": 2},
                                   30: {"ahead": 2, "behind": 0, "within noise": 0}}
  lines = study.answer(eff, seeds=3)
  assert lines[0] == ("- **m: the flip term does better after 30 epochs than after 10 "
                      "— provisional, seeds still due.** The flip term (both ablations, all "
                      "targets) by training length: 10 epochs: ahead in 0 of 3, behind in 1; "
                      "30 epochs: ahead in 2 of 2, behind in 0.")
  no_noise = next(line for line in lines if "hybrid − magnitude" in line)
  assert "99.5%: 10 ep behind -2.00 [-3.00, -1.00], 30 ep ahead +2.00 [+1.00, +3.00]" in no_noise
  assert "99.9%: 10 ep within noise +0.00 [-1.00, +1.00] (provisional, n=2 of 3), 30 ep not " \
         "measured yet" in no_noise
  # An effect short of the study's seeds is provisional until it has them all.
  line = next(x for x in study.answer(eff, seeds=5) if "hybrid − magnitude" in x)
  assert line.count("(provisional, n=3 of 5)") == 2 and "n=2 of 5" in line
  assert "99.8%" not in no_noise  # a target without any row is left out, not invented
  # The trend in words: net share (ahead − behind) at the longest length against the
  # shortest, whichever way it goes.
  counts = {10: {"ahead": 1, "behind": 0, "within noise": 5},
            30: {"ahead": 2, "behind": 0, "within noise": 4},
            100: {"ahead": 0, "behind": 0, "within noise": 6}}
  assert study.direction(counts) == "the flip term does worse after 100 epochs than after 10"
  assert study.direction({10: counts[10], 30: counts[30]}) == (
      "the flip term does better after 30 epochs than after 10")
  assert study.direction({10: counts[100], 30: {"ahead": 1, "behind": 1, "within noise": 4}}) == (
      "longer training does not change where the flip term pays (30 epochs against 10)")
  assert study.direction({10: counts[100], 30: {"ahead": 0, "behind": 1, "within noise": 5}}) == (
      "the flip term does worse after 30 epochs than after 10")  # behind counts too
  assert study.direction({30: counts[30]}) == "measured at 30 epochs only"
  done = {key: {k: p and dict(p, n=3) for k, p in v.items()} for key, v in eff.items()}
  assert "provisional" not in study.answer(done, seeds=3)[0]


_RUN_SCRIPT = r"""
import json, os, sys
from absl import flags
from benchmarks import compare, results_io, training_length as study
sys.argv = ["training_length.py", "--length_dir=" + sys.argv[1],
            "--grid_dir=" + sys.argv[1] + "/grid"]
flags.FLAGS(sys.argv)
jobs = [("m", 10, "hybrid", 0.999, 3), ("m", 30, "hybrid", 0.999, 0),
        ("m", 30, "magnitude", 0.999, 0)]
results_io.write_json(study._raw_path(*jobs[2]), {"seed": 0})  # finished before: kept
study.jobs = lambda seeds: list(jobs)
compare._load_data = lambda: {"input_shape": (4,), "classes": 2, "train_examples": 8}
ran = []
def run_one_shot(method, regime, builder, data, target, seed):
  ran.append([method, seed, flags.FLAGS.epochs])
  return {"test_accuracy": 0.5}
compare.run_one_shot = run_one_shot
study.run(0, 1, [0, 3])
print(json.dumps(ran))
"""


def test_run_writes_each_job_once_where_its_length_lives_and_logs_into_the_grid(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=root)
  out = subprocess.run([sys.executable, "-c", _RUN_SCRIPT, str(tmp_path)], check=True,
                       cwd=root, env=env, capture_output=True, text=True).stdout
  assert json.loads(out.strip().splitlines()[-1]) == [["hybrid", 3, 10], ["hybrid", 0, 30]]
  assert "3 jobs, 1 done, 2 for shard 0/1" in out
  ten = tmp_path / "grid" / "raw" / "m__flipout__hybrid__0.999__3.json"
  assert json.loads(ten.read_text())["epochs"] == 10  # the grid's directory holds 10 epochs
  assert json.loads((tmp_path / "e30" / "raw" / "m__flipout__magnitude__0.999__0.json")
                    .read_text()) == {"seed": 0}
  logged = json.loads((tmp_path / "grid" / "commands.json").read_text())
  assert logged == [f"python -m benchmarks.training_length --length_dir={tmp_path} "
                    f"--grid_dir={tmp_path}/grid"]
