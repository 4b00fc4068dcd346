"""Exports never destroy what keras_signflip did not write (issue 27, class 1).

Each case sets up files on disk, makes an export fail or succeed, and compares
what is on disk afterwards with what must be there: a user's files intact,
an earlier export intact after a failure, no temporary directory left
behind. tf_keras runs here; Keras 3 (JAX backend) runs its cases in one
subprocess (`_KERAS3_SCRIPT`), whose observations the `test_keras3_*` tests check.
"""
import errno
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

import keras_signflip as ksf
from keras_signflip import owned_dir
from keras_signflip.tf_keras import export as export_lib
from keras_signflip.tf_keras._framework import keras, tf, tfmot

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _model(seed=0):
  keras.utils.set_random_seed(seed)
  base = keras.Sequential([keras.layers.Dense(4, input_shape=(3,), name="d"),
                           keras.layers.Dense(2, name="out")])
  return ksf.prune_sign_flip(base, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
      0.5, 0, frequency=1), criterion="magnitude")


def _files(path):
  """{relative path: bytes} of every file under `path`."""
  path = str(path)
  out = {}
  for d, _, names in os.walk(path):
    for n in names:
      p = os.path.join(d, n)
      with open(p, "rb") as f:
        out[os.path.relpath(p, path)] = f.read()
  return out


def _user_dir(path, name="notes.txt", text=b"my results, not a model\n"):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, name), "wb") as f:
    f.write(text)
  return {name: text}


def _serve(path, x):
  return list(tf.saved_model.load(str(path)).signatures["serving_default"](
      tf.constant(x)).values())[0].numpy()


X = np.random.RandomState(1).randn(5, 3).astype("float32")


# tf_keras -----------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True])
def test_user_files_in_the_target_are_never_replaced(tmp_path, overwrite):
  expected = _user_dir(tmp_path / "d")
  with pytest.raises(ValueError, match="not written by keras_signflip") as e:
    ksf.export_saved_model(_model(), str(tmp_path / "d"), overwrite=overwrite, verbose=False)
  assert "never replaced" in str(e.value) and "overwrite=True" in str(e.value)
  assert _files(tmp_path / "d") == expected
  assert os.listdir(tmp_path) == ["d"]  # nothing written beside it either


def test_a_file_at_the_target_is_refused_even_with_overwrite(tmp_path):
  (tmp_path / "d").write_bytes(b"user data")
  with pytest.raises(ValueError, match="is a file"):
    ksf.export_saved_model(_model(), str(tmp_path / "d"), overwrite=True, verbose=False)
  assert (tmp_path / "d").read_bytes() == b"user data"
  assert os.listdir(tmp_path) == ["d"]


def test_an_export_of_another_kind_is_not_replaced(tmp_path):
  os.makedirs(tmp_path / "d")
  owned_dir.write_marker(str(tmp_path / "d"), "run")
  (tmp_path / "d" / "config.json").write_text("{}")
  before = _files(tmp_path / "d")
  with pytest.raises(ValueError, match="holds a keras_signflip run, not an export"):
    ksf.export_saved_model(_model(), str(tmp_path / "d"), overwrite=True, verbose=False)
  assert _files(tmp_path / "d") == before


def test_reexport_over_our_export_with_overwrite_replaces_it_and_marks_it(tmp_path):
  path = str(tmp_path / "export")
  ksf.export_saved_model(_model(0), path, verbose=False)
  second = _model(1)
  ksf.export_saved_model(second, path, overwrite=True, verbose=False)
  np.testing.assert_allclose(_serve(path, X), ksf.strip_pruning(second)(X).numpy(),
                             rtol=1e-5, atol=1e-6)
  assert owned_dir.read_marker(path) == {"written_by": "keras_signflip", "kind": "export",
                                         "version": ksf.__version__}
  assert os.listdir(tmp_path) == ["export"]  # no temporary or old directory left


def test_our_export_without_overwrite_is_refused_naming_overwrite(tmp_path):
  path = str(tmp_path / "export")
  ksf.export_saved_model(_model(), path, verbose=False)
  before = _files(path)
  with pytest.raises(ValueError, match=r"earlier keras_signflip export; pass overwrite=True"):
    ksf.export_saved_model(_model(1), path, verbose=False)
  assert _files(path) == before


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   KeyboardInterrupt()], ids=["ENOSPC", "interrupt"])
def test_failure_mid_write_keeps_the_old_export_and_no_temp_dir(tmp_path, monkeypatch, error):
  path = str(tmp_path / "export")
  ksf.export_saved_model(_model(), path, verbose=False)
  before = _files(path)
  real_save = tf.saved_model.save

  def save_then_fill_the_disk(obj, export_dir, **kwargs):
    real_save(obj, export_dir, **kwargs)  # a half-written model in the temporary directory
    raise error

  monkeypatch.setattr(tf.saved_model, "save", save_then_fill_the_disk)
  with pytest.raises(type(error)):
    ksf.export_saved_model(_model(1), path, overwrite=True, verbose=False)
  assert _files(path) == before
  assert os.listdir(tmp_path) == ["export"]


def test_failed_swap_moves_the_old_directory_back(tmp_path, monkeypatch):
  path = str(tmp_path / "export")
  with owned_dir.staged(path, "export") as tmp:
    (pathlib.Path(tmp) / "saved_model.pb").write_bytes(b"old")
  before = _files(path)
  real_replace = os.replace

  def replace(src, dst):
    if os.path.basename(src).startswith(".export.tmp-"):
      raise OSError(errno.ENOSPC, "No space left on device")
    real_replace(src, dst)

  monkeypatch.setattr(owned_dir.os, "replace", replace)
  with pytest.raises(OSError, match="No space"):
    with owned_dir.staged(path, "export", overwrite=True) as tmp:
      (pathlib.Path(tmp) / "saved_model.pb").write_bytes(b"new")
  assert _files(path) == before
  assert os.listdir(tmp_path) == ["export"]


def test_user_dirs_named_like_old_temp_names_are_untouched(tmp_path):
  path = str(tmp_path / "export")
  beside = {n: _user_dir(tmp_path / n) for n in ("export.tmp", "export.partial", ".export-x")}
  (tmp_path / "model.tflite.tmp").write_bytes(b"user file")
  ksf.export_saved_model(_model(), path, verbose=False)
  ksf.export_saved_model(_model(1), path, overwrite=True, verbose=False)
  size = export_lib.export_tflite(_model(1), str(tmp_path / "model.tflite"))
  for name, expected in beside.items():
    assert _files(tmp_path / name) == expected, name
  assert (tmp_path / "model.tflite.tmp").read_bytes() == b"user file"
  assert os.path.getsize(tmp_path / "model.tflite") == size
  assert sorted(os.listdir(tmp_path)) == sorted(list(beside) + ["export", "model.tflite",
                                                                "model.tflite.tmp"])


def test_an_empty_existing_directory_is_accepted(tmp_path):
  os.makedirs(tmp_path / "export")
  model = _model()
  ksf.export_saved_model(model, str(tmp_path / "export"), verbose=False)
  np.testing.assert_allclose(_serve(tmp_path / "export", X), ksf.strip_pruning(model)(X).numpy(),
                             rtol=1e-5, atol=1e-6)
  assert owned_dir.is_owned(str(tmp_path / "export"), "export")


def test_export_tflite_never_replaces_a_directory_or_an_unnamed_overwrite(tmp_path):
  expected = _user_dir(tmp_path / "model.tflite")
  with pytest.raises(ValueError, match="is a directory"):
    export_lib.export_tflite(_model(), str(tmp_path / "model.tflite"), overwrite=True)
  assert _files(tmp_path / "model.tflite") == expected
  (tmp_path / "m.tflite").write_bytes(b"user model")
  with pytest.raises(ValueError, match="exists; pass overwrite=True"):
    export_lib.export_tflite(_model(), str(tmp_path / "m.tflite"))
  assert (tmp_path / "m.tflite").read_bytes() == b"user model"
  assert sorted(os.listdir(tmp_path)) == ["m.tflite", "model.tflite"]


def test_export_binary_overwrite_over_a_foreign_dir_is_refused(tmp_path, capsys):
  from examples import export as export_bin  # pylint: disable=g-import-not-at-top
  expected = _user_dir(tmp_path / "exp")
  with flagsaver.flagsaver():
    flags.FLAGS(["export", f"--run_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'exp'}",
                 "--overwrite"])
    with pytest.raises(SystemExit) as e:
      export_bin.main([])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "export.py: error:" in err and "not written by keras_signflip" in err
  assert "even with --overwrite" in err
  assert _files(tmp_path / "exp") == expected


def test_check_target_refuses_symlinks_and_a_file_in_the_parents(tmp_path):
  _user_dir(tmp_path / "real")
  os.symlink(tmp_path / "real", tmp_path / "link")
  with pytest.raises(ValueError, match="symbolic link"):
    owned_dir.check_target(str(tmp_path / "link"), "export", overwrite=True)
  (tmp_path / "f").write_text("x")
  with pytest.raises(ValueError, match="is not a directory"):
    owned_dir.check_target(str(tmp_path / "f" / "sub" / "export"), "export", overwrite=True)
  assert sorted(os.listdir(tmp_path)) == ["f", "link", "real"]
  assert (tmp_path / "f").read_text() == "x"


def test_temp_siblings_are_fresh_hidden_names_beside_the_target(tmp_path):
  _user_dir(tmp_path / ".export.tmp-")  # even the bare prefix is never reused
  names = {os.path.basename(owned_dir.temp_sibling(str(tmp_path / "export") + "/"))
           for _ in range(3)}
  assert len(names) == 3 and all(n.startswith(".export.tmp-") and n != ".export.tmp-"
                                 for n in names)
  assert _files(tmp_path / ".export.tmp-") == {"notes.txt": b"my results, not a model\n"}
  assert not os.path.exists(tmp_path / "export")


# Keras 3 on JAX, in one subprocess ----------------------------------------

_KERAS3_SCRIPT = r'''
import errno, json, os, sys
import numpy as np
import keras
import keras_signflip as ksf
from keras_signflip import owned_dir
from keras_signflip.keras3 import schedules

root = sys.argv[1]
out = {}

def files(path):
  got = {}
  for d, _, names in os.walk(path):
    for n in names:
      with open(os.path.join(d, n), "rb") as f:
        got[os.path.relpath(os.path.join(d, n), path)] = f.read().hex()
  return got

def model(seed):
  keras.utils.set_random_seed(seed)
  base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="out")])
  return ksf.prune_sign_flip(base, pruning_schedule=schedules.ConstantSparsity(0.5, 0))

def attempt(case, path, m, **kwargs):
  try:
    ksf.export_saved_model(m, path, verbose=False, **kwargs)
    return None
  except (ValueError, OSError) as e:
    return f"{type(e).__name__}: {e}"

for overwrite in (False, True):
  d = os.path.join(root, f"user_{overwrite}")
  os.makedirs(d)
  with open(os.path.join(d, "notes.txt"), "w") as f:
    f.write("mine")
  out[f"user_{overwrite}"] = {"error": attempt("user", d, model(0), overwrite=overwrite),
                              "files": files(d), "beside": sorted(os.listdir(root))}

f = os.path.join(root, "a_file")
with open(f, "w") as fh:
  fh.write("mine")
out["file"] = {"error": attempt("file", f, model(0), overwrite=True), "text": open(f).read()}

exp = os.path.join(root, "sub", "export")
os.makedirs(os.path.join(root, "sub", "export.partial"))  # the old fixed temporary name
with open(os.path.join(root, "sub", "export.partial", "notes.txt"), "w") as fh:
  fh.write("mine")
first = attempt("first", exp, model(0))
before = files(exp)
refused = attempt("again", exp, model(1))
out["no_overwrite"] = {"first": first, "error": refused, "same": files(exp) == before}

real_export = keras.Model.export
def export_then_fail(self, path, **kwargs):
  real_export(self, path, **kwargs)
  raise OSError(errno.ENOSPC, "No space left on device")
keras.Model.export = export_then_fail
failed = attempt("enospc", exp, model(1), overwrite=True)
keras.Model.export = real_export
out["enospc"] = {"error": failed, "same": files(exp) == before,
                 "beside": sorted(os.listdir(os.path.join(root, "sub")))}

second = model(1)
out["overwrite"] = {"error": attempt("overwrite", exp, second, overwrite=True),
                    "changed": files(exp) != before, "marker": owned_dir.read_marker(exp),
                    "beside": sorted(os.listdir(os.path.join(root, "sub"))),
                    "partial": files(os.path.join(root, "sub", "export.partial"))}
import tensorflow as tf
x = np.random.RandomState(1).randn(4, 3).astype("float32")
served = list(tf.saved_model.load(exp).signatures["serving_default"](tf.constant(x)).values())[0]
out["overwrite"]["serves_new"] = bool(np.allclose(
    served.numpy(), np.asarray(ksf.strip_pruning(second)(x)), rtol=1e-5, atol=1e-6))

empty = os.path.join(root, "empty")
os.makedirs(empty)
out["empty"] = {"error": attempt("empty", empty, model(0)),
                "owned": owned_dir.is_owned(empty, "export")}
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def keras3_results(tmp_path_factory):
  for package in ("jax", "keras", "tensorflow"):
    if importlib.util.find_spec(package) is None:
      pytest.skip(f"{package} is not installed")
  root = tmp_path_factory.mktemp("keras3")
  env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TF_USE_LEGACY_KERAS", None)
  result = subprocess.run([sys.executable, "-c", _KERAS3_SCRIPT, str(root)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
  assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
  return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("overwrite", [False, True])
def test_keras3_user_files_in_the_target_are_never_replaced(keras3_results, overwrite):
  got = keras3_results[f"user_{overwrite}"]
  assert got["error"].startswith("ValueError") and "not written by keras_signflip" in got["error"]
  assert got["files"] == {"notes.txt": b"mine".hex()}
  assert got["beside"] == ["user_False"] + (["user_True"] if overwrite else [])


def test_keras3_a_file_at_the_target_is_refused(keras3_results):
  got = keras3_results["file"]
  assert "is a file" in got["error"] and got["text"] == "mine"


def test_keras3_our_export_without_overwrite_is_refused_naming_overwrite(keras3_results):
  got = keras3_results["no_overwrite"]
  assert got["first"] is None
  assert "earlier keras_signflip export; pass overwrite=True" in got["error"] and got["same"]


def test_keras3_failure_mid_write_keeps_the_old_export_and_no_temp_dir(keras3_results):
  got = keras3_results["enospc"]
  assert got["error"].startswith("OSError") and "No space left" in got["error"]
  assert got["same"] and got["beside"] == ["export", "export.partial"]


def test_keras3_reexport_with_overwrite_replaces_ours_and_spares_the_user_partial_dir(
    keras3_results):
  got = keras3_results["overwrite"]
  assert got["error"] is None and got["changed"] and got["serves_new"]
  assert got["marker"]["written_by"] == "keras_signflip" and got["marker"]["kind"] == "export"
  assert got["beside"] == ["export", "export.partial"]
  assert got["partial"] == {"notes.txt": b"mine".hex()}


def test_keras3_an_empty_existing_directory_is_accepted(keras3_results):
  assert keras3_results["empty"] == {"error": None, "owned": True}
