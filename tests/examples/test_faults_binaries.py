"""Fault injection, the binaries (issue 27): every bad input or fault ends in a clear
error before any change, or in the correct result, and nothing of the user's is lost.

examples/train.py runs in-process on tiny IDX data (as tests/examples/test_train_binary.py
does); kill -9 and Keras 3 (JAX) run as subprocesses.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags

import keras_signflip as ksf
from keras_signflip import owned_dir
from keras_signflip.tf_keras._framework import keras, tf

from examples import common
from examples import run_dir
from examples import train as train_bin
from tests.examples.test_train_binary import _write_idx

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
IDX_FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
  return _write_idx(str(tmp_path_factory.mktemp("idx")))


def _flags(idx_dir, **overrides):
  """A tiny, fast run: 256 examples in 4 steps an epoch, 80% by step 4."""
  base = dict(dataset="mnist", data_source="idx", idx_dir=idx_dir, epochs=1, batch_size=64,
              frequency=1, end_step=4, target_sparsity=0.8, criterion="hybrid",
              learning_rate=0.01, test_examples=64, seed=1)
  base.update(overrides)
  FLAGS.unparse_flags()
  FLAGS(["train"] + [f"--{k}={v}" for k, v in base.items() if v is not None])
  FLAGS.verbose = 0


def _main_error(capsys):
  """Runs train.py's main on the parsed flags; returns (exit status, its one error line)."""
  with pytest.raises(SystemExit) as e:
    train_bin.main(["train"])
  lines = capsys.readouterr().err.strip().splitlines()
  return e.value.code, lines


def _tree(path):
  """{relative path: bytes} of every file under `path` (the lock file's content aside)."""
  out = {}
  for root, _, files in os.walk(path):
    for name in files:
      full = os.path.join(root, name)
      out[os.path.relpath(full, path)] = open(full, "rb").read()
  return out


# --- 1. never destroy -----------------------------------------------------------------

def test_output_dir_naming_a_file_is_refused_before_the_model_is_built(idx, tmp_path, capsys):
  target = tmp_path / "notes.txt"
  target.write_text("mine")
  _flags(idx, output_dir=target)
  status, err = _main_error(capsys)
  assert status == 2 and "is a file" in err[-1] and err[-1].startswith("train.py: error:")
  assert target.read_text() == "mine"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_directory_is_never_written_into(idx, tmp_path, capsys, overwrite):
  users = tmp_path / "mine"
  users.mkdir()
  (users / "thesis.tex").write_text("chapter 1")
  _flags(idx, output_dir=users, overwrite=overwrite)
  status, err = _main_error(capsys)
  assert status == 2 and "no keras_signflip run wrote" in err[-1]
  assert _tree(users) == {"thesis.tex": b"chapter 1"}


def test_export_dir_holding_a_users_file_is_refused_before_training(idx, tmp_path, capsys):
  export = tmp_path / "export"
  export.mkdir()
  (export / "keep.me").write_text("x")
  _flags(idx, output_dir=tmp_path / "run", export_dir=export, overwrite=True)
  status, err = _main_error(capsys)
  assert status == 2 and "--export_dir" in err[-1] and "never replaced" in err[-1]
  assert _tree(export) == {"keep.me": b"x"}
  assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_rerun_without_resume_or_overwrite_is_refused(idx, tmp_path, capsys):
  _flags(idx, output_dir=tmp_path / "run")
  train_bin.train()
  before = _tree(tmp_path / "run")
  _flags(idx, output_dir=tmp_path / "run")
  status, err = _main_error(capsys)
  assert status == 2 and "--resume" in err[-1] and "--overwrite" in err[-1]
  assert _tree(tmp_path / "run") == before


def test_overwrite_replaces_only_what_a_run_wrote(idx, tmp_path):
  _flags(idx, output_dir=tmp_path / "run", criterion="magnitude")
  train_bin.train()
  (tmp_path / "run" / "my_notes.md").write_text("keep")
  _flags(idx, output_dir=tmp_path / "run", criterion="hybrid", overwrite=True)
  train_bin.train()
  assert (tmp_path / "run" / "my_notes.md").read_text() == "keep"
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  assert config["criterion"] == "hybrid"
  assert owned_dir.is_owned(str(tmp_path / "run"), "run")


# --- 2. never silently unpruned ----------------------------------------------------------

def test_a_schedule_beyond_the_run_is_an_error_before_training(idx, tmp_path, capsys):
  # 4 steps; polynomial decay to 80% ending at step 40 reaches ~0% by step 4.
  _flags(idx, output_dir=tmp_path / "run", end_step=40, frequency=4)
  status, err = _main_error(capsys)
  assert status == 2 and "cannot reach --target_sparsity=0.8" in err[-1]
  assert "end step 40" in err[-1] and "--end_step" in err[-1]
  assert not (tmp_path / "run").exists()


def test_a_frequency_longer_than_the_run_is_an_error(idx, tmp_path, capsys):
  _flags(idx, output_dir=tmp_path / "run", end_step=None, frequency=100)
  status, err = _main_error(capsys)
  assert status == 2 and "cannot reach" in err[-1] and "frequency 100" in err[-1]


def test_ending_below_the_target_fails_with_status_1_and_says_so(idx, tmp_path, capsys,
                                                                   monkeypatch):
  # The end check on its own: the pre-training check switched off.
  monkeypatch.setattr(common, "check_schedule", lambda steps_per_epoch: None)
  _flags(idx, output_dir=tmp_path / "run", end_step=40, frequency=4)
  status, err = _main_error(capsys)
  assert status == 1 and "below --target_sparsity=80%" in err[-1]
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["target_reached"] is False and summary["sparsity"] < 0.8


def test_a_geometric_run_gets_the_events_its_target_needs(idx, tmp_path):
  # 0.5 a time to 90% takes 4 events; the old default (2/3 of 8 steps) gave 2, i.e. 75%.
  _flags(idx, output_dir=tmp_path / "run", schedule="geometric", end_step=None,
         prune_fraction=0.5, target_sparsity=0.9, epochs=2)
  summary, _ = train_bin.train()
  assert abs(summary["sparsity"] - 0.9) < 1e-3


# --- 3. meaningless arguments -----------------------------------------------------------

@pytest.mark.parametrize("flag,match", [
    ("--train_examples=-5", "--train_examples=-5 must be >= 1"),
    ("--test_examples=0", "--test_examples=0 must be >= 1"),
    ("--power=nan", "--power=nan must be a finite number"),
    ("--learning_rate=0", "--learning_rate=0.0 must be a finite number > 0"),
    ("--noise_scale=inf", "--noise_scale=inf must be a finite"),
    ("--begin_step=-1", "--begin_step=-1 must be >= 0"),
    ("--end_step=0", "--end_step=0 must be > --begin_step=0"),
    ("--seed=-3", "--seed=-3 must be >= 0"),
])
def test_meaningless_flags_fail_with_one_line_before_anything(flag, match, capsys):
  FLAGS.unparse_flags()
  FLAGS(["train", flag])
  status, err = _main_error(capsys)
  assert status == 2 and len(err) == 1 and match in err[0], err


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
  FLAGS.unparse_flags()
  FLAGS(["train", f"--output_dir={tmp_path}", "--resume", "--overwrite"])
  status, err = _main_error(capsys)
  assert status == 2 and "pass one of them" in err[-1]


# --- 4. one configuration per run ----------------------------------------------------------

def test_resume_with_another_configuration_names_every_difference(idx, tmp_path, capsys):
  _flags(idx, output_dir=tmp_path / "run", criterion="hybrid", scope="layer")
  train_bin.train()
  before = _tree(tmp_path / "run")
  _flags(idx, output_dir=tmp_path / "run", criterion="magnitude", scope="global", resume=True)
  status, err = _main_error(capsys)
  text = "\n".join(err)
  assert status == 2
  assert "--criterion: 'hybrid' in the run, 'magnitude' now" in text
  assert "--scope: 'layer' in the run, 'global' now" in text
  assert _tree(tmp_path / "run") == before  # config.json and checkpoints untouched


def test_more_epochs_extend_a_finished_run_as_one_planned_run(idx, tmp_path):
  _flags(idx, output_dir=tmp_path / "planned", epochs=2, schedule_epochs=1)
  _, planned = train_bin.train()
  _flags(idx, output_dir=tmp_path / "extended", epochs=1)
  train_bin.train()
  _flags(idx, output_dir=tmp_path / "extended", epochs=2, resume=True)
  summary, extended = train_bin.train()
  assert summary["steps"] == 8
  config = json.loads((tmp_path / "extended" / "config.json").read_text())
  assert config["schedule_epochs"] == 1 and config["epochs"] == 2
  for a, b in zip(ksf.masks(planned).values(), ksf.masks(extended).values()):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(ksf.flip_counts(planned).values(), ksf.flip_counts(extended).values()):
    np.testing.assert_array_equal(a, b)


def test_fewer_epochs_on_resume_are_refused(idx, tmp_path, capsys):
  _flags(idx, output_dir=tmp_path / "run", epochs=2)
  train_bin.train()
  _flags(idx, output_dir=tmp_path / "run", epochs=1, resume=True)
  status, err = _main_error(capsys)
  assert status == 2 and "never shortened" in err[-1]


def test_a_second_process_on_the_same_run_is_refused_while_the_first_runs(tmp_path):
  FLAGS.unparse_flags()
  FLAGS(["train"])
  config = run_dir.config()
  first = run_dir.open_run(str(tmp_path / "run"), config, resume=False, overwrite=False)
  try:
    with pytest.raises(common.UsageError, match="in use by another running process"):
      run_dir.open_run(str(tmp_path / "run"), config, resume=True, overwrite=False)
  finally:
    first.close()
  run_dir.open_run(str(tmp_path / "run"), config, resume=True, overwrite=False).close()


# --- 5. checkpoints: recovery and all-or-nothing restore --------------------------------------

def _truncate_newest(run):
  ckpt = os.path.join(run, "checkpoints")
  newest = tf.train.latest_checkpoint(ckpt)
  data = [f for f in os.listdir(ckpt) if f.startswith(os.path.basename(newest) + ".data")]
  path = os.path.join(ckpt, data[0])
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  return newest


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(idx, tmp_path, capsys, damage):
  run = str(tmp_path / "run")
  _flags(idx, output_dir=run, epochs=2)
  train_bin.train()
  if damage == "truncate":
    newest = _truncate_newest(run)
  else:
    ckpt = os.path.join(run, "checkpoints")
    newest = tf.train.latest_checkpoint(ckpt)
    path = [os.path.join(ckpt, f) for f in os.listdir(ckpt)
            if f.startswith(os.path.basename(newest) + ".data")][0]
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(path, "wb").write(bytes(raw))
  capsys.readouterr()
  _flags(idx, output_dir=run, epochs=2, resume=True)
  summary, _ = train_bin.train()
  out = capsys.readouterr()
  assert f"checkpoint {newest} is unreadable" in out.err and "resuming from" in out.err
  assert "(epoch 1)" in out.out and summary["steps"] == 8  # epoch 2 trained again


def test_no_readable_checkpoint_is_a_clear_error(idx, tmp_path, capsys):
  run = str(tmp_path / "run")
  _flags(idx, output_dir=run, epochs=1)
  train_bin.train()
  _truncate_newest(run)
  _flags(idx, output_dir=run, epochs=2, resume=True)
  status, err = _main_error(capsys)
  assert status == 2 and "no readable checkpoint" in err[-1] and "--overwrite" in err[-1]


def test_restoring_another_models_checkpoint_leaves_every_weight_as_it_was(tmp_path):
  def model(units):
    keras.utils.set_random_seed(0)
    m = ksf.prune_sign_flip(keras.Sequential([keras.Input((4,)), keras.layers.Dense(units),
                                              keras.layers.Dense(2)]), criterion="magnitude")
    m.compile("adam", "mse")
    m.optimizer.build(m.trainable_variables)
    return m
  other = model(3)
  saved = tf.train.CheckpointManager(tf.train.Checkpoint(model=other, optimizer=other.optimizer),
                                     str(tmp_path), max_to_keep=2)
  saved.save()
  mine = model(5)
  before = [v.numpy().copy() for v in mine.weights]
  checkpoint = tf.train.Checkpoint(model=mine, optimizer=mine.optimizer)
  manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=2)
  with pytest.raises(common.UsageError, match="does not fit this run's model"):
    train_bin.restore_newest_readable(checkpoint, manager, list(mine.weights))
  for v, b in zip(mine.weights, before):
    np.testing.assert_array_equal(v.numpy(), b)


def test_kill_9_then_resume_finishes_the_run(idx, tmp_path):
  run = tmp_path / "run"
  cmd = [sys.executable, "-m", "examples.train", "--dataset=mnist", "--data_source=idx",
         f"--idx_dir={idx}", "--epochs=8", "--batch_size=64", "--frequency=1",
         "--end_step=4", "--target_sparsity=0.8", "--test_examples=64", "--verbose=0",
         f"--output_dir={run}"]
  proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and not (run / "checkpoints" / "checkpoint").exists():
    time.sleep(0.2)
  time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (run / "checkpoints" / "checkpoint").exists()
  # The killed run's lock died with it: the resume is not refused as "in use".
  # TF_CPP_MIN_LOG_LEVEL unset and no -v: the binary's default output (examples/console.py).
  env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run(cmd + ["--resume", f"--export_dir={tmp_path / 'export'}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((run / "summary.json").read_text())
  assert summary["steps"] == 32 and abs(summary["sparsity"] - 0.8) < 0.01
  # Only the binary's lines: no TensorFlow C++ log (oneDNN, cuInit), no Keras header or
  # line, no warning; one line per epoch left after the checkpoint resumed from.
  assert result.stderr == ""
  lines = result.stdout.splitlines()
  assert lines[0] == f"Data: mnist: local IDX files in {idx}"
  resumed = int(re.fullmatch(r"Resumed from \S+ \(epoch (\d)\)", lines[1]).group(1))
  epochs = [line.split(":")[0] for line in lines if line.startswith("epoch ")]
  assert epochs == [f"epoch {e}/8" for e in range(resumed + 1, 9)]
  report = lines[2 + len(epochs):]
  assert report[0] == f"Exported {tmp_path / 'export'}" and report[-1].startswith("test accuracy ")
  assert all(line.startswith("  ") for line in report[1:-1]), report  # the export's table


# --- Keras 3 (JAX) ----------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(os.path.join(IDX_FASHION, "train-images-idx3-ubyte.gz")),
                    reason="needs Debian's dataset-fashion-mnist")
def test_keras3_resume_with_another_criterion_is_refused(tmp_path, jax_cache_env):
  env = dict(ENV, **jax_cache_env)  # the resumed run compiles what the first one did
  env.pop("TF_USE_LEGACY_KERAS", None)
  base = [sys.executable, "-m", "examples.train", "--keras=3", "--backend=jax",
          "--dataset=fashion_mnist", "--data_source=idx", "--model=lenet_300_100",
          "--scope=global", "--target_sparsity=0.5", "--frequency=2", "--end_step=4",
          "--train_examples=300", "--test_examples=100", "--batch_size=60",
          "--verbose=0", f"--output_dir={tmp_path / 'run'}"]
  first = subprocess.run(base + ["--criterion=hybrid", "--epochs=2"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  before = _tree(tmp_path / "run")
  again = subprocess.run(base + ["--criterion=magnitude", "--resume", "--epochs=3"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
  assert again.returncode == 2, again.stderr[-3000:]
  assert "--criterion: 'hybrid' in the run, 'magnitude' now" in again.stderr
  assert _tree(tmp_path / "run") == before
  # A truncated newest .keras checkpoint: the run resumes from the one before, saying so.
  newest = tmp_path / "run" / "checkpoints" / "epoch_2.keras"
  newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 2])
  resumed = subprocess.run(base + ["--criterion=hybrid", "--resume", "--epochs=2"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"checkpoint {newest} is unreadable" in resumed.stderr
  assert "Resumed from" in resumed.stdout and "(epoch 1)" in resumed.stdout
