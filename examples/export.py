r"""Export a `train.py` run's latest checkpoint as a sparse SavedModel.

    python -m examples.export --run_dir=runs/a --export_dir=runs/a/export [--tflite] \
        [--values_dtype=int8] [--kernels=auto]

--export_dir must be absent, empty, or (with --overwrite) an earlier
keras_signflip export; a directory it did not write is never replaced.
Rebuilds the model from the run's config.json, restores its latest checkpoint,
strips pruning and writes the SavedModel (see keras_signflip.tf_keras.export),
then reloads it with plain `tf.saved_model.load` and reports its test accuracy
beside the restored model's (what quantised values cost). --kernels=auto
serves Dense and 1x1 Conv2D layers with sparse products (ELL or COO) at the
batch sizes where this machine measured them faster (`export_saved_model`'s
`kernels`).

Output: the checkpoint restored, the export report (sparsity per layer, sizes)
and both test accuracies. -v 0 (absl's --verbosity) brings back TensorFlow's
own logs (-v -1: its warnings and errors); without -v the binary sets
TF_CPP_MIN_LOG_LEVEL=3 before TensorFlow loads, unless it is already set.
"""
import json
import os

from absl import app, flags

from examples import console  # imports no TensorFlow

# TensorFlow's log level is set before it loads, and only when run as a program.
with console.quiet_imports(active=__name__ == "__main__"):
  from keras_signflip.tf_keras import export as export_lib
  from keras_signflip import models as models_lib
  from keras_signflip import owned_dir
  from keras_signflip.tf_keras._framework import tf

  from examples import common

flags.DEFINE_string("run_dir", None, "The --output_dir of a train.py run.")
# --overwrite is examples.common's (every binary's): replace an earlier export only.
flags.DEFINE_enum("values_dtype", "float32", list(export_lib.VALUES_DTYPES),
                  "Stored non-zero values: float32, float16, or int8 with per-channel scales.")
flags.DEFINE_enum("kernels", "dense", list(export_lib.KERNELS),
                  "How Dense and 1x1 Conv2D layers multiply: the cached dense kernel, sparse "
                  "products always, or auto (sparse up to the measured break-even batch).")
flags.declare_key_flag("verbosity")
FLAGS = flags.FLAGS


def _accuracy(predict, test):
  """Top-1 accuracy of `predict` (batch -> logits) over the test dataset."""
  right = total = 0
  for x, y in test:
    right += int(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(predict(x), -1), tf.cast(y, tf.int64)),
                                       tf.int32)))
    total += int(tf.shape(y)[0])
  return right / max(total, 1)


def export_run(run_dir, export_dir, tflite=False, overwrite=False, values_dtype="float32",
               kernels="dense"):
  """Restores the run's model and exports it; returns the report.

  `export_dir` is checked first (`owned_dir.check_target`): absent, empty,
  or an earlier keras_signflip export with `overwrite`; anything else raises
  ValueError before the checkpoint is read.
  """
  owned_dir.check_target(export_dir, "export", overwrite, flag_hint="--overwrite")
  config_path = os.path.join(run_dir, "config.json")
  if not os.path.exists(config_path):
    raise common.UsageError(f"{run_dir} has no config.json; is it a train.py --output_dir?")
  with open(config_path) as f:
    config = json.load(f)
  for name, value in config.items():
    if name in FLAGS:  # train.py's own flags (--keras, --backend) are not defined here
      setattr(FLAGS, name, value)
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  latest = tf.train.latest_checkpoint(ckpt_dir)
  if latest is None:
    raise common.UsageError(f"No checkpoint in {ckpt_dir}.")
  data, train_size = common.load_data(log=lambda *_: None)
  del train_size
  model = common.build_model(data.input_shape, data.num_classes, total_steps=1)
  model.compile(common.make_optimizer(), "sparse_categorical_crossentropy")
  model.optimizer.build(model.trainable_variables)
  epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
  tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch).restore(
      latest).assert_existing_objects_matched()
  print(f"Restored {latest} (epoch {int(epoch.numpy())}, model {config['model']}).")
  report = export_lib.export_saved_model(model, export_dir, overwrite=overwrite,
                                          compare_sizes=True, values_dtype=values_dtype,
                                          kernels=kernels)
  test = common.data_lib.pipeline(data.test, 1000, take=FLAGS.test_examples)
  serve = tf.saved_model.load(export_dir).signatures["serving_default"]
  report["test_accuracy"] = _accuracy(lambda x: model(x, training=False), test)
  report["reloaded_test_accuracy"] = _accuracy(lambda x: list(serve(x).values())[0], test)
  print(f"  test accuracy: restored model {report['test_accuracy']:.4f}, reloaded export "
        f"{report['reloaded_test_accuracy']:.4f} ({values_dtype} values)")
  if tflite:
    report["tflite_bytes"] = export_lib.export_tflite(
        model, os.path.join(export_dir, "model.tflite"))
    print(f"  TFLite: {report['tflite_bytes']:,} bytes")
  return report


def main(argv):
  del argv
  console.configure_logging()
  try:
    if not FLAGS.run_dir or not FLAGS.export_dir:
      raise common.UsageError("--run_dir and --export_dir are required.")
    if FLAGS.model not in models_lib.MODELS:
      raise common.UsageError(f"--model={FLAGS.model!r} is unknown.")
    export_run(FLAGS.run_dir, FLAGS.export_dir, FLAGS.tflite, FLAGS.overwrite, FLAGS.values_dtype,
               FLAGS.kernels)
  except (common.UsageError, ValueError) as e:
    common.fail("export.py", e)


if __name__ == "__main__":
  app.run(main)
