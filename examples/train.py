r"""Train a model with any pruning criterion on a TFDS dataset; export it sparse.

    python -m examples.train --dataset=fashion_mnist --model=lenet_300_100 \
        --criterion=hybrid --scope=global --schedule=geometric \
        --target_sparsity=0.9 --epochs=3 --output_dir=runs/hybrid \
        --export_dir=runs/hybrid/export

Checkpoints every epoch under --output_dir; --resume continues an interrupted
run from its last checkpoint (same seed -> same masks and flip counts as an
uninterrupted run). Writes TensorBoard logs, config.json and summary.json
under --output_dir. `python -m examples.train --helpfull` lists every flag.

--keras=3 --backend=jax|tensorflow|torch runs the same job on a Keras 3 model
(examples/train_keras3.py); the backend is chosen before Keras 3 is imported.

Output: a line naming where the data came from, one line per epoch (with a
live bar during the epoch when stdout is a terminal; none in a log file or
pipe), then the export report and the final line. Errors go to stderr as one
`train.py: error: ...` line. -v 0 (absl's --verbosity) brings back what
TensorFlow and Keras print themselves: TensorFlow's C++ and Python logs and
Keras' line per epoch (-v -1: their warnings and errors only). Without -v the
binary sets TF_CPP_MIN_LOG_LEVEL=3 before TensorFlow loads, unless it is
already set; --verbose=0|1|2 still chooses Keras' own progress output.
"""
import os
import sys
import time
import warnings


def _preselect_keras_backend(argv):
  """KERAS_BACKEND from --backend, before anything imports Keras 3.

  TensorFlow's own imports load Keras 3 with its default backend, and Keras
  reads KERAS_BACKEND only once: absl parses flags too late for that.
  """
  for i, arg in enumerate(argv):
    if arg.startswith("--backend="):
      os.environ["KERAS_BACKEND"] = arg.split("=", 1)[1]
    elif arg == "--backend" and i + 1 < len(argv):
      os.environ["KERAS_BACKEND"] = argv[i + 1]


_preselect_keras_backend(sys.argv)

from absl import app, flags  # noqa: E402

from examples import console  # noqa: E402  (imports no TensorFlow)

# TensorFlow's log level is set before it loads, and only when run as a program.
with console.quiet_imports(active=__name__ == "__main__"):
  import keras_signflip as ksf
  from keras_signflip import schedule_checks
  from keras_signflip import data as data_lib
  from keras_signflip.tf_keras import export as export_lib
  from keras_signflip.tf_keras._framework import keras, tf

  from examples import common
  from examples import run_dir

flags.DEFINE_integer("verbose", None, "Keras' own progress output besides the binary's lines: "
                     "0 none, 1 its bar, 2 its line per epoch. Default: none (2 with -v).")
flags.declare_key_flag("verbosity")
flags.DEFINE_enum("keras", "2", ["2", "3"], "2: tf_keras with TF-MOT; 3: Keras 3.")
flags.DEFINE_enum("backend", "tensorflow", ["tensorflow", "jax", "torch"],
                  "Keras 3 backend (with --keras=3).")
FLAGS = flags.FLAGS


def validate():
  common.validate_common()
  if FLAGS.resume and not FLAGS.output_dir:
    raise common.UsageError("--resume needs --output_dir (the run to resume).")
  if FLAGS.resume and FLAGS.overwrite:
    raise common.UsageError("--resume continues the run in --output_dir and --overwrite "
                            "starts it over; pass one of them.")
  run_dir.check_export_dir(FLAGS.export_dir, FLAGS.overwrite)


def restore_newest_readable(checkpoint, manager, variables):
  """Restores the newest checkpoint that reads back whole; returns its path, or None.

  A checkpoint is read in full first (TensorFlow checks every tensor's
  checksum), and a restore that fails part-way (a checkpoint of another
  model) puts every variable back as it was, so no weight is half-restored.
  An unreadable newest checkpoint falls back to the previous kept one, with
  a warning naming both.
  """
  failures = []
  for path in reversed(manager.checkpoints):
    try:
      reader = tf.train.load_checkpoint(path)
      for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)
    except Exception as e:  # pylint: disable=broad-except  (any corruption: report, fall back)
      failures.append((path, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
      continue
    before = [v.numpy() for v in variables]
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
      for v, value in zip(variables, before):
        v.assign(value)
      raise common.UsageError(f"{path} does not fit this run's model "
                              f"({str(e).splitlines()[0][:300]}); nothing was restored.") from None
    for bad, why in failures:
      print(f"warning: checkpoint {bad} is unreadable ({why}); resuming from {path} instead.",
            file=sys.stderr)
    return path
  if failures:
    raise common.UsageError("no readable checkpoint to resume from: " + "; ".join(
        f"{p} ({why})" for p, why in failures) + ". Start the run over with --overwrite.")
  return None


class EpochLog(keras.callbacks.Callback):
  """The binary's line per epoch: loss, accuracy, sparsity, flips, time."""

  seconds = []  # epoch times of the last run (read by benchmarks)

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    EpochLog.seconds.append(time.time() - self._start)
    sparsity, _, flips = common.model_sparsity(self.model)
    logs = logs or {}
    print(f"epoch {epoch + 1}/{FLAGS.epochs}: loss {logs.get('loss', float('nan')):.4f} "
          f"accuracy {logs.get('accuracy', float('nan')):.4f} "
          f"val_accuracy {logs.get('val_accuracy', float('nan')):.4f} "
          f"sparsity {100 * sparsity:.2f}% flips {flips} "
          f"({time.time() - self._start:.1f}s)", flush=True)


def _is_chief(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  return resolver is None or resolver.task_type in (None, "chief") or (
      resolver.task_type == "worker" and resolver.task_id == 0)


def train():
  """Runs the job; returns the summary dict."""
  started = time.time()
  strategy = common.make_strategy(FLAGS.strategy)
  tf.config.experimental.enable_op_determinism()
  keras.utils.set_random_seed(FLAGS.seed)
  if FLAGS.mixed_precision:
    keras.mixed_precision.set_global_policy("mixed_float16")
  data, train_size = common.load_data()
  global_batch = FLAGS.batch_size * strategy.num_replicas_in_sync
  steps_per_epoch = -(-train_size // global_batch)
  run = run_dir.prepare(steps_per_epoch) if _is_chief(strategy) else None
  try:
    return _run(strategy, data, steps_per_epoch, global_batch, started)
  finally:
    if run:
      run.close()


def _run(strategy, data, steps_per_epoch, global_batch, started):
  """Builds, (resumes,) trains, evaluates and exports; returns (summary, model)."""
  total_steps = steps_per_epoch * common.schedule_epochs()  # the schedule's and decays' length

  with strategy.scope():
    model = common.build_model(data.input_shape, data.num_classes, total_steps)
    model.compile(common.make_optimizer(total_steps),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=FLAGS.jit_compile)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    model.optimizer.build(model.trainable_variables)

  chief = _is_chief(strategy)
  output_dir = FLAGS.output_dir
  manager = None
  if output_dir:
    ckpt_dir = os.path.join(output_dir, "checkpoints")
    if not chief:  # non-chief workers write to a private directory
      ckpt_dir = os.path.join(output_dir, f"worker_{strategy.cluster_resolver.task_id}")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=2)
    restored = None
    if FLAGS.resume:
      optimizer_vars = model.optimizer.variables
      restored = restore_newest_readable(
          checkpoint, manager, list(model.weights) + list(
              optimizer_vars() if callable(optimizer_vars) else optimizer_vars) + [epoch_var])
    if restored:
      print(f"Resumed from {restored} (epoch {int(epoch_var.numpy())})")
    elif FLAGS.resume:
      print(f"No checkpoint in {ckpt_dir}; starting from scratch.")

  test = data_lib.pipeline(data.test, global_batch, take=FLAGS.test_examples)
  # The bar (on a terminal) comes first: it is erased before EpochLog prints the epoch's line.
  callbacks = common.pruning_callback() + console.progress_bar(
      keras.callbacks.Callback, steps_per_epoch, lambda e: f"epoch {e + 1}/{FLAGS.epochs}") + [
          EpochLog()]
  if output_dir and FLAGS.criterion not in ("none", "tfmot"):
    callbacks.append(ksf.SignFlipSummaries(os.path.join(output_dir, "logs")))
  if output_dir:
    callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")))

  cached = (data.train.take(FLAGS.train_examples) if FLAGS.train_examples else data.train).cache()
  for epoch in range(int(epoch_var.numpy()), FLAGS.epochs):
    # A fixed order per (seed, epoch): a resumed epoch repeats the same batches.
    train_ds = data_lib.pipeline(cached, global_batch, shuffle_seed=FLAGS.seed * 1000 + epoch,
                                 cache=False, augment=data.augment)
    model.fit(train_ds, epochs=epoch + 1, initial_epoch=epoch, validation_data=test,
              callbacks=callbacks, verbose=console.keras_verbose())
    epoch_var.assign(epoch + 1)
    if manager:
      manager.save(checkpoint_number=epoch + 1)

  loss, accuracy = model.evaluate(test, verbose=0)
  sparsity, layers, flips = common.model_sparsity(model)
  summary = {
      "dataset": FLAGS.dataset, "data_source": data.source, "model": FLAGS.model,
      "criterion": FLAGS.criterion, "scope": FLAGS.scope,
      "test_accuracy": float(accuracy), "test_loss": float(loss),
      "sparsity": sparsity, "sparsity_per_layer": layers, "flips": flips,
      "flips_per_layer": {k: int(v.sum()) for k, v in ksf.flip_counts(model).items()},
      "steps": int(model.optimizer.iterations.numpy()), "epochs": FLAGS.epochs,
      "replicas": strategy.num_replicas_in_sync, "wall_seconds": time.time() - started,
  }
  summary["target_sparsity"] = FLAGS.target_sparsity
  try:
    common.check_final_sparsity(model)
  except common.RunError:
    if output_dir and chief:
      common.dump_json(dict(summary, target_reached=False),
                       os.path.join(output_dir, "summary.json"))
    raise
  if FLAGS.export_dir and chief:
    report = export_lib.export_saved_model(model, FLAGS.export_dir, overwrite=FLAGS.overwrite,
                                          compare_sizes=True)
    summary["export"] = report
    if FLAGS.tflite:
      path = os.path.join(FLAGS.export_dir, "model.tflite")
      summary["export"]["tflite_bytes"] = export_lib.export_tflite(model, path)
      print(f"  TFLite {path}: {summary['export']['tflite_bytes']:,} bytes")
  print(f"test accuracy {accuracy:.4f}, sparsity {100 * sparsity:.2f}%, flips {flips}, "
        f"{summary['steps']} steps, {summary['wall_seconds']:.1f}s")
  if output_dir and chief:
    common.dump_json(summary, os.path.join(output_dir, "summary.json"))
  return summary, model




def main(argv):
  # The run is planned whole (and checked so, where it can be) but fit one epoch
  # a call: the library's warning that one call ends before the target is moot.
  warnings.filterwarnings("ignore", category=schedule_checks.ScheduleWarning)
  console.configure_logging()
  if len(argv) > 1:
    common.fail("train.py", f"unexpected arguments {argv[1:]}")
  if FLAGS.keras == "3":
    return _main_keras3()
  try:
    validate()
  except common.UsageError as e:
    common.fail("train.py", e)
  try:
    train()
  except common.RunError as e:
    common.fail("train.py", e, status=1)
  except (common.UsageError, ValueError) as e:
    if isinstance(e, common.UsageError) or "Could not load" in str(e) or "No IDX" in str(e):
      common.fail("train.py", e)
    raise


def _main_keras3():
  """Sets the backend, then runs examples/train_keras3.py's job."""
  loaded = sys.modules.get("keras")
  if loaded is not None and loaded.backend.backend() != FLAGS.backend:
    common.fail("train.py", f"Keras 3 is already loaded with the {loaded.backend.backend()} "
                "backend; run in a fresh process for --backend=" + FLAGS.backend)
  os.environ["KERAS_BACKEND"] = FLAGS.backend
  try:
    from examples import train_keras3  # pylint: disable=g-import-not-at-top
    common.validate_common()
    train_keras3.train()
  except ImportError as e:
    common.fail("train.py", f"--keras=3 --backend={FLAGS.backend}: {e}")
  except common.RunError as e:
    common.fail("train.py", e, status=1)
  except common.UsageError as e:
    common.fail("train.py", e)


if __name__ == "__main__":
  app.run(main)
