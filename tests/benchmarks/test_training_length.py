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


def test_jobs_cover_every_arm_target_and_seed_once_most_informative_first(study):
  jobs = study.jobs([0, 1, 2])
  assert len(jobs) == len(set(jobs)) == len(study.BLOCKS) * 3 * len(study.TARGETS) * len(study.ARMS)
  assert jobs[0][:2] == ("lenet_300_100", 30)
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
  assert lines[0] == ("- **m: the flip term is ahead more often after 30 epochs than after 10 "
                      "— provisional, seeds still due.** The flip term (both ablations, all "
                      "targets) by training length: 10 epochs: ahead in 0 of 3, behind in 1; "
                      "30 epochs: ahead in 2 of 2, behind in 0.")
  no_noise = next(line for line in lines if "hybrid − magnitude" in line)
  assert "99.5%: 10 ep behind -2.00 [-3.00, -1.00], 30 ep ahead +2.00 [+1.00, +3.00]" in no_noise
  assert "99.9%: 10 ep within noise +0.00 [-1.00, +1.00] (provisional, n=2 of 3), 30 ep not " \
         "measured yet" in no_noise
  # A near miss at the study's seeds waits for two more; an extended cell counts to 5.
  near = {"mean": 0.01, "low": -0.002, "high": 0.022, "n": 3}
  extended = {("m", 0.995, 10): dict(none, flips_no_noise=near),
              ("m", 0.998, 10): dict(none, flips_no_noise=dict(near, n=4)),
              ("m", 0.999, 10): dict(none, flips_no_noise=dict(near, n=5))}
  line = next(x for x in study.answer(extended, seeds=3) if "hybrid − magnitude" in x)
  assert line.count("(provisional, n=3 of 5)") == 1 and line.count("(provisional, n=4 of 5)") == 1
  assert "99.9%: 10 ep within noise +1.00 [-0.20, +2.20]." in line
  assert "99.8%" not in no_noise  # a target without any row is left out, not invented
  # The trend in words compares the longest length with the shortest, whichever way it goes.
  fewer = {10: {"ahead": 1, "behind": 0, "within noise": 5},
           30: {"ahead": 2, "behind": 0, "within noise": 4},
           100: {"ahead": 0, "behind": 0, "within noise": 6}}
  assert study.direction(fewer) == ("longer training does not make the flip term pay more "
                                    "(100 epochs against 10)")
  assert study.direction({10: fewer[10], 30: fewer[30]}).startswith("the flip term is ahead more")
  assert study.direction({30: fewer[30]}) == "measured at 30 epochs only"
  done = {key: {k: p and dict(p, n=3) for k, p in v.items()} for key, v in eff.items()}
  assert "provisional" not in study.answer(done, seeds=3)[0]


def test_near_misses_get_two_more_seeds_of_every_arm(study):
  near = {"mean": 0.01, "low": -0.002, "high": 0.022, "n": 3}  # 0.002 < 0.024 / 4
  wide = {"mean": 0.0, "low": -0.05, "high": 0.05, "n": 3}
  clear = {"mean": 0.02, "low": 0.01, "high": 0.03, "n": 3}
  assert study.near_miss(near) and not study.near_miss(wide) and not study.near_miss(clear)
  assert not study.near_miss(dict(near, low=-0.02, high=0.04))  # 0.02 = 0.06 / 3 > 0.06 / 4
  none = dict(flips_no_noise=None, flips_with_noise=None, recent_flips=None)
  eff = {("m", 0.995, 30): dict(none, flips_no_noise=wide, recent_flips=near),
         ("m", 0.999, 30): dict(none, flips_no_noise=wide, flips_with_noise=clear),
         ("m", 0.998, 100): dict(none, flips_with_noise=dict(near, n=2))}  # seeds missing
  jobs = study.extra_jobs(eff, [0, 1, 2])
  assert sorted(jobs) == sorted(("m", 30, arm, 0.995, seed) for seed in (3, 4)
                                for arm in study.ARMS)


_REPLAN_SCRIPT = r"""
import json, os, sys
from absl import flags
from benchmarks import compare, training_length as study
flags.FLAGS([sys.argv[0], "--length_dir=" + sys.argv[1], "--grid_dir=" + sys.argv[1] + "/grid"])
base = [("m", 30, "hybrid", 0.999, 0), ("m", 30, "magnitude", 0.999, 0)]
late = ("m", 30, "hybrid", 0.999, 3)  # a near miss, known once the base jobs are in
study.jobs = lambda seeds: list(base)
study.load_rows = lambda *dirs: []
study.effects = lambda rows: {}
study.extra_jobs = lambda eff, seeds: (
    [late] if all(os.path.exists(study._raw_path(*j)) for j in base) else [])
compare._load_data = lambda: {"input_shape": (4,), "classes": 2, "train_examples": 8}
ran = []
def run_one_shot(method, regime, builder, data, target, seed):
  ran.append([method, seed, flags.FLAGS.epochs])
  return {"test_accuracy": 0.5}
compare.run_one_shot = run_one_shot
study.run(0, 1, [0])
print(json.dumps(ran))
"""


def test_a_shard_plans_again_until_no_job_is_left(tmp_path):
  """Near misses known only once a cell's seeds are in join the running shard."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=root)
  out = subprocess.run([sys.executable, "-c", _REPLAN_SCRIPT, str(tmp_path)], check=True,
                       cwd=root, env=env, capture_output=True, text=True).stdout
  assert json.loads(out.strip().splitlines()[-1]) == [
      ["hybrid", 0, 30], ["magnitude", 0, 30], ["hybrid", 3, 30]]
  assert "3 jobs, 3 done, 0 for shard 0/1" in out
  for seed in (0, 3):
    path = tmp_path / "e30" / "raw" / f"m__flipout__hybrid__0.999__{seed}.json"
    assert json.loads(path.read_text())["seed"] == seed
