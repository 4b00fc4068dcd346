"""Flags and builders shared by the example binaries (train, export, lottery).

Everything a run needs is rebuilt from its flag values, which `train.py`
stores as `config.json` in the run's output directory.
"""
import json
import os
import sys

from absl import flags

import keras_signflip as ksf
from keras_signflip import data as data_lib
from keras_signflip import flipout
from keras_signflip import models as models_lib
from keras_signflip.tf_keras._compat import keras, tf, tfmot

CRITERIA = sorted(ksf.criteria.CRITERIA) + ["tfmot", "none"]
SCHEDULES = ("constant", "polynomial", "geometric", "flipout")
OPTIMIZERS = ("adam", "sgd", "momentum", "flipout")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")

flags.DEFINE_string("dataset", "fashion_mnist", "TFDS image-classification dataset.")
flags.DEFINE_enum("data_source", "auto", data_lib.SOURCES,
                  "auto: prepared TFDS data, else local IDX files, else apt "
                  "(fashion_mnist), else TFDS download; or force tfds / idx.")
flags.DEFINE_string("idx_dir", data_lib.DEFAULT_IDX_DIR, "Directory of IDX files.")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_integer("train_examples", None, "Use only the first N training examples.")
flags.DEFINE_integer("test_examples", None, "Use only the first N test examples.")
flags.DEFINE_string("model", "lenet_300_100", f"One of {sorted(models_lib.MODELS)}.")
flags.DEFINE_string("criterion", "hybrid", f"One of {CRITERIA}.")
flags.DEFINE_float("power", 2.0, "Exponent p of the hybrid criterion |w|^p/(flips+1).")
flags.DEFINE_integer("random_seed_criterion", 0, "Seed of the random criterion.")
flags.DEFINE_enum("scope", "layer", ["layer", "global"], "Ranking scope.")
flags.DEFINE_enum("schedule", "polynomial", SCHEDULES, "Pruning schedule; flipout: FlipOut's "
                  "50% events (keras_signflip.flipout, ignores --frequency/--end_step).")
flags.DEFINE_float("target_sparsity", 0.8, "Final sparsity, in [0, 1).")
flags.DEFINE_integer("begin_step", 0, "First pruning step.")
flags.DEFINE_integer("end_step", None, "Last pruning step; default: 2/3 of training.")
flags.DEFINE_integer("frequency", 100, "Steps between mask updates.")
flags.DEFINE_float("prune_fraction", 0.5, "Geometric schedule: fraction of the "
                   "remaining weights pruned at each update.")
flags.DEFINE_integer("min_flips", None, "Flip-triggered pruning threshold (>= 1).")
flags.DEFINE_float("noise_scale", 0.0, "FlipOut gradient noise factor (0: off).")
flags.DEFINE_integer("epochs", 3, "Training epochs.")
flags.DEFINE_integer("batch_size", 60, "Batch size per replica.")
flags.DEFINE_enum("optimizer", "adam", OPTIMIZERS, "Optimizer; flipout: FlipOut's SGD (momentum "
                  "0.9, coupled weight decay 5e-4, x0.1 at 3/7 and 5/7 of training, "
                  "--learning_rate as its initial rate; --noise_scale its noise).")
flags.DEFINE_float("learning_rate", 1.2e-3, "Peak learning rate.")
flags.DEFINE_integer("warmup_steps", 0, "Linear learning-rate warmup steps.")
flags.DEFINE_integer("seed", 0, "Random seed (weights, data order, noise).")
flags.DEFINE_enum("strategy", "auto", STRATEGIES,
                  "auto: MirroredStrategy over all GPUs when there are several; "
                  "mirrored; multi_worker (reads TF_CONFIG); default.")
flags.DEFINE_bool("mixed_precision", False, "Use the mixed_float16 policy.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step.")
flags.DEFINE_string("export_dir", None, "Write a sparse SavedModel here.")
flags.DEFINE_string("output_dir", None, "Run directory: checkpoints or round artifacts, logs, summaries.")
flags.DEFINE_bool("resume", False, "Continue the run in --output_dir where it stopped.")
flags.DEFINE_bool("tflite", False, "Also export model.tflite (TF's sparsity optimisation).")
FLAGS = flags.FLAGS


class UsageError(ValueError):
  """A bad flag: reported as one line, before anything is written."""


def fail(program, error):
  print(f"{program}: error: {error}", file=sys.stderr)
  sys.exit(2)


def validate_common():
  """Raises UsageError for bad shared flags."""
  if FLAGS.model not in models_lib.MODELS:
    raise UsageError(f"--model={FLAGS.model!r} is unknown; expected one of "
                     f"{sorted(models_lib.MODELS)}.")
  if FLAGS.criterion not in CRITERIA:
    raise UsageError(f"--criterion={FLAGS.criterion!r} is unknown; expected one of {CRITERIA}.")
  if not 0.0 <= FLAGS.target_sparsity < 1.0:
    raise UsageError(f"--target_sparsity={FLAGS.target_sparsity} must be in [0, 1).")
  if FLAGS.schedule == "flipout" and FLAGS.target_sparsity <= 0.0:
    raise UsageError("--schedule=flipout needs --target_sparsity > 0 (its events halve the "
                     "remaining weights until the target).")
  if FLAGS.min_flips is not None and FLAGS.min_flips < 1:
    raise UsageError(f"--min_flips={FLAGS.min_flips} must be >= 1.")
  if not 0.0 < FLAGS.prune_fraction < 1.0:
    raise UsageError(f"--prune_fraction={FLAGS.prune_fraction} must be in (0, 1).")
  for name in ("epochs", "batch_size", "frequency"):
    if getattr(FLAGS, name) < 1:
      raise UsageError(f"--{name}={getattr(FLAGS, name)} must be >= 1.")
  if FLAGS.noise_scale < 0:
    raise UsageError(f"--noise_scale={FLAGS.noise_scale} must be >= 0.")
  if FLAGS.dataset not in data_lib.IDX_DATASETS and FLAGS.data_source == "idx":
    raise UsageError(f"--data_source=idx supports {sorted(data_lib.IDX_DATASETS)} only.")
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    known = set(tfds.list_builders())
  except Exception:  # pylint: disable=broad-except
    known = None
  if known is not None and FLAGS.dataset not in known:
    raise UsageError(f"--dataset={FLAGS.dataset!r} is not a TFDS dataset "
                     "(see `tfds.list_builders()`).")


def make_strategy(name):
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise UsageError("--strategy=multi_worker needs the TF_CONFIG environment variable.")
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if gpus:
      return tf.distribute.MirroredStrategy()
    # Without GPUs, mirror over the logical CPUs (one by default). Reduce on
    # one device: CPU collectives' instance keys clash when a process builds
    # more than one MirroredStrategy.
    return tf.distribute.MirroredStrategy(
        [d.name for d in cpus], cross_device_ops=tf.distribute.ReductionToOneDevice())
  if name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


@keras.utils.register_keras_serializable(package="keras_signflip_examples")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup from 0 to `peak` over `steps`, then constant."""

  def __init__(self, peak, steps):
    self.peak, self.steps = float(peak), int(steps)

  def __call__(self, step):
    fraction = tf.minimum(tf.cast(step + 1, tf.float32) / float(max(self.steps, 1)), 1.0)
    return self.peak * fraction

  def get_config(self):
    return {"peak": self.peak, "steps": self.steps}


def make_optimizer(total_steps=None):
  """The --optimizer; `total_steps` (default: --epochs steps) places flipout's decays."""
  if FLAGS.optimizer == "flipout":
    return flipout.optimizer(FLAGS.epochs, max((total_steps or FLAGS.epochs) // FLAGS.epochs, 1),
                             noise=FLAGS.noise_scale, seed=FLAGS.seed,
                             learning_rate=FLAGS.learning_rate)
  lr = Warmup(FLAGS.learning_rate, FLAGS.warmup_steps) if FLAGS.warmup_steps else FLAGS.learning_rate
  opt = {"adam": lambda: keras.optimizers.Adam(lr),
         "sgd": lambda: keras.optimizers.SGD(lr),
         "momentum": lambda: keras.optimizers.SGD(lr, momentum=0.9)}[FLAGS.optimizer]()
  if FLAGS.noise_scale:
    opt = ksf.with_gradient_noise(opt, FLAGS.noise_scale, seed=FLAGS.seed)
  return opt


def make_schedule(total_steps):
  if FLAGS.schedule == "flipout":
    return flipout.prune_kwargs(FLAGS.target_sparsity, FLAGS.epochs,
                                max(total_steps // FLAGS.epochs, 1))["pruning_schedule"]
  # Default: prune during the first 2/3 of training, ending on a pruning step
  # (a multiple of --frequency after --begin_step) so the target is reached.
  end = FLAGS.end_step
  if end is None:
    span = max((total_steps * 2 // 3 - FLAGS.begin_step) // FLAGS.frequency, 1)
    end = FLAGS.begin_step + span * FLAGS.frequency
  if FLAGS.schedule == "constant":
    return tfmot.sparsity.keras.ConstantSparsity(
        FLAGS.target_sparsity, FLAGS.begin_step, end_step=end, frequency=FLAGS.frequency)
  if FLAGS.schedule == "polynomial":
    return tfmot.sparsity.keras.PolynomialDecay(
        0.0, FLAGS.target_sparsity, FLAGS.begin_step, end, frequency=FLAGS.frequency)
  return ksf.tf_keras.schedules.GeometricSparsity(
      FLAGS.prune_fraction, FLAGS.frequency, FLAGS.begin_step, end,
      max_sparsity=max(FLAGS.target_sparsity, 1e-6))


def make_criterion():
  if FLAGS.criterion == "hybrid":
    return ksf.criteria.Hybrid(FLAGS.power)
  if FLAGS.criterion == "random":
    return ksf.criteria.Random(FLAGS.random_seed_criterion)
  return ksf.criteria.get(FLAGS.criterion)


def build_model(input_shape, num_classes, total_steps):
  """The zoo model, wrapped as --criterion says ('none': dense)."""
  model = models_lib.get(FLAGS.model)(input_shape, num_classes)
  if FLAGS.criterion == "none":
    return model
  if FLAGS.criterion == "tfmot":
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=make_schedule(total_steps))
  return ksf.prune_sign_flip(model, pruning_schedule=make_schedule(total_steps),
                             criterion=make_criterion(), scope=FLAGS.scope,
                             min_flips=FLAGS.min_flips)


def pruning_callback():
  if FLAGS.criterion == "none":
    return []
  if FLAGS.criterion == "tfmot":
    return [tfmot.sparsity.keras.UpdatePruningStep()]
  return [ksf.UpdatePruningStep()]


def load_data(log=print):
  data = data_lib.load(FLAGS.dataset, FLAGS.data_source, FLAGS.idx_dir, FLAGS.data_dir, log=log)
  train_size = min(data.train_size, FLAGS.train_examples or data.train_size)
  return data, train_size


def model_sparsity(model):
  """(overall sparsity, {weight: sparsity}, total flips) of any wrapped model."""
  report = ksf.sparsity_report(model)
  return report["overall"], report["layers"], sum(report["flips"].values())


def dump_json(obj, path):
  """Writes JSON atomically (temporary file, then rename)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
