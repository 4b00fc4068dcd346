"""Fault injection: a real full disk (issue 27). A small tmpfs is mounted when this
process may (root, a kernel that allows it); elsewhere the simulated ENOSPC cases of
tests/tf_keras/test_faults_export.py stand in. A full disk mid-export or mid-checkpoint leaves
the previous export and checkpoint whole and nothing half-written behind."""
import os
import subprocess

import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip import owned_dir
from keras_signflip.tf_keras._framework import keras, tf


@pytest.fixture
def small_disk(tmp_path):
  mount = tmp_path / "disk"
  mount.mkdir()
  if os.geteuid() != 0:
    pytest.skip("mounting a tmpfs needs root; simulated ENOSPC covers this elsewhere")
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
  if result.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
  try:
    yield mount
  finally:
    subprocess.run(["umount", str(mount)], check=False)


def _model(units):
  keras.utils.set_random_seed(0)
  return ksf.prune_sign_flip(keras.Sequential([keras.Input((16,)), keras.layers.Dense(units),
                                               keras.layers.Dense(4)]), criterion="magnitude")


def _files(path):
  return sorted(os.path.relpath(os.path.join(r, f), path)
                for r, _, files in os.walk(path) for f in files)


def test_full_disk_mid_export_keeps_the_previous_export(small_disk):
  target = small_disk / "export"
  ksf.export_saved_model(_model(8), str(target))
  before = {f: (target / f).read_bytes() for f in _files(target)}
  with pytest.raises(Exception) as e:  # TensorFlow's or the OS's out-of-space error
    ksf.export_saved_model(_model(4096), str(target), overwrite=True)  # ~300 KB of weights
  assert "space" in str(e.value).lower() or "exhausted" in type(e.value).__name__.lower()
  assert {f: (target / f).read_bytes() for f in _files(target)} == before
  assert owned_dir.is_owned(str(target), "export")
  assert sorted(os.listdir(small_disk)) == ["export"]  # no temporary sibling left


def test_full_disk_mid_checkpoint_keeps_the_previous_checkpoint(small_disk):
  model = _model(8)
  checkpoint = tf.train.Checkpoint(model=model)
  manager = tf.train.CheckpointManager(checkpoint, str(small_disk / "ckpt"), max_to_keep=2)
  first = manager.save()
  weights = [w.numpy().copy() for w in model.weights]
  with open(small_disk / "filler", "wb") as f:  # fill the disk but a few KB
    try:
      f.write(b"\0" * (400 * 1024))
    except OSError:
      pass
  with pytest.raises(Exception):
    manager.save()
  assert manager.latest_checkpoint == first
  for w in model.weights:
    w.assign(np.zeros_like(w.numpy()))
  checkpoint.restore(first).assert_existing_objects_matched()
  for w, want in zip(model.weights, weights):
    np.testing.assert_array_equal(w.numpy(), want)
