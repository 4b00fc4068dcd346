"""benchmarks/variants_analysis.py: the RecentHybrid score against its formula in
NumPy, the choice on validation accuracy only, the report's jobs and its paired
differences against a NumPy recount, from rows written the way the study writes them."""
import json
import math
import os

import numpy as np
import pytest

from keras_signflip import criteria


@pytest.fixture(scope="module")
def study():
  from benchmarks import variants_analysis  # pylint: disable=g-import-not-at-top
  return variants_analysis


def test_recent_hybrid_score_is_the_formula(study):
  rng = np.random.RandomState(0)
  w = rng.randn(5, 7).astype(np.float32)
  flips = rng.randint(0, 9, (5, 7)).astype(np.int32)
  at_update = np.minimum(flips, rng.randint(0, 5, (5, 7))).astype(np.int32)
  state = criteria.WeightState(flips=flips, reference=None, flips_at_update=at_update)
  for power in (1.0, 2.0, 3.0):
    got = study.RecentHybrid(power).score(w, state, xp=np)
    np.testing.assert_allclose(got, np.abs(w) ** power / (flips - at_update + 1.0), rtol=1e-6)
  tie = study.RecentHybrid().tiebreak(w, state, xp=np)
  np.testing.assert_array_equal(tie, -(flips - at_update).astype(np.float32))
  assert study.RecentHybrid.uses_window  # the wrappers keep flips_at_update for it
  assert criteria.get(criteria.serialize(study.RecentHybrid(3.0))) == study.RecentHybrid(3.0)
  with pytest.raises(ValueError, match="power"):
    study.RecentHybrid(float("nan"))


def _write(root, method, target, seed, test, val=None, power=None, in_name=False):
  os.makedirs(os.path.join(root, "raw"), exist_ok=True)
  row = {"model": "lenet_300_100", "regime": "flipout", "method": method, "target": target,
         "seed": seed, "test_accuracy": test, "sparsity": target, "epochs": 10,
         "train_examples": 55000}
  if val is not None:
    row["val_accuracy"] = val
  if power is not None:
    row["power"] = power
  tag = f"__p{power:g}" if in_name else ""
  with open(os.path.join(root, "raw",
                         f"lenet_300_100__flipout__{method}{tag}__{target:g}__{seed}.json"),
            "w") as f:
    json.dump(row, f)


def test_choice_reads_validation_accuracy_only(study, tmp_path):
  root = str(tmp_path / "variants")
  for m in study.VARIANTS:
    assert study.choose(root)[m] is None  # nothing run yet
  best_val = {"recent_hybrid": 3.0, "lrr_hybrid": 1.0}
  for method, power_best in best_val.items():
    for t in study.TARGETS:
      for s in study.SELECTION_SEEDS:
        for p in study.POWERS:
          # the test accuracy favours another power: it must not decide
          _write(root, method, t, s, test=0.9 if p == 2.0 else 0.5,
                 val=0.8 if p == power_best else 0.7, power=p, in_name=True)
  assert study.choose(root) == best_val
  os.remove(study.raw_path(root, "lrr_hybrid", study.TARGETS[0], study.SELECTION_SEEDS[0], 1.0))
  assert study.choose(root)["lrr_hybrid"] is None  # an incomplete selection chooses nothing


def test_report_jobs_skip_the_grids_rows_and_run_the_rest(study, tmp_path):
  root, grid = str(tmp_path / "variants"), str(tmp_path / "grid")
  assert len(study.missing_grid_rows(grid)) == 4 * len(study.TARGETS) * len(study.GRID_SEEDS)
  for m in ("magnitude", "hybrid", "recent_flips", "lottery_matched"):
    for t in study.TARGETS:
      for s in study.GRID_SEEDS:
        _write(grid, m, t, s, test=0.5)
  assert study.missing_grid_rows(grid) == []
  chosen = {"recent_hybrid": 3.0, "lrr_hybrid": 1.0}
  jobs = study.report_jobs(chosen, root, grid)
  n_t, n_s = len(study.TARGETS), len(study.REPORT_SEEDS)
  extra = len(study.REPORT_SEEDS) - len(study.GRID_SEEDS)
  assert len(jobs) == len(set(jobs)) == 3 * n_t * n_s + 4 * n_t * extra
  assert {(m, p) for m, _, _, p in jobs if m in study.VARIANTS} == {("recent_hybrid", 3.0),
                                                                    ("lrr_hybrid", 1.0)}
  assert not [j for j in jobs if j[0] == "magnitude" and j[2] in study.GRID_SEEDS]
  # A grid method's later seeds live beside the grid's own; a variant's in the study's.
  t = study.TARGETS[0]
  assert study.report_root("magnitude", root, grid) == grid
  assert study.report_root("lrr_magnitude", root, grid) == root
  _write(grid, "magnitude", t, 3, test=0.5)
  _write(root, "recent_hybrid", t, 0, test=0.5, power=3.0)
  _write(root, "hybrid", t, 4, test=0.5)  # in the wrong place: still due in the grid's
  left = set(study.report_jobs(chosen, root, grid))
  assert set(jobs) - left == {("magnitude", t, 3, None), ("recent_hybrid", t, 0, 3.0)}


def test_paired_differences_and_report_against_a_recount(study, tmp_path):
  root, grid = str(tmp_path / "variants"), str(tmp_path / "grid")
  rng = np.random.RandomState(1)
  acc = {}
  for t in study.TARGETS:
    for s in study.REPORT_SEEDS:
      for m in study.VARIANTS + study.CONTROLS:
        acc[(m, t, s)] = float(rng.uniform(0.6, 0.9))
        _write(grid if m in study.GRID_METHODS else root, m, t, s, test=acc[(m, t, s)])
  _write(root, "magnitude", study.TARGETS[-1], 3, test=0.0)  # not where magnitude's runs live
  for s in study.SELECTION_SEEDS:  # selection rows: other seeds, never in the report's pairs
    _write(root, "recent_hybrid", study.TARGETS[0], s, test=0.0, val=0.1, power=2.0, in_name=True)
  eff = study.effects(study.report_rows(root, grid))
  t = study.TARGETS[-1]
  d = np.array([acc[("lrr_hybrid", t, s)] - acc[("lrr_magnitude", t, s)]
                for s in study.REPORT_SEEDS])
  half = 2.7764451051977987 * d.std(ddof=1) / math.sqrt(len(d))  # t(0.975, 4)
  got = eff[("lrr_hybrid", "lrr_magnitude", t)]
  assert got["n"] == 5
  lead = eff[("recent_flips", "magnitude", t)]  # the grid's methods, all five seeds
  d_lead = [acc[("recent_flips", t, s)] - acc[("magnitude", t, s)] for s in study.REPORT_SEEDS]
  assert lead["n"] == 5 and lead["mean"] == pytest.approx(np.mean(d_lead), rel=1e-9)
  np.testing.assert_allclose([got["mean"], got["low"], got["high"]],
                             [d.mean(), d.mean() - half, d.mean() + half], rtol=1e-9)
  text = study.report(root, grid, str(tmp_path / "README.md"))
  assert (tmp_path / "README.md").read_text() == text
  assert "lrr_hybrid − lrr_magnitude" in text and "not measured yet" not in text
  assert f"{100 * d.mean():+.2f}" in text
