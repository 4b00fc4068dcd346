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


def _rows(accuracy):
  """Raw rows from {(model, epochs, method, target, seed): test accuracy}."""
  return [{"model": m, "regime": "flipout", "method": meth, "target": t, "seed": s,
           "epochs": e, "test_accuracy": a, "sparsity": t, "steps": 100 * e}
          for (m, e, meth, t, s), a in accuracy.items()]


def test_answer_states_the_trend_from_a_paired_contrast_between_lengths(study, monkeypatch):
  monkeypatch.setattr(study, "BLOCKS", (("m", 10), ("m", 30)))
  rng = np.random.RandomState(3)
  accuracy = {}
  for e in (10, 30):
    for t in study.TARGETS:
      for s in range(5):
        for arm in study.ARMS:
          accuracy[("m", e, arm, t, s)] = 0.7 + 0.01 * rng.randn()
  for s in range(5):  # at 99.9% the no-noise flip effect grows by 5 points at 30 epochs
    accuracy[("m", 30, "hybrid", 0.999, s)] = accuracy[("m", 30, "magnitude", 0.999, s)] + (
        accuracy[("m", 10, "hybrid", 0.999, s)] - accuracy[("m", 10, "magnitude", 0.999, s)]
        + 0.05 + 0.002 * rng.randn())
  rows = _rows(accuracy)
  counts = study.length_change(rows, "m", 10, 30)
  # NumPy recount of every contrast: (a - b at 30) - (a - b at 10), paired by seed
  expected = {"larger": 0, "smaller": 0, "no detectable change": 0}
  for t in study.TARGETS:
    for a, b in (("hybrid", "magnitude"), ("flipout", "magnitude_noise")):
      c = np.array([(accuracy[("m", 30, a, t, s)] - accuracy[("m", 30, b, t, s)])
                    - (accuracy[("m", 10, a, t, s)] - accuracy[("m", 10, b, t, s)])
                    for s in range(5)])
      half = 2.7764451051977987 * c.std(ddof=1) / math.sqrt(5)
      expected["larger" if c.mean() - half > 0 else "smaller" if c.mean() + half < 0
               else "no detectable change"] += 1
  assert counts == expected and counts["larger"] >= 1
  line = study.answer(rows)[0]
  assert line.startswith(f"- **m: {study.direction(counts, 10, 30)}.** The flip term")
  assert "provisional" not in line  # every planned run is in
  assert study.direction({"larger": 0, "smaller": 0, "no detectable change": 6}, 10, 100) == (
      "longer training makes no detectable difference to the flip term (100 epochs against "
      "10, paired by seed: its effect larger in 0 of 6 comparisons, smaller in 0)")
  assert study.direction({"larger": 0, "smaller": 2, "no detectable change": 4}, 10, 100
                         ).startswith("the flip term loses with longer training")
  assert study.direction({"larger": 1, "smaller": 1, "no detectable change": 4}, 10, 100
                         ).startswith("mixed")
  # A planned run missing (here a whole seed at 30 epochs) marks the model provisional,
  # and each effect short of its seeds says so.
  partial = [r for r in rows if not (r["epochs"] == 30 and r["seed"] == 4)]
  lines = study.answer(partial)
  assert "— provisional, 15 of its 5-seed runs still due.**" in lines[0]
  no_noise = next(x for x in lines if "hybrid − magnitude" in x)
  assert no_noise.count("(provisional, n=4 of 5)") == 3
  # Nothing at the longest length yet: no trend is claimed.
  early = [r for r in rows if r["epochs"] == 10]
  assert study.answer(early)[0].startswith("- **m: 30 epochs against 10: no paired seeds yet —")


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
