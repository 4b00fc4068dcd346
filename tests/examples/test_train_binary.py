"""examples/train.py and examples/export.py end to end."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from absl import flags

import keras_signflip as ksf
from keras_signflip import data as data_lib
from keras_signflip.tf_keras import export as export_lib
from keras_signflip.tf_keras._framework import keras, tf, tfmot

from examples import export as export_bin
from examples import train as train_bin

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)


def _flags(**overrides):
  FLAGS.unparse_flags()
  args = ["train"] + [f"--{k}={v}" for k, v in overrides.items()]
  FLAGS(args)
  FLAGS.verbose = 0


def _write_idx(directory, n_train=256, n_test=64, seed=0):
  """Tiny learnable IDX files: the label is which image quadrant is bright."""
  rng = np.random.RandomState(seed)
  os.makedirs(directory, exist_ok=True)
  for split, n in (("train", n_train), ("t10k", n_test)):
    y = rng.randint(0, 4, n).astype(np.uint8)
    x = (rng.rand(n, 28, 28) * 60).astype(np.uint8)
    for i, label in enumerate(y):
      r, c = divmod(int(label), 2)
      x[i, 14 * r:14 * r + 14, 14 * c:14 * c + 14] += 150
    for kind, arr, magic in (("images-idx3-ubyte", x, 3), ("labels-idx1-ubyte", y, 1)):
      header = bytes([0, 0, 8, magic]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
      with open(os.path.join(directory, f"{split}-{kind}"), "wb") as f:
        f.write(header + arr.tobytes())
  return directory


def _masks_and_flips(model):
  return list(ksf.masks(model).values()), list(ksf.flip_counts(model).values())


class _Interrupt(Exception):
  pass


def test_mock_data_train_kill_resume_export_reload(tmp_path, monkeypatch):
  common = dict(dataset="mnist", data_source="tfds", model="lenet_300_100",
                criterion="hybrid", scope="global", schedule="geometric",
                prune_fraction=0.5, frequency=4, target_sparsity=0.9,
                train_examples=128, test_examples=64, batch_size=16, epochs=2,
                learning_rate=0.01, seed=3)
  with tfds.testing.mock_data(num_examples=128):
    _flags(**common, output_dir=tmp_path / "full")
    _, full = train_bin.train()

    # Kill mid-epoch 2 (after epoch 1's checkpoint), then resume.
    original = train_bin.EpochLog

    class Killer(original):
      def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations.numpy() == 12:
          raise _Interrupt()
    monkeypatch.setattr(train_bin, "EpochLog", Killer)
    _flags(**common, output_dir=tmp_path / "cut")
    with pytest.raises(_Interrupt):
      train_bin.train()
    monkeypatch.setattr(train_bin, "EpochLog", original)
    _flags(**common, output_dir=tmp_path / "cut", resume=True,
           export_dir=tmp_path / "export")
    summary, resumed = train_bin.train()

  full_masks, full_flips = _masks_and_flips(full)
  res_masks, res_flips = _masks_and_flips(resumed)
  for a, b in zip(full_masks + full_flips, res_masks + res_flips):
    np.testing.assert_array_equal(a, b)
  assert summary["sparsity"] > 0.7 and summary["steps"] == 16
  saved = json.loads((tmp_path / "cut" / "summary.json").read_text())
  assert saved["test_accuracy"] == pytest.approx(summary["test_accuracy"])

  # Reload in a fresh process without keras_signflip; compare predictions.
  x = np.random.RandomState(0).rand(5, 28, 28, 1).astype("float32")
  np.save(tmp_path / "x.npy", x)
  want = ksf.strip_pruning(resumed).predict(x, verbose=0)
  code = ("import sys, numpy as np, tensorflow as tf; "
          "assert 'keras_signflip' not in sys.modules; "
          f"m = tf.saved_model.load({str(tmp_path / 'export')!r}); "
          f"x = np.load({str(tmp_path / 'x.npy')!r}); "
          "y = m.signatures['serving_default'](tf.constant(x))['output'].numpy(); "
          f"np.save({str(tmp_path / 'y.npy')!r}, y)")
  subprocess.run([sys.executable, "-c", code], check=True, env=ENV, cwd="/")
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-5, atol=1e-6)
  masks = list(ksf.masks(resumed).values())
  kernels = [l.kernel.numpy() for l in ksf.strip_pruning(resumed).layers if hasattr(l, "kernel")]
  assert len(kernels) == len(masks) == 3
  for k, m in zip(kernels, masks):
    assert not np.any(k[m == 0])


def test_export_binary_from_checkpoint(tmp_path):
  idx = _write_idx(str(tmp_path / "idx"))
  _flags(dataset="mnist", data_source="idx", idx_dir=idx, epochs=1, batch_size=32,
         target_sparsity=0.8, frequency=2, output_dir=tmp_path / "run")
  _, model = train_bin.train()
  FLAGS.unparse_flags()
  FLAGS(["export"])
  report = export_bin.export_run(str(tmp_path / "run"), str(tmp_path / "exp"))
  assert report["overall_sparsity"] == pytest.approx(
      np.mean([1 - m.mean() for m in ksf.masks(model).values()]), abs=0.05)
  loaded = tf.saved_model.load(str(tmp_path / "exp"))
  x = np.random.RandomState(1).rand(3, 28, 28, 1).astype("float32")
  np.testing.assert_allclose(loaded.signatures["serving_default"](tf.constant(x))["output"],
                             ksf.strip_pruning(model)(x), rtol=1e-5, atol=1e-6)
  report = export_bin.export_run(str(tmp_path / "run"), str(tmp_path / "exp_sparse"),
                                 kernels="sparse")
  assert len(report["kernels"]) == 3  # the three Dense layers of LeNet-300-100
  loaded = tf.saved_model.load(str(tmp_path / "exp_sparse"))
  np.testing.assert_allclose(loaded.signatures["serving_default"](tf.constant(x))["output"],
                             ksf.strip_pruning(model)(x), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not os.path.exists(os.path.join(data_lib.DEFAULT_IDX_DIR,
                                                    "train-images-idx3-ubyte.gz")),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_one_epoch_80_percent(tmp_path):
  out = tmp_path / "run"
  # `main` on these flags, as `python -m examples.train` runs it (in this process:
  # a subprocess would start TensorFlow again).
  _flags(dataset="fashion_mnist", data_source="idx", model="lenet_300_100",
         criterion="hybrid", target_sparsity=0.8, epochs=1, output_dir=out)
  train_bin.main(["train"])
  summary = json.loads((out / "summary.json").read_text())
  assert summary["sparsity"] == pytest.approx(0.8, abs=0.005)
  assert summary["test_accuracy"] > 0.80, summary["test_accuracy"]
  assert summary["data_source"].startswith("fashion_mnist: local IDX")


def test_flipout_recipe_flags_reach_the_target_through_its_events(tmp_path, capsys):
  """--schedule=flipout --optimizer=flipout: 95% is m = 5 halvings, one per epoch of
  a 6-epoch run (round(6 / 6)), the last capped at 95%, then a recovery epoch."""
  idx = tmp_path / "idx"
  _write_idx(str(idx), n_train=512)  # 4 steps per epoch at batch 128
  out = tmp_path / "run"
  FLAGS.unparse_flags()  # `main` as `python -m examples.train` runs it, in this process
  FLAGS(["train", "--dataset=mnist", "--data_source=idx",
         f"--idx_dir={idx}", "--model=lenet_300_100", "--criterion=hybrid", "--scope=global",
         "--schedule=flipout", "--optimizer=flipout", "--learning_rate=0.1", "--noise_scale=1",
         "--target_sparsity=0.95", "--epochs=6", "--batch_size=128", "--verbose=2",
         f"--output_dir={out}"])
  capsys.readouterr()
  train_bin.main(["train"])
  per_epoch = [float(line.split("sparsity ")[1].split("%")[0])
               for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
  assert per_epoch == [50.0, 75.0, 87.5, 93.75, 95.0, 95.0]
  assert json.loads((out / "summary.json").read_text())["sparsity"] == pytest.approx(0.95, abs=1e-4)


def test_mirrored_two_cpus_same_masks_as_one_device(tmp_path):
  idx = _write_idx(str(tmp_path / "idx"))
  common = dict(dataset="mnist", data_source="idx", idx_dir=idx, model="lenet_300_100",
                criterion="hybrid", scope="global", target_sparsity=0.8, frequency=4,
                epochs=1, optimizer="sgd", learning_rate=0.05, seed=1)
  _flags(**common, batch_size=32, strategy="default")
  one_summary, one = train_bin.train()
  _flags(**common, batch_size=16, strategy="mirrored")
  two_summary, two = train_bin.train()
  assert two_summary["replicas"] == 2 and one_summary["steps"] == two_summary["steps"]
  # Replicas sum gradients in another order, so weights may differ in the
  # last bits; masks then differ only where scores (near-)tie.
  for a, b in zip(_masks_and_flips(one)[0], _masks_and_flips(two)[0]):
    assert np.mean(a != b) <= 0.002


def test_mixed_precision_keeps_flip_state_float32(tmp_path):
  idx = _write_idx(str(tmp_path / "idx"))
  _flags(dataset="mnist", data_source="idx", idx_dir=idx, epochs=1, batch_size=32,
         mixed_precision=True, frequency=2)
  try:
    summary, model = train_bin.train()
  finally:
    keras.mixed_precision.set_global_policy("float32")
  wrappers = ksf.collect_wrappers(model)
  # The output layer computes in float32 (the Keras mixed-precision guide), the others in float16.
  assert [w.compute_dtype for w in wrappers] == ["float16"] * (len(wrappers) - 1) + ["float32"]
  assert model.output.dtype == tf.float32
  for w in wrappers:
    for s in w.flip_states:
      # Hybrid keeps no reference weights; the counts stay integer under float16.
      assert s.reference is None and s.flips.dtype == tf.int32 and s.prev_sign.dtype == tf.int8
      assert not np.any(s.weight.numpy()[s.mask.numpy() == 0])
  assert summary["sparsity"] > 0.5


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_multi_worker_two_processes_identical_masks_and_flips(tmp_path):
  idx = _write_idx(str(tmp_path / "idx"))
  ports = [_free_port(), _free_port()]
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  for i in range(2):
    env = dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}}))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "examples.train", "--strategy=multi_worker", "--dataset=mnist",
         "--data_source=idx", f"--idx_dir={idx}", "--epochs=1", "--batch_size=16",
         "--criterion=hybrid", "--frequency=2", "--target_sparsity=0.8", "--verbose=0",
         f"--output_dir={tmp_path / 'run'}"], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
  for p in procs:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out.decode()[-3000:]
  chief = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints"))
  other = tf.train.load_checkpoint(str(tmp_path / "run" / "worker_1"))
  keys = [k for k in chief.get_variable_to_shape_map() if "mask" in k or "flips" in k]
  assert len(keys) >= 6
  for k in keys:
    np.testing.assert_array_equal(chief.get_tensor(k), other.get_tensor(k))


@pytest.mark.parametrize("args,match", [
    (["--dataset=no_such_set"], "dataset"),
    (["--model=vgg99"], "model"),
    (["--criterion=biggest"], "criterion"),
    (["--target_sparsity=1.0"], "target_sparsity"),
    (["--resume"], "--resume needs --output_dir"),
    (["--schedule=flipout", "--target_sparsity=0"], "--schedule=flipout needs"),
])
def test_bad_flags_fail_with_one_line(args, match, capsys):
  FLAGS.unparse_flags()
  FLAGS(["train"] + args)
  with pytest.raises(SystemExit) as e:
    train_bin.main(["train"])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("train.py: error:") and match in err[0]


def test_bad_flag_cli_leaves_checkpoints_untouched(tmp_path):
  idx = _write_idx(str(tmp_path / "idx"))
  _flags(dataset="mnist", data_source="idx", idx_dir=idx, epochs=1, batch_size=64,
         frequency=1, output_dir=tmp_path / "run")
  train_bin.train()
  ckpt = tmp_path / "run" / "checkpoints"
  before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
  result = subprocess.run([sys.executable, "-m", "examples.train", "--model=vgg99",
                           f"--output_dir={tmp_path / 'run'}", "--resume"],
                          env=ENV, cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("train.py: error: --model")
  assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before


def test_tflite_export_with_sparsity_optimisation(tmp_path):
  model = ksf.prune_sign_flip(keras.Sequential([keras.layers.Dense(32, input_shape=(16,)),
                                                keras.layers.Dense(4)]),
                              criterion="magnitude",
                              pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                                  0.8, 0, frequency=1))
  for w in ksf.collect_wrappers(model):
    w.pruning_step.assign(1)
    w.pruning_obj.conditional_mask_update()
    w.pruning_obj.weight_mask_op()
  size = export_lib.export_tflite(model, str(tmp_path / "m.tflite"))
  assert size == (tmp_path / "m.tflite").stat().st_size > 0
  interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "m.tflite"))
  interpreter.allocate_tensors()
  x = np.random.RandomState(0).rand(1, 16).astype("float32")
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
  interpreter.invoke()
  got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
  np.testing.assert_allclose(got, ksf.strip_pruning(model)(x), rtol=1e-4, atol=1e-5)


def test_noise_on_reaches_both_optimizers_and_a_resumed_run_keeps_it(tmp_path):
  from examples import common as common_lib  # pylint: disable=g-import-not-at-top
  from examples import run_dir  # pylint: disable=g-import-not-at-top
  from keras_signflip import owned_dir  # pylint: disable=g-import-not-at-top
  for optimizer in ("flipout", "momentum"):
    for where in ("prunable", "all"):
      _flags(optimizer=optimizer, noise_scale=1, noise_on=where, epochs=2)
      made = common_lib.make_optimizer(total_steps=10)
      assert (made.noise_factor, made.noise_on) == (1.0, where), optimizer
  with pytest.raises(Exception, match="noise_on"):
    _flags(noise_on="everywhere")
  # A run written before the flag existed (no noise_on in its config) had the noise on
  # the pruned kernels: it resumes with that, and is refused with the other.
  run = tmp_path / "run"
  _flags(noise_scale=1, epochs=2, output_dir=run)
  old = {k: v for k, v in run_dir.config().items() if k != "noise_on"}
  run.mkdir()
  owned_dir.write_marker(str(run), "run")
  (run / "config.json").write_text(json.dumps(old))
  resolved, _ = run_dir.inspect(str(run), run_dir.config(), resume=True, overwrite=False)
  assert resolved["noise_on"] == "prunable"
  _flags(noise_scale=1, epochs=2, output_dir=run, noise_on="all")
  with pytest.raises(common_lib.UsageError, match="--noise_on: 'prunable' in the run, 'all' now"):
    run_dir.inspect(str(run), run_dir.config(), resume=True, overwrite=False)
  # Likewise a run of a network built before its revision went up (resnet20: 2).
  _flags(epochs=2, output_dir=run, model="resnet20")
  old = {k: v for k, v in run_dir.config().items() if k != "model_revision"}
  (run / "config.json").write_text(json.dumps(old))
  with pytest.raises(common_lib.UsageError,
                     match=r"the model's revision \(keras_signflip.models.REVISIONS\): 1 in "
                           r"the run, 2 now"):
    run_dir.inspect(str(run), run_dir.config(), resume=True, overwrite=False)
