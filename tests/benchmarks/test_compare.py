"""benchmarks/compare.py: the paired statistics against NumPy, and a tiny grid whose
report, raw results and plots agree."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_signflip import data as data_lib
from keras_signflip import flipout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_DATA = os.path.exists(os.path.join(data_lib.DEFAULT_IDX_DIR, "train-images-idx3-ubyte.gz"))


@pytest.fixture(scope="module")
def compare():
  from benchmarks import analysis  # pylint: disable=g-import-not-at-top
  return analysis


def test_paired_interval_is_the_t_interval(compare):
  a, b = {0: 0.90, 1: 0.80, 2: 0.85, 7: 0.5}, {0: 0.88, 1: 0.79, 2: 0.80}
  d = np.array([0.02, 0.01, 0.05])  # seed 7 has no partner
  half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 df)
  p = compare.paired(a, b)
  assert p["n"] == 3
  np.testing.assert_allclose([p["mean"], p["low"], p["high"]],
                             [d.mean(), d.mean() - half, d.mean() + half], rtol=1e-9)
  assert compare.paired({0: 1.0}, {0: 0.5}) is None  # one pair: no interval


def _row(method, target, seed, acc, regime="flipout"):
  return {"model": "m", "regime": regime, "method": method, "target": target, "seed": seed,
          "test_accuracy": acc, "sparsity": target, "steps": 100}


def test_answer_says_where_the_flip_term_helps_and_where_not(compare):
  rows = [_row("dense", 0.0, s, 0.9) for s in range(3)]
  for s, noise in enumerate([0.0, 0.002, -0.002]):
    for t in (0.9, 0.999):
      rows += [_row("magnitude", t, s, 0.80 + noise), _row("magnitude_noise", t, s, 0.80 + noise)]
      gain = 0.05 if t == 0.999 else 0.0  # helps at 99.9% only, by 5 points
      rows += [_row("hybrid", t, s, 0.80 + gain + 0.01 * s * (t == 0.9)),
               _row("flipout", t, s, 0.80 + gain + noise * 2)]
  agg = compare.aggregate(rows)
  assert agg[("m", "flipout", 0.9, "dense")]["n"] == 3  # dense appears at every target
  effects = compare.flip_term(agg)
  by_target = {e["target"]: e for e in effects}
  assert compare._excludes_zero(by_target[0.999]["flips_with_noise"])
  assert not compare._excludes_zero(by_target[0.9]["flips_no_noise"])
  text = compare.answer(effects)
  assert "helps at 99.9%" in text and "within noise at 90%" in text
  assert text.startswith("Yes, in part") and "in 2 of 2 paired comparisons" in text


def test_best_without_flips_is_ranked_on_the_seeds_every_rival_has(compare):
  """magnitude has seeds 0-4 (lucky on 3 and 4), lottery_matched 0-2 only: ranked on the
  common seeds 0-2, lottery_matched is the better; on all of each, magnitude would be."""
  rows = [_row("flipout", 0.999, s, 0.60) for s in range(5)]
  rows += [_row("magnitude", 0.999, s, acc) for s, acc in enumerate([0.60, 0.60, 0.60, 0.99, 0.99])]
  rows += [_row("lottery_matched", 0.999, s, 0.70) for s in range(3)]
  (effect,) = compare.flip_term(compare.aggregate(rows))
  assert effect["best_no_flips"] == "lottery_matched"
  assert effect["flipout_vs_best"]["n"] == 3
  assert effect["flipout_vs_best"]["mean"] == pytest.approx(-0.10)


def test_lottery_ticket_is_the_round_at_the_target(compare):
  rows = [{"mode": "rewind", "round": r, "steps": 10, "test_accuracy": 0.5 + r / 10,
           "weights_remaining_pct": 100 * keep} for r, keep in enumerate([1.0, 0.5, 0.1, 0.02])]
  ticket = compare.ticket_at(rows, 0.9)
  assert ticket["round"] == 2 and ticket["steps"] == 30 and ticket["sparsity"] == pytest.approx(0.9)
  assert compare.ticket_at(rows, 0.99) is None


@pytest.mark.parametrize("target", [0.9, 0.98, 0.999])
def test_training_flops_sum_the_kept_fraction_over_steps(compare, target):
  epochs, steps_per_epoch = 10, 43
  events = flipout.event_steps(target, epochs, steps_per_epoch)
  row = {"method": "flipout", "target": target, "steps": epochs * steps_per_epoch, "epochs": epochs,
         "train_examples": 43 * 128 - 5, "batch": 128, "event_steps": events}
  n = 10**6  # kept weights out of n, step by step, with FlipOut's halving
  kept = [max(flipout.kept(n, sum(e < step for e in events)), round(n * (1 - target))) / n
          for step in range(1, row["steps"] + 1)]
  assert compare.training_flops(row) == pytest.approx(np.mean(kept), abs=1e-6)
  sparse = dict(row, method="rigl", event_steps=[])
  assert compare.training_flops(sparse) == pytest.approx(1 - target)
  assert compare.training_flops(dict(row, method="dense", target=0)) == 1.0


def test_lottery_flops_count_every_round_at_its_density(compare):
  row = {"method": "lottery", "target": 0.9, "round": 3, "steps": 4 * 100, "epochs": 1,
         "train_examples": 100 * 64, "batch": 64}
  assert compare.training_flops(row) == pytest.approx((1 + 0.5 + 0.25 + 0.1) * 100 / 100)
  matched = dict(row, method="lottery_matched", steps=100)
  assert compare.training_flops(matched) == pytest.approx((1 + 0.5 + 0.25 + 0.1) / 4)


@pytest.mark.skipif(not HAVE_DATA, reason="Debian's dataset-fashion-mnist is not installed")
def test_tiny_grid_report_matches_raw_results(tmp_path):
  out, report = tmp_path / "results", tmp_path / "BENCHMARKS.md"
  cmd = [sys.executable, "-m", "benchmarks.compare", "--quick", "--train_examples=640",
         "--test_examples=200", "--epochs=1", "--sparsities=0.9",
         "--methods=magnitude,magnitude_noise,hybrid,flipout",
         f"--output_dir={out}", f"--report={report}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
  raw = [json.loads((out / "raw" / f).read_text()) for f in sorted(os.listdir(out / "raw"))]
  assert {(r["method"], r["seed"]) for r in raw} == {
      (m, s) for m in ("magnitude", "magnitude_noise", "hybrid", "flipout") for s in (0, 1)}
  steps_per_epoch = math.ceil(640 / 128)
  for r in raw:
    assert r["sparsity"] == pytest.approx(0.9, abs=1e-4)  # exact kept counts
    assert r["steps"] == steps_per_epoch
    assert r["event_steps"] == flipout.event_steps(0.9, 1, steps_per_epoch)
    assert len(r["flips_per_epoch"]) == 1
  text = report.read_text()
  acc = {(r["method"], r["seed"]): r["test_accuracy"] for r in raw}
  for method in ("hybrid", "flipout"):
    d = np.array([acc[(method, s)] - acc[("magnitude", s)] for s in (0, 1)])
    half = 12.706204736174707 * d.std(ddof=1) / math.sqrt(2)  # t(0.975, 1 df)
    row = next(l for l in text.splitlines() if f"| 90% | {method} |" in l)
    assert f"{100 * d.mean():+.2f} [{100 * (d.mean() - half):+.2f}, " \
           f"{100 * (d.mean() + half):+.2f}]" in row
  flips = np.array([acc[("flipout", s)] - acc[("magnitude_noise", s)] for s in (0, 1)])
  ablation = next(l for l in text.splitlines() if l.startswith("| lenet_300_100 | flipout | 90% |"))
  assert f"{100 * flips.mean():+.2f} [" in ablation.split("|")[5]
  assert "## Answer" in text and "python -m benchmarks.compare --quick" in text
  for png in ("lenet_300_100_flipout_accuracy.png", "lenet_300_100_flipout_flips.png",
              "lenet_300_100_flipout_effects.png"):
    assert (out / png).read_bytes()[:4] == b"\x89PNG" and png in text
  # A second run redoes nothing and regenerates the same report, so it leaves the file
  # alone: not even its Date line moves (an old one stands in to tell).
  before = {f: os.path.getmtime(out / "raw" / f) for f in os.listdir(out / "raw")}
  date = next(l for l in text.splitlines() if l.startswith("- Date: "))
  report.write_text(text.replace(date, "- Date: 2000-01-01 00:00 UTC"))
  subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
  assert before == {f: os.path.getmtime(out / "raw" / f) for f in os.listdir(out / "raw")}
  assert report.read_text() == text.replace(date, "- Date: 2000-01-01 00:00 UTC")
  # A report alone reads the raw rows and the data's description, never the data itself,
  # and is the report the run wrote.
  assert json.loads((out / "data.json").read_text())["train_examples"] == 640
  again = tmp_path / "again.md"
  subprocess.run(cmd + ["--report_only", f"--report={again}", "--idx_dir=/nonexistent/idx"],
                 check=True, cwd=ROOT, env=env, capture_output=True, timeout=300)
  assert [l for l in again.read_text().splitlines() if not l.startswith("- Date:")] == \
      [l for l in text.splitlines() if not l.startswith("- Date:")]


@pytest.mark.skipif(not HAVE_DATA, reason="Debian's dataset-fashion-mnist is not installed")
def test_peer_methods_run_at_the_same_budget_and_sparsity(tmp_path):
  out = tmp_path / "results"
  peers = ["saliency", "movement_score", "snip", "set", "rigl", "targeted_dropout", "snip_erk",
           "set_erk", "rigl_erk"]
  cmd = [sys.executable, "-m", "benchmarks.compare", "--quick", "--train_examples=1280",
         "--test_examples=200", "--epochs=1", "--sparsities=0.9", "--seeds=0",
         f"--methods={','.join(peers)}", f"--output_dir={out}", f"--report={tmp_path / 'B.md'}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
  raw = {r["method"]: r for r in (json.loads((out / "raw" / f).read_text())
                                  for f in os.listdir(out / "raw"))}
  assert set(raw) == set(peers)
  for method, r in raw.items():
    assert r["steps"] == 10, method  # 1,280 examples at batch 128, one epoch
    assert r["sparsity"] == pytest.approx(0.9, abs=0.01), method
  assert all(raw[m]["regrown"] > 0 for m in ("set", "rigl", "set_erk", "rigl_erk"))


_REGULARIZER_SCRIPT = r"""
import json, os, sys
import numpy as np
from absl import flags
from benchmarks import compare, results_io
import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tf
flags.FLAGS([sys.argv[0], "--output_dir=" + sys.argv[1]])
out = {}
# _cut: 3 kernels, ties at the boundary
values = [np.arange(1, 7, dtype=np.float32).reshape(2, 3), -np.ones(4, np.float32),
          np.array([5.0, 0.5], np.float32)]
scores = [np.abs(v) for v in values]
kernels = [tf.Variable(np.zeros_like(v)) for v in values]
out["cut_sparsity"] = compare._cut(list(zip(kernels, scores, values)), 1 / 3)
out["cut"] = [k.numpy().tolist() for k in kernels]
# strength_for: natural sparsities written as calibration files
for strength, natural in zip(compare.STRENGTHS["hoyer"], (0.5, 0.9, 0.97, 0.995, 0.9999)):
  results_io.write_json(compare._calibration_path("m", "adam", "hoyer", strength),
                 {"natural_sparsity": natural})
out["swept"] = list(compare.STRENGTHS["hoyer"])
out["strengths"] = {str(t): compare.strength_for("m", "adam", "hoyer", t)
                    for t in (0.9, 0.98, 0.998, 0.999)}
for target, strength in ((0.9, out["strengths"]["0.9"]), (0.98, 1e9)):
  results_io.write_json(compare._raw_path("m", "adam", "hoyer", target, 0), {"strength": strength})
out["finished"] = [compare._finished("m", "adam", "hoyer", t, 0) for t in (0.9, 0.98, 0.999)]
out["swept_l0"] = list(compare.STRENGTHS["l0"])
for strength, natural in zip(compare.STRENGTHS["l0"], (0.5, 0.9, 0.97, 0.995, 0.9999)):
  results_io.write_json(compare._calibration_path("m", "adam", "l0", strength),
                 {"natural_sparsity": natural})
out["l0_strengths"] = [compare.strength_for("m", "adam", "l0", t) for t in (0.98, 0.4)]
try:
  compare.strength_for("m", "adam", "variational", 0.9)
except ValueError as e:
  out["missing"] = str(e)
# natural sparsity and the cut of variational dropout and L0 on a small MLP
keras.utils.set_random_seed(0)
base = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7), keras.layers.Dense(3)])
vd = ksf.tf_keras.variational.variational_dropout(base, 1e-3)
rng = np.random.RandomState(1)
wrappers = [l for l in vd.layers if hasattr(l, "log_sigma2")]
for w in wrappers:
  w.log_sigma2.assign(rng.uniform(-6, 4, w.log_sigma2.shape).astype(np.float32))
out["vd_theta"] = [w.layer.kernel.numpy().tolist() for w in wrappers]
out["vd_log_sigma2"] = [w.log_sigma2.numpy().tolist() for w in wrappers]
plain, parts, natural = compare._final_kernels("variational", vd)
out["vd_natural"] = natural
out["vd_cut_sparsity"] = compare._cut(parts, 0.8)
out["vd_cut"] = [k.numpy().tolist() for k, _, _ in parts]
l0 = ksf.tf_keras.l0.l0_gates(base, 1e-3)
gates = [l for l in l0.layers if hasattr(l, "log_alpha")]
for g in gates:
  g.log_alpha.assign(rng.uniform(-4, 2, g.log_alpha.shape).astype(np.float32))
out["l0_log_alpha"] = [g.log_alpha.numpy().tolist() for g in gates]
out["l0_natural"] = compare._final_kernels("l0", l0)[2]
print("RESULT" + json.dumps(out))
"""


def test_regularizer_rows_cut_to_the_target_and_pick_the_nearest_strength(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, "-c", _REGULARIZER_SCRIPT, str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.split("RESULT")[-1])
  # 12 weights, 8 kept: 6, 5, 5, 4, 3, 2, then two of the five tied at |w| = 1, by position.
  assert out["cut"] == [[[1, 2, 3], [4, 5, 6]], [-1, 0, 0, 0], [5, 0]]
  assert out["cut_sparsity"] == pytest.approx(4 / 12)
  # Nearest natural sparsity on a log(1 - s) scale (0.98 -> 0.97: |log 2/3| < |log 4|).
  swept = out["swept"]
  assert [out["strengths"][str(t)] for t in (0.9, 0.98, 0.998, 0.999)] == \
      [swept[1], swept[2], swept[3], swept[3]]
  assert "--calibrate" in out["missing"]
  # A row at another strength than the sweep now picks is run again; a missing one too.
  assert out["finished"] == [True, False, False]
  # L0 picks from those at or below the target (0.98 -> 0.97), unless none is (0.4 -> 0.5).
  assert out["l0_strengths"] == [out["swept_l0"][2], out["swept_l0"][0]]
  # Variational dropout: log alpha = clip(log sigma^2 - log theta^2, -10, 10), pruned at >= 3.
  log_alpha = [np.clip(np.array(s) - np.log(np.array(t) ** 2 + 1e-8), -10, 10)
               for s, t in zip(out["vd_log_sigma2"], out["vd_theta"])]
  flat = np.concatenate([a.ravel() for a in log_alpha])
  assert out["vd_natural"] == pytest.approx(np.mean(flat >= 3))
  keep = np.zeros(flat.size, bool)
  keep[np.argsort(flat, kind="stable")[:round(flat.size * 0.2)]] = True
  theta = np.concatenate([np.array(t).ravel() for t in out["vd_theta"]])
  np.testing.assert_allclose(np.concatenate([np.array(k).ravel() for k in out["vd_cut"]]),
                             np.where(keep, theta, 0), rtol=1e-6)
  assert out["vd_cut_sparsity"] == pytest.approx(0.8, abs=1 / flat.size)
  # L0: a gate is shut at test time when clip(sigmoid(log alpha) * 1.2 - 0.1, 0, 1) == 0.
  la = np.concatenate([np.array(a).ravel() for a in out["l0_log_alpha"]])
  z = np.clip(1 / (1 + np.exp(-la)) * 1.2 - 0.1, 0, 1)
  assert out["l0_natural"] == pytest.approx(np.mean(z == 0))


def test_aggregate_carries_the_regularizers_natural_sparsity(compare):
  rows = [_row("magnitude", 0.9, s, 0.85, "adam") for s in range(2)]
  rows += [dict(_row("l0", 0.9, s, 0.80 + 0.02 * s, "adam"), strength=3.0,
                natural_sparsity=0.88 + 0.02 * s, natural_accuracy=0.81) for s in range(2)]
  v = compare.aggregate(rows)[("m", "adam", 0.9, "l0")]
  assert v["natural_sparsity"] == pytest.approx(0.89) and v["strength"] == 3.0
  assert v["vs_magnitude"]["mean"] == pytest.approx(-0.04)


def test_blocks_without_a_flip_arm_have_no_flip_rows(compare):
  rows = [_row(m, 0.9, s, 0.8, "adam") for m in ("magnitude", "random") for s in range(2)]
  rows += [_row(m, 0.9, s, 0.8 + 0.01 * s) for m in ("magnitude", "hybrid") for s in range(2)]
  effects = compare.flip_term(compare.aggregate(rows))
  assert [(e["regime"], e["target"]) for e in effects] == [("flipout", 0.9)]


def test_erk_sentence_pairs_each_sparse_start_with_its_plain_form(compare):
  rows = []
  for s, noise in enumerate([0.0, 0.01, -0.01]):
    rows += [_row("rigl", 0.999, s, 0.10 + noise), _row("rigl_erk", 0.999, s, 0.60 + noise),
             _row("set", 0.999, s, 0.20), _row("set_erk", 0.999, s, 0.20 + 0.01 * s)]
  text = compare.erk_start(compare.aggregate(rows))
  assert "m 99.9%: set +1.00 [-1.48, +3.48], rigl +50.00 [+50.00, +50.00]" in text
  assert compare.erk_start(compare.aggregate(rows[:2])) is None  # one seed: no interval
