"""examples/lottery_ticket.py: a short run, early-bird, resume refusal, bad flags."""
import json

import pytest
from absl import flags

from examples import lottery_ticket
from tests.examples.test_train_binary import _write_idx

FLAGS = flags.FLAGS


def _flags(**overrides):
  FLAGS.unparse_flags()
  FLAGS(["lottery"] + [f"--{k}={v}" for k, v in overrides.items()])


def test_short_run_with_controls_and_plots(tmp_path, capsys):
  idx = _write_idx(str(tmp_path / "idx"), n_train=320)
  _flags(dataset="mnist", data_source="idx", idx_dir=idx, rounds=2, epochs=1,
         batch_size=32, validation_examples=64, reinit="rewind,random",
         output_dir=tmp_path / "run")
  results = lottery_ticket.run_lottery(0)
  assert [(r["mode"], r["round"]) for r in results] == [
      ("rewind", 0), ("rewind", 1), ("rewind", 2), ("random", 1), ("random", 2)]
  out = capsys.readouterr().out
  assert "remaining%" in out and "supermask" in out
  # The binary's lines: the data's source, then per training (mode, round) a line per
  # epoch and the round's line, then the table (no progress bar: stdout is no terminal).
  lines = out.splitlines()
  assert lines[0] == f"Data: mnist: local IDX files in {idx}"
  trainings = [(r["mode"], r["round"]) for r in results]
  epoch_lines, round_lines = lines[1:1 + 2 * len(trainings):2], lines[2:2 + 2 * len(trainings):2]
  trained = [(line[1:].split(" round ")[0], int(line.split(" round ")[1].split("]")[0]))
             for line in round_lines]
  assert sorted(trained) == sorted(trainings)
  assert [line.split(":")[0] for line in epoch_lines] == [
      f"round {r} epoch 1/1" for _, r in trained]
  assert lines[1 + 2 * len(trainings)].split() == [
      "mode", "round", "remaining%", "test", "acc", "ES", "step", "ES", "acc", "supermask", "flips"]
  for name in ("results.json", "results.csv", "accuracy_vs_remaining.png",
               "early_stop_vs_remaining.png", "masks_2.npz", "rewind.npz"):
    assert (tmp_path / "run" / name).exists(), name


def test_early_bird_ticket(tmp_path):
  idx = _write_idx(str(tmp_path / "idx"), n_train=320)
  _flags(dataset="mnist", data_source="idx", idx_dir=idx, rounds=3, epochs=8,
         batch_size=32, validation_examples=64, early_bird=True, early_bird_epsilon=0.5,
         output_dir=tmp_path / "run")
  results = lottery_ticket.run_lottery(0)
  bird = json.loads((tmp_path / "run" / "early_bird.json").read_text())
  assert bird["early_bird_epoch"] is not None and bird["early_bird_epoch"] < 7
  assert [r["round"] for r in results] == [0, 1]
  assert results[0]["steps"] < 8 * 8  # round 0 stopped early
  assert results[1]["weights_remaining_pct"] == pytest.approx(100 * 0.8 ** 3, abs=1.0)


@pytest.mark.parametrize("args,match", [
    (["--reinit=rewind,lucky"], "reinit"),
    (["--criterion=tfmot"], "criterion"),
    (["--prune_rate=1.5"], "prune_rate"),
    ([], "output_dir"),
])
def test_bad_flags(args, match, capsys, tmp_path):
  FLAGS.unparse_flags()
  FLAGS(["lottery"] + args + ([f"--output_dir={tmp_path}"] if match != "output_dir" else []))
  with pytest.raises(SystemExit) as e:
    lottery_ticket.main(["lottery"])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and match in err[0]
