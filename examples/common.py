"""Flags and builders shared by the example binaries (train, export, lottery).

Everything a run needs is rebuilt from its flag values, which `train.py`
stores as `config.json` in the run's output directory.
"""
import math
import os
import sys

from absl import flags

import keras_signflip as ksf
from keras_signflip import owned_dir
from keras_signflip import schedule_checks
from keras_signflip import data as data_lib
from keras_signflip import flipout
from keras_signflip import models as models_lib
from keras_signflip.tf_keras._framework import keras, tf, tfmot

CRITERIA = sorted(ksf.criteria.CRITERIA) + ["tfmot", "none"]
SCHEDULES = ("constant", "polynomial", "geometric", "flipout")
OPTIMIZERS = ("adam", "sgd", "momentum", "flipout")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")

flags.DEFINE_string("dataset", "fashion_mnist", "TFDS image-classification dataset.")
flags.DEFINE_enum("data_source", "auto", data_lib.SOURCES,
                  "auto: prepared TFDS data, else local IDX files, else apt "
                  "(fashion_mnist), else TFDS download; or force tfds / idx / pickle "
                  "(cifar10's python batches in --data_dir).")
flags.DEFINE_string("idx_dir", data_lib.DEFAULT_IDX_DIR, "Directory of IDX files.")
flags.DEFINE_string("data_dir", None, "TFDS data directory; for cifar10 also where its "
                    "python batches lie (data_batch_1..5, test_batch; or cifar-10-batches-py/).")
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
flags.DEFINE_integer("end_step", None, "Last pruning step; default: 2/3 of training (geometric: "
                     "--begin_step plus the events that reach the target).")
flags.DEFINE_integer("frequency", 100, "Steps between mask updates.")
flags.DEFINE_float("prune_fraction", 0.5, "Geometric schedule: fraction of the "
                   "remaining weights pruned at each update.")
flags.DEFINE_integer("min_flips", None, "Flip-triggered pruning threshold (>= 1).")
flags.DEFINE_float("noise_scale", 0.0, "FlipOut gradient noise factor (0: off).")
flags.DEFINE_enum("noise_on", "prunable", ["prunable", "all"], "Where --noise_scale's noise "
                  "goes: the pruned layers' kernels, or every trainable variable (all: as "
                  "FlipOut's published runs).")
flags.DEFINE_integer("epochs", 3, "Training epochs.")
flags.DEFINE_integer("schedule_epochs", None, "The run length the pruning schedule and the "
                     "learning-rate decays are laid out for; default --epochs. A run resumed "
                     "with more --epochs keeps the length it started with: the extra epochs "
                     "train at the final sparsity and learning rate.")
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
flags.DEFINE_string("output_dir", None, "Run directory: checkpoints or round artifacts, "
                    "logs, summaries.")
flags.DEFINE_bool("resume", False, "Continue the run in --output_dir where it stopped (with "
                  "the configuration it started with; more --epochs extend it).")
flags.DEFINE_bool("overwrite", False, "Replace an earlier keras_signflip run at --output_dir "
                  "(only the files a run writes) or export at --export_dir; never a user's files.")
flags.DEFINE_bool("tflite", False, "Also export model.tflite (TF's sparsity optimisation).")
FLAGS = flags.FLAGS


class UsageError(ValueError):
  """A bad flag: reported as one line, before anything is written."""


class RunError(RuntimeError):
  """A run that finished wrong (e.g. below its target sparsity): exit status 1."""


def fail(program, error, status=2):
  """Prints `program: error: ...` and exits (2: bad usage, before any change; 1: a run
  that finished wrong)."""
  print(f"{program}: error: {error}", file=sys.stderr)
  sys.exit(status)


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
  for name in ("train_examples", "test_examples", "schedule_epochs"):
    if getattr(FLAGS, name) is not None and getattr(FLAGS, name) < 1:
      raise UsageError(f"--{name}={getattr(FLAGS, name)} must be >= 1 (or left out).")
  for name in ("begin_step", "warmup_steps", "seed", "random_seed_criterion"):
    if getattr(FLAGS, name) < 0:
      raise UsageError(f"--{name}={getattr(FLAGS, name)} must be >= 0.")
  if FLAGS.end_step is not None and FLAGS.end_step <= FLAGS.begin_step:
    raise UsageError(f"--end_step={FLAGS.end_step} must be > --begin_step={FLAGS.begin_step}.")
  for name, low in (("power", 0.0), ("learning_rate", 0.0)):
    value = getattr(FLAGS, name)
    if not math.isfinite(value) or value <= low:
      raise UsageError(f"--{name}={value} must be a finite number > {low:g}.")
  if not math.isfinite(FLAGS.noise_scale) or FLAGS.noise_scale < 0:
    raise UsageError(f"--noise_scale={FLAGS.noise_scale} must be a finite number >= 0.")
  for name in ("output_dir", "export_dir"):
    path = getattr(FLAGS, name)
    if path and os.path.lexists(path) and not os.path.isdir(path):
      raise UsageError(f"--{name}={path} is a file, not a directory; choose another --{name}.")
  if FLAGS.dataset not in data_lib.IDX_DATASETS and FLAGS.data_source == "idx":
    raise UsageError(f"--data_source=idx supports {sorted(data_lib.IDX_DATASETS)} only.")
  if FLAGS.dataset not in data_lib.PICKLE_DATASETS and FLAGS.data_source == "pickle":
    raise UsageError(f"--data_source=pickle supports {sorted(data_lib.PICKLE_DATASETS)} only.")
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


def schedule_epochs():
  """The run length the schedule and decays are laid out for (--schedule_epochs, else --epochs)."""
  return FLAGS.schedule_epochs or FLAGS.epochs


def make_flipout_optimizer(total_steps=None, keras_module=None):
  """--optimizer=flipout for the Keras `keras_module` (None: tf_keras); `total_steps`
  (the schedule's steps; default: one a schedule epoch) places its decays."""
  epochs = schedule_epochs()
  return flipout.optimizer(epochs, max((total_steps or epochs) // epochs, 1), keras=keras_module,
                           noise=FLAGS.noise_scale, seed=FLAGS.seed,
                           learning_rate=FLAGS.learning_rate, noise_on=FLAGS.noise_on)


def make_optimizer(total_steps=None, keras_module=None, warmup=None):
  """The --optimizer; `total_steps` (the schedule's steps; default: one a
  schedule epoch) places flipout's decays. `keras_module` and `warmup` (its
  learning-rate schedule class): tf_keras's by default, Keras 3's for
  examples/train_keras3.py."""
  keras_module, warmup = keras_module or keras, warmup or Warmup
  if FLAGS.optimizer == "flipout":
    return make_flipout_optimizer(total_steps, None if keras_module is keras else keras_module)
  lr = (warmup(FLAGS.learning_rate, FLAGS.warmup_steps) if FLAGS.warmup_steps
        else FLAGS.learning_rate)
  optimizers = keras_module.optimizers
  opt = {"adam": lambda: optimizers.Adam(lr),
         "sgd": lambda: optimizers.SGD(lr),
         "momentum": lambda: optimizers.SGD(lr, momentum=0.9)}[FLAGS.optimizer]()
  if FLAGS.noise_scale:
    opt = ksf.with_gradient_noise(opt, FLAGS.noise_scale, seed=FLAGS.seed,
                                  noise_on=FLAGS.noise_on)
  return opt


def make_schedule(total_steps):
  if FLAGS.schedule == "flipout":
    return flipout.prune_kwargs(FLAGS.target_sparsity, schedule_epochs(),
                                max(total_steps // schedule_epochs(), 1))["pruning_schedule"]
  # Default: prune during the first 2/3 of training, ending on a pruning step
  # (a multiple of --frequency after --begin_step) so the target is reached.
  end = FLAGS.end_step
  if end is None and FLAGS.schedule == "geometric":
    # As many events as the halvings (by --prune_fraction) that reach the target.
    events = max(math.ceil(math.log(max(1 - FLAGS.target_sparsity, 1e-12))
                           / math.log(1 - FLAGS.prune_fraction) - 1e-9), 1)
    end = FLAGS.begin_step + events * FLAGS.frequency
  elif end is None:
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
    return tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=make_schedule(total_steps))
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
  """Writes JSON atomically beside `path`, then renames (`owned_dir.write_json`)."""
  owned_dir.write_json(path, obj)


def scheduled_final_sparsity(schedule, run_steps):
  """The sparsity `schedule` prunes to at its last pruning step within steps 1..run_steps
  (0.0 if none fires there; `keras_signflip.schedule_checks` finds the step)."""
  window = schedule_checks.events(*schedule_checks.timing(schedule), run_steps)
  return 0.0 if window is None else float(schedule(window[1])[1])


def check_schedule(steps_per_epoch):
  """UsageError, before training, when the pruning schedule cannot reach
  --target_sparsity inside the run (max(--epochs, --schedule_epochs) epochs:
  a run may stop early on purpose and be extended with --resume).
  Flip-triggered runs, whose sparsity emerges, and unpruned runs pass."""
  if FLAGS.criterion == "none" or FLAGS.min_flips is not None or FLAGS.target_sparsity <= 0:
    return
  run_steps = steps_per_epoch * max(FLAGS.epochs, schedule_epochs())
  schedule = make_schedule(steps_per_epoch * schedule_epochs())
  reached = scheduled_final_sparsity(schedule, run_steps)
  if reached < FLAGS.target_sparsity - 1e-6:
    end = "none" if schedule.end_step < 0 else schedule.end_step
    raise UsageError(
        f"the pruning schedule cannot reach --target_sparsity={FLAGS.target_sparsity:g} in this "
        f"run: its last pruning step inside the run's {run_steps} steps "
        f"({run_steps // steps_per_epoch} epochs of {steps_per_epoch}) prunes to "
        f"{100 * reached:.2f}% (begin step "
        f"{schedule.begin_step}, end step {end}, frequency {schedule.frequency}). Set "
        "--end_step to --begin_step plus a multiple of --frequency within the run, lower "
        "--frequency, or train longer (--epochs).")


def check_final_sparsity(model):
  """RunError when the trained model's sparsity is below --target_sparsity by more than
  per-tensor rounding (half a weight per tensor). Exempt: flip-triggered runs, and
  runs stopped before their --schedule_epochs on purpose (to be extended)."""
  if (FLAGS.criterion == "none" or FLAGS.min_flips is not None or FLAGS.target_sparsity <= 0
      or FLAGS.epochs < schedule_epochs()):
    return
  masks = _masks(model)
  sizes = [m.size for m in masks]
  achieved = 1.0 - sum(float(m.sum()) for m in masks) / max(sum(sizes), 1)
  if achieved < FLAGS.target_sparsity - (0.5 * len(sizes) + 1e-9) / max(sum(sizes), 1):
    raise RunError(f"the run ended at {100 * achieved:.2f}% sparsity, below "
                   f"--target_sparsity={100 * FLAGS.target_sparsity:g}%; its results are not "
                   "those of the configuration asked for (summary.json records both).")


def _masks(model):
  """Every pruning mask of `model` as a NumPy array (keras_signflip's or TF-MOT's wrappers)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  found = list(ksf.masks(model).values())
  if not found and hasattr(model, "submodules"):  # TF-MOT's PruneLowMagnitude
    found = [np.asarray(mask.numpy()) for layer in model.submodules
             for _, mask, _ in getattr(layer, "pruning_vars", [])]
  return found
