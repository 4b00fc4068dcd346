"""Faults of lottery runs (issue 27): one configuration per directory, checked
fields, unreadable artifacts, directories that are not ours.

Every refusal is checked for its message (the keys / values / file it names)
and for leaving the directory exactly as it was (names, bytes, times).
"""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from keras_signflip import lottery
from keras_signflip import owned_dir
from tests.lottery.test_lottery import TEST, VAL, _compile, _make, _train_data

_QUIET = dict(log=lambda *a: None)


def _config(**kwargs):
  defaults = (dict(epochs=1, seed=1) if "round_sparsities" in kwargs
              else dict(rounds=1, epochs=1, seed=1))
  return lottery.LotteryConfig(**{**defaults, **kwargs})


def _run(path, make=_make, **kwargs):
  init_mask = kwargs.pop("init_mask", None)
  return lottery.run(make, _compile, _train_data, VAL, TEST, _config(**kwargs), str(path),
                     init_mask=init_mask, **_QUIET)


def _contents(path):
  """{name: (sha256, mtime_ns)} of every file under `path`."""
  out = {}
  for root, _, names in os.walk(path):
    for name in names:
      full = os.path.join(root, name)
      with open(full, "rb") as f:
        out[os.path.relpath(full, path)] = (hashlib.sha256(f.read()).hexdigest(),
                                            os.stat(full).st_mtime_ns)
  return out


def _strip(rows):
  return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]


def _never_built():
  raise AssertionError("make_model was called: the refusal came too late")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Finished runs to copy: one round, two rounds (uninterrupted), sparsities (0.5,)."""
  root = tmp_path_factory.mktemp("lottery_runs")
  _run(root / "one")
  _run(root / "two", rounds=2)
  _run(root / "sparse", round_sparsities=(0.5,))
  return root


def _copy(runs, name, tmp_path):
  shutil.copytree(runs / name, tmp_path / name)
  return tmp_path / name


def _refused(path, match, make=_make, **kwargs):
  before = _contents(path)
  with pytest.raises(lottery.OutputDirError) as e:
    _run(path, make=make, **kwargs)
  assert _contents(path) == before, "the refusal changed the directory"
  for text in match:
    assert text in str(e.value), (text, str(e.value))
  return str(e.value)


# One configuration per run.

def test_changed_prune_rate_is_refused_naming_old_and_new(runs, tmp_path):
  path = _copy(runs, "one", tmp_path)
  _refused(path, ["prune_rate: recorded 0.2, given 0.5"], make=_never_built, prune_rate=0.5)


@pytest.mark.parametrize("change,named", [
    (dict(criterion="random"), ['criterion: recorded {"class_name": "Magnitude", "config": {}}, '
                                'given {"class_name": "Random", "config": {"seed": 0}}']),
    (dict(seed=2), ["seed: recorded 1, given 2"]),
    (dict(eval_every=2), ["eval_every: recorded None, given 2"]),
    (dict(epochs=2, scope="global", rewind_step="2it"),
     ["epochs: recorded 1, given 2", "scope: recorded 'layer', given 'global'",
      "prune_rate_output: recorded 0.1, given None", "rewind_step: recorded 0, given 2"]),
    (dict(init_mask=[np.ones((8, 20)), np.ones((20, 3))]),
     ["init_mask: recorded None, given 'sha256:"]),
])
def test_changed_fields_are_refused_each_named(runs, tmp_path, change, named):
  path = _copy(runs, "one", tmp_path)
  _refused(path, named, make=_never_built, **change)


def test_shortening_and_appending_lr_rewind_are_refused(runs, tmp_path):
  path = _copy(runs, "one", tmp_path)
  _refused(path, ["rounds: recorded 1, given 0"], rounds=0)
  _refused(path, ["modes: recorded ['rewind'], given ['rewind', 'lr_rewind']"],
           modes=("rewind", "lr_rewind"))


def test_extending_one_round_to_two_equals_the_uninterrupted_run(runs, tmp_path):
  path = _copy(runs, "one", tmp_path)
  assert (path / "state_1.npz").exists()  # what the extension draws round 2's masks from
  first = json.loads((path / "results.json").read_text())
  rows = _run(path, rounds=2)
  full = lottery.load_results(str(runs / "two" / "results.json"))
  assert _strip(rows) == _strip(full)
  assert rows[:2] == first  # rounds 0 and 1 are kept, not retrained
  for r in range(3):
    for got, want in zip(lottery.load_masks(str(path / f"masks_{r}.npz")),
                         lottery.load_masks(str(runs / "two" / f"masks_{r}.npz"))):
      np.testing.assert_array_equal(got, want)
  assert lottery.read_config(str(path))["config"]["rounds"] == 2
  _refused(path, ["rounds: recorded 2, given 1"], rounds=1)


def test_an_earlier_versions_run_is_adopted_and_extended_by_retraining_its_last_round(
    runs, tmp_path):
  """No config.json, marker or state file (as before this version): the run is
  adopted, and extending it retrains round 1 (seeded) to draw round 2's masks."""
  path = _copy(runs, "one", tmp_path)
  for name in ("config.json", owned_dir.MARKER, "state_1.npz"):
    os.remove(path / name)
  text = _refused(path, ["masks_1.npz keeps [128, 54] weights; this configuration keeps "
                         "[80, 54]"], prune_rate=0.5)
  assert "without this version's config.json" in text
  logged = []
  rows = lottery.run(_make, _compile, _train_data, VAL, TEST, _config(rounds=2), str(path),
                     log=logged.append)
  assert any("Adopted" in line for line in logged)
  assert any("Recomputing rewind round 1" in line for line in logged)
  assert _strip(rows) == _strip(lottery.load_results(str(runs / "two" / "results.json")))
  for got, want in zip(lottery.load_masks(str(path / "masks_2.npz")),
                       lottery.load_masks(str(runs / "two" / "masks_2.npz"))):
    np.testing.assert_array_equal(got, want)
  assert lottery.read_config(str(path))["config"]["rounds"] == 2


def test_round_sparsities_extended_continues_and_changed_is_refused(runs, tmp_path):
  path = _copy(runs, "sparse", tmp_path)
  _refused(path, ["round_sparsities: recorded [0.5], given [0.6, 0.75]",
                  "rounds: recorded 1, given 2"], round_sparsities=(0.6, 0.75))
  _refused(path, ["prune_rate: recorded None, given 0.2", "round_sparsities: recorded [0.5], "
                  "given None"], rounds=2)
  first = json.loads((path / "results.json").read_text())
  rows = _run(path, round_sparsities=(0.5, 0.75))
  assert rows[:2] == first and [r["round"] for r in rows] == [0, 1, 2]
  kept = [int(m.sum()) for m in lottery.load_masks(str(path / "masks_2.npz"))]
  assert kept == [round(160 * 0.25), round(60 * 0.25)]


def test_appending_a_control_mode_continues(runs, tmp_path):
  path = _copy(runs, "one", tmp_path)
  rows = _run(path, modes=("rewind", "random"))
  assert [(r["mode"], r["round"]) for r in rows] == [("rewind", 0), ("rewind", 1), ("random", 1)]
  assert rows[2]["weights_remaining_pct"] == rows[1]["weights_remaining_pct"]


# Validated at the boundary.

@pytest.mark.parametrize("field,value,accepted", [
    ("rounds", True, "integer >= 0"), ("rounds", -1, "integer >= 0"),
    ("rounds", 1.0, "integer >= 0"),
    ("prune_rate", float("inf"), "(0, 1)"), ("prune_rate", float("nan"), "(0, 1)"),
    ("prune_rate", True, "(0, 1)"), ("prune_rate", "0.2", "(0, 1)"), ("prune_rate", 0, "(0, 1)"),
    ("prune_rate_output", 1.0, "(0, 1)"),
    ("epochs", "2", "integer >= 1"), ("epochs", 0, "integer >= 1"),
    ("eval_every", 0, "integer >= 1"), ("eval_every", 2.5, "integer >= 1"),
    ("seed", -1, "integer >= 0"), ("seed", True, "integer >= 0"), ("seed", 2 ** 32, "[0, "),
    ("scope", "Layer", "['layer', 'global']"), ("scope", ["layer"], "['layer', 'global']"),
    ("modes", "rewind", "distinct modes"), ("modes", ("rewind", "rewind"), "distinct modes"),
    ("rewind_step", True, "'Nit'"), ("rewind_step", 1.5, "'Nit'"), ("rewind_step", -3, "'Nit'"),
    ("round_sparsities", [0.5, float("nan")], "increasing list"),
    ("round_sparsities", "0.5", "increasing list"),
    ("criterion", 3, "Criterion"),
])
def test_bad_config_fields_are_refused_naming_field_value_and_range(field, value, accepted):
  with pytest.raises(ValueError) as e:
    lottery.LotteryConfig(**{field: value})
  message = str(e.value)
  assert (f"`{field}`" in message and f"{field}={value!r}" in message
          and accepted in message), message


# Unreadable artifacts.

def test_truncated_masks_is_named_then_recomputed_once_deleted(runs, tmp_path):
  path = _copy(runs, "one", tmp_path)
  original = (path / "masks_1.npz").read_bytes()
  (path / "masks_1.npz").write_bytes(original[:len(original) // 2])
  # An appended control needs masks_1.
  _refused(path, ["masks_1.npz is not a readable masks file", "round 1's masks",
                  "delete it and rerun: round 0 (rewind) is retrained"], modes=("rewind", "random"))
  os.remove(path / "masks_1.npz")
  _run(path, modes=("rewind", "random"))
  assert (path / "masks_1.npz").read_bytes() == original  # seeded: the same masks


@pytest.mark.parametrize("name,damage,named", [
    ("init.npz", "flip", ["init.npz is unreadable", "the initial weights (seed 1)",
                          "delete it and rerun: it is rebuilt from make_model"]),
    ("rewind.npz", "truncate", ["rewind.npz is unreadable", "the rewind point",
                                "round 0 is retrained"]),
    ("state_1.npz", "truncate", ["state_1.npz is unreadable", "round 1's final rewind model state",
                                 "round 1 (rewind) is retrained"]),
])
def test_damaged_snapshot_is_named_with_the_way_out(runs, tmp_path, name, damage, named):
  path = _copy(runs, "one", tmp_path)
  data = bytearray((path / name).read_bytes())
  if damage == "flip":  # one bit in the middle of the stored arrays: the zip CRC catches it
    data[len(data) // 2] ^= 0x10
  else:
    data = data[:len(data) // 3]
  (path / name).write_bytes(bytes(data))
  before = _contents(path)
  with pytest.raises(lottery.OutputDirError) as e:
    _run(path, rounds=2)  # the extension reads all three
  for text in named:
    assert text in str(e.value), (text, str(e.value))
  assert _contents(path) == before  # checked before anything is written


def test_corrupt_results_json_is_rebuilt_from_csv_exactly(runs, tmp_path):
  path = _copy(runs, "one", tmp_path)
  want = json.loads((path / "results.json").read_text())
  (path / "results.json").write_text('[{"mode": "rewind", "rou')
  logged = []
  rows = lottery.run(_make, _compile, _train_data, VAL, TEST,
                     _config(), str(path), log=logged.append)
  assert rows == want  # wall times included: nothing was retrained
  assert json.loads((path / "results.json").read_text()) == want
  assert any("Rebuilt" in line for line in logged)


def test_corrupt_results_json_and_csv_are_named(runs, tmp_path):
  path = _copy(runs, "one", tmp_path)
  (path / "results.json").write_text("[{")
  (path / "results.csv").write_text("mode,round\nrewind\n")
  _refused(path, ["results.json is not a readable results file", "results.csv cannot rebuild it",
                  "delete results.json and results.csv"], make=_never_built)


def test_corrupt_masks_0_is_rewritten(runs, tmp_path):
  path = _copy(runs, "one", tmp_path)
  original = (path / "masks_0.npz").read_bytes()
  (path / "masks_0.npz").write_bytes(b"PK\x03\x04 not a zip")
  _run(path, modes=("rewind", "random"))
  assert (path / "masks_0.npz").read_bytes() == original


def test_unreadable_config_json_is_named(runs, tmp_path):
  path = _copy(runs, "one", tmp_path)
  (path / "config.json").write_text('{"keras_signflip_lottery": 1, "conf')
  _refused(path, ["config.json is unreadable", "restore it, or delete it"], make=_never_built)


# Directories that are not a lottery run.

def test_output_dir_that_is_a_file_is_refused_before_building(tmp_path):
  path = tmp_path / "results.txt"
  path.write_text("mine")
  with pytest.raises(lottery.OutputDirError, match="is a file, not a directory"):
    _run(path, make=_never_built)
  assert path.read_text() == "mine"


def test_foreign_non_empty_directory_is_refused(tmp_path):
  (tmp_path / "thesis.tex").write_text("mine")
  (tmp_path / "data").mkdir()
  before = _contents(tmp_path)
  with pytest.raises(lottery.OutputDirError) as e:
    _run(tmp_path, make=_never_built)
  assert "holds no lottery run" in str(e.value) and "thesis.tex" in str(e.value)
  assert _contents(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["data", "thesis.tex"]


def test_another_kind_of_keras_signflip_directory_is_refused(tmp_path):
  owned_dir.write_marker(str(tmp_path), "run")
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(lottery.OutputDirError, match="holds a keras_signflip run, not a lottery"):
    _run(tmp_path, make=_never_built)


# The example binary: the same refusals, as one-line `error:` messages.

def _binary_error(capsys, **flags):
  from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
  from examples import lottery_ticket  # pylint: disable=g-import-not-at-top
  absl_flags.FLAGS.unparse_flags()
  absl_flags.FLAGS(["lottery"] + [f"--{k}={v}" for k, v in flags.items()])
  with pytest.raises(SystemExit) as e:
    lottery_ticket.main(["lottery"])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("lottery_ticket.py: error: "), err
  return err[0]


def test_binary_refuses_a_changed_flag_on_resume_and_bad_directories(tmp_path, capsys):
  from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
  from examples import lottery_ticket  # pylint: disable=g-import-not-at-top
  from tests.examples.test_train_binary import _write_idx  # pylint: disable=g-import-not-at-top
  idx = _write_idx(str(tmp_path / "idx"), n_train=320)
  common = dict(dataset="mnist", data_source="idx", idx_dir=idx, rounds=1, epochs=1,
                batch_size=32, validation_examples=64, output_dir=tmp_path / "run")
  absl_flags.FLAGS.unparse_flags()
  absl_flags.FLAGS(["lottery"] + [f"--{k}={v}" for k, v in common.items()])
  lottery_ticket.run_lottery(0)
  before = _contents(tmp_path / "run")
  line = _binary_error(capsys, **{**common, "batch_size": 16}, resume=True, prune_rate=0.5)
  assert "prune_rate: recorded 0.2, given 0.5" in line
  assert "context.batch_size: recorded 32, given 16" in line
  assert _contents(tmp_path / "run") == before
  (tmp_path / "file").write_text("mine")
  assert "is a file" in _binary_error(capsys, **{**common, "output_dir": tmp_path / "file"})
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("mine")
  assert "holds no lottery run" in _binary_error(
      capsys, **{**common, "output_dir": tmp_path / "mine"})
  assert "eval_every" in _binary_error(capsys, **common, resume=True, eval_every=0)
