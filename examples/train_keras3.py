"""The training job of examples/train.py on Keras 3 (--keras=3 --backend=...).

Same data (TFDS / IDX through tf.data, which Keras 3 reads on every
backend), models, criteria and schedules as the tf_keras job; the model is a
Keras 3 model wrapped by `keras_signflip.prune_sign_flip`. Checkpoints are
`.keras` files written atomically after every epoch; --resume continues from
the newest. --export_dir writes the stripped model as `model.keras` and, on
the TensorFlow and JAX backends, a SavedModel (`model.export`).
"""
import glob
import os
import re
import sys
import time

from absl import flags

import keras
from keras import ops

import keras_signflip as ksf
from keras_signflip import data as data_lib
from keras_signflip import models as models_lib
from keras_signflip import owned_dir
from keras_signflip.keras3 import export as export_lib
from keras_signflip.keras3 import schedules

from examples import common
from examples import console
from examples import run_dir

FLAGS = flags.FLAGS


@keras.saving.register_keras_serializable(package="keras_signflip_examples")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup from 0 to `peak` over `steps`, then constant."""

  def __init__(self, peak, steps):
    self.peak, self.steps = float(peak), int(steps)

  def __call__(self, step):
    fraction = ops.minimum(ops.cast(step + 1, "float32") / float(max(self.steps, 1)), 1.0)
    return self.peak * fraction

  def get_config(self):
    return {"peak": self.peak, "steps": self.steps}


def _optimizer(total_steps=None):
  """The --optimizer, built by examples/common.py for Keras 3."""
  return common.make_optimizer(total_steps, keras, Warmup)


def _build(data, total_steps):
  model = models_lib.get(FLAGS.model, keras)(data.input_shape, data.num_classes)
  if FLAGS.criterion != "none":
    schedule = schedules.get(common.make_schedule(total_steps).get_config())
    model = ksf.prune_sign_flip(model, pruning_schedule=schedule,
                                criterion=common.make_criterion(), scope=FLAGS.scope,
                                min_flips=FLAGS.min_flips)
  model.compile(_optimizer(total_steps),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  return model


def _checkpoints(output_dir):
  paths = glob.glob(os.path.join(output_dir, "checkpoints", "epoch_*.keras"))
  return sorted(paths, key=lambda p: int(re.search(r"epoch_(\d+)", p).group(1)))


def _save_checkpoint(model, output_dir, epoch):
  os.makedirs(os.path.join(output_dir, "checkpoints"), exist_ok=True)
  path = os.path.join(output_dir, "checkpoints", f"epoch_{epoch}.keras")
  model.save(path + ".partial.keras")
  os.replace(path + ".partial.keras", path)  # never a half-written checkpoint
  for old in _checkpoints(output_dir)[:-2]:
    os.remove(old)


def validate():
  if FLAGS.criterion == "tfmot":
    raise common.UsageError("--criterion=tfmot is TF-MOT's magnitude pruning, which needs "
                            "tf_keras; with --keras=3 use --criterion=magnitude.")
  if FLAGS.strategy not in ("auto", "one_device"):
    raise common.UsageError(f"--strategy={FLAGS.strategy} is a tf.distribute strategy of "
                            "the tf_keras job; --keras=3 trains on one device.")
  for flag in ("tflite", "jit_compile"):
    if getattr(FLAGS, flag):
      raise common.UsageError(f"--{flag} is not supported with --keras=3.")
  if FLAGS.resume and not FLAGS.output_dir:
    raise common.UsageError("--resume needs --output_dir (the run to resume).")
  if FLAGS.resume and FLAGS.overwrite:
    raise common.UsageError("--resume continues the run in --output_dir and --overwrite "
                            "starts it over; pass one of them.")
  _optimizer()
  run_dir.check_export_dir(FLAGS.export_dir, FLAGS.overwrite)


def load_newest_readable(paths):
  """(model, path) of the newest `.keras` checkpoint that loads, or (None, None).

  Loading builds a new model, so a file that fails (truncated, bit-flipped)
  changes nothing; the previous kept checkpoint is then used, with a warning
  naming both.
  """
  failures = []
  for path in reversed(paths):
    try:
      model = keras.saving.load_model(path)
    except Exception as e:  # pylint: disable=broad-except  (any corruption: report, fall back)
      failures.append((path, f"{type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''}"))
      continue
    for bad, why in failures:
      print(f"warning: checkpoint {bad} is unreadable ({why}); resuming from {path} instead.",
            file=sys.stderr)
    return model, path
  if failures:
    raise common.UsageError("no readable checkpoint to resume from: " + "; ".join(
        f"{p} ({why})" for p, why in failures) + ". Start the run over with --overwrite.")
  return None, None


def train():
  """Runs the Keras 3 job; returns (summary dict, model)."""
  validate()
  started = time.time()
  keras.utils.set_random_seed(FLAGS.seed)
  if FLAGS.mixed_precision:
    keras.mixed_precision.set_global_policy("mixed_float16")
  data, train_size = common.load_data()
  steps_per_epoch = -(-train_size // FLAGS.batch_size)
  run = run_dir.prepare(steps_per_epoch)
  try:
    return _run(data, steps_per_epoch, started)
  finally:
    if run:
      run.close()


def _run(data, steps_per_epoch, started):
  """Builds or resumes, trains, evaluates and exports; returns (summary, model)."""
  total_steps = steps_per_epoch * common.schedule_epochs()  # the schedule's and decays' length
  model, first_epoch = _build(data, total_steps), 0
  output_dir = FLAGS.output_dir
  if output_dir and FLAGS.resume:
    loaded, path = load_newest_readable(_checkpoints(output_dir))
    if loaded is not None:
      model, first_epoch = loaded, int(re.search(r"epoch_(\d+)", path).group(1))
      print(f"Resumed from {path} (epoch {first_epoch})")
  callbacks = ([] if FLAGS.criterion == "none" else [ksf.UpdatePruningStep()]) + (
      console.progress_bar(keras.callbacks.Callback, steps_per_epoch,
                           lambda e: f"epoch {e + 1}/{FLAGS.epochs}"))
  test = data_lib.pipeline(data.test, FLAGS.batch_size, take=FLAGS.test_examples)
  cached = (data.train.take(FLAGS.train_examples) if FLAGS.train_examples else data.train).cache()
  for epoch in range(first_epoch, FLAGS.epochs):
    train_ds = data_lib.pipeline(cached, FLAGS.batch_size, shuffle_seed=FLAGS.seed * 1000 + epoch,
                                 cache=False, augment=data.augment)
    start = time.time()
    # shuffle=False: the dataset is shuffled per (seed, epoch) above; Keras warns that
    # its default shuffle=True cannot apply to a tf.data.Dataset.
    history = model.fit(train_ds, epochs=epoch + 1, initial_epoch=epoch, validation_data=test,
                        callbacks=callbacks, verbose=console.keras_verbose(), shuffle=False)
    logs = {k: v[-1] for k, v in history.history.items()}
    sparsity = ksf.sparsity_report(model)["overall"] if FLAGS.criterion != "none" else 0.0
    print(f"epoch {epoch + 1}/{FLAGS.epochs}: loss {logs.get('loss', float('nan')):.4f} "
          f"val_accuracy {logs.get('val_accuracy', float('nan')):.4f} sparsity "
          f"{100 * sparsity:.1f}% ({time.time() - start:.1f}s)", flush=True)
    if output_dir:
      _save_checkpoint(model, output_dir, epoch + 1)
  loss, accuracy = model.evaluate(test, verbose=0)
  report = (ksf.sparsity_report(model) if FLAGS.criterion != "none"
            else {"overall": 0.0, "layers": {}, "flips": {}})
  summary = {
      "keras": keras.__version__, "backend": keras.backend.backend(),
      "dataset": FLAGS.dataset, "data_source": data.source, "model": FLAGS.model,
      "criterion": FLAGS.criterion, "scope": FLAGS.scope,
      "test_accuracy": float(accuracy), "test_loss": float(loss),
      "sparsity": report["overall"], "sparsity_per_layer": report["layers"],
      "flips": int(sum(report["flips"].values())), "flips_per_layer": report["flips"],
      "steps": int(ops.convert_to_numpy(model.optimizer.iterations)), "epochs": FLAGS.epochs,
      "target_sparsity": FLAGS.target_sparsity, "wall_seconds": time.time() - started,
  }
  try:
    common.check_final_sparsity(model)
  except common.RunError:
    if output_dir:
      common.dump_json(dict(summary, target_reached=False),
                       os.path.join(output_dir, "summary.json"))
    raise
  if FLAGS.export_dir:
    plain = ksf.strip_pruning(model) if FLAGS.criterion != "none" else model
    # Written beside --export_dir and renamed into place (keras_signflip.owned_dir).
    with owned_dir.staged(FLAGS.export_dir, "export", FLAGS.overwrite, "--overwrite") as tmp:
      plain.save(os.path.join(tmp, "model.keras"))
      if keras.backend.backend() in ("tensorflow", "jax") and FLAGS.criterion != "none":
        export_lib.export_saved_model(model, os.path.join(tmp, "saved_model"), verbose=False)
    summary["export"] = {"keras": os.path.join(FLAGS.export_dir, "model.keras")}
    if os.path.isdir(os.path.join(FLAGS.export_dir, "saved_model")):
      summary["export"]["saved_model"] = os.path.join(FLAGS.export_dir, "saved_model")
    print(f"Exported {FLAGS.export_dir}: " + ", ".join(
        os.path.basename(p) for p in summary["export"].values()))
  print(f"test accuracy {accuracy:.4f}, sparsity {100 * summary['sparsity']:.2f}%, flips "
        f"{summary['flips']}, {summary['steps']} steps, {summary['wall_seconds']:.1f}s "
        f"(Keras {keras.__version__}, {keras.backend.backend()} backend)")
  if output_dir:
    common.dump_json(summary, os.path.join(output_dir, "summary.json"))
  return summary, model
