r"""FlipOut's CIFAR-10 table, rerun (issue 28, goal 4): one command, resumable.

FlipOut (Apostol, Stol & Forré 2020) reports, at 99.9% sparsity on CIFAR-10,
3 seeds each, FlipOut against global magnitude, SNIP and random pruning for
VGG-19 and ResNet-18 (PUBLISHED below). This binary trains the same grid with
keras_signflip and writes the table beside those numbers:

  - models: `vgg19`, `resnet18` (keras_signflip.models, FlipOut's CIFAR variants);
  - data: CIFAR-10, per-channel normalisation, random crop (pad 4) and flip;
  - every method: FlipOut's SGD (0.1, momentum 0.9, coupled weight decay 5e-4,
    x0.1 at 3/7 and 5/7 of training) for --epochs (350, FlipOut's), batch 128;
  - methods, as benchmarks/compare.py defines them: `flipout` (global
    |w|^2 / (flips + 1) with FlipOut's gradient noise), `magnitude` (global
    magnitude), `random` (global) -- all three pruning 50% of the remaining
    weights at FlipOut's events -- and `snip` (pruned at initialisation).

On tf_keras (--keras=2) every run is `benchmarks.compare.run_one_shot`; on
Keras 3 (--keras=3 --backend=jax|tensorflow|torch) `run_keras3` builds the same
four methods from the family-generic API (compare's runner is tf_keras only).

Each run writes one raw JSON under --output_dir/raw/ and is never redone, so
an interrupted grid resumes; the table (mean ± std over seeds; per seed, paired
against global magnitude, the mean difference and its 95% t interval) is
written from the raw files alone. On a GPU machine with CIFAR-10:

    python -m benchmarks.flipout_table --keras=3 --backend=jax --data_dir=DIR
    python -m benchmarks.flipout_table --report_only    # the table again

docs/flipout_table.md says what it costs and what has been run.
"""
import math
import os
import sys
import time
import warnings


BACKENDS = ("jax", "tensorflow", "torch")


def _flag_value(argv, name):
  """The value of --name=V or --name V in argv, else None (absl parses only later)."""
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _preselect_keras_backend(argv):
  """The Keras 3 backend (--backend, else a valid KERAS_BACKEND, else jax), written to
  KERAS_BACKEND before anything imports Keras 3, which reads it once; with --keras=3
  only (the tf_keras path never imports Keras 3)."""
  backend = _flag_value(argv, "backend")
  if backend is None:
    backend = os.environ.get("KERAS_BACKEND")
    backend = backend if backend in BACKENDS else "jax"
  if _flag_value(argv, "keras") == "3":
    os.environ["KERAS_BACKEND"] = backend
  return backend


_DEFAULT_BACKEND = _preselect_keras_backend(sys.argv)

from absl import app, flags, logging  # noqa: E402

import keras_signflip as ksf  # noqa: E402
from keras_signflip import data as data_lib  # noqa: E402
from keras_signflip import flipout  # noqa: E402
from keras_signflip import models as models_lib  # noqa: E402
from keras_signflip import schedule_checks  # noqa: E402

from benchmarks import compare  # noqa: E402  (defines the shared flags: epochs, seeds, ...)
from benchmarks import results_io  # noqa: E402
from benchmarks.analysis import aggregate, ci_text  # noqa: E402

FLAGS = flags.FLAGS
FLAGS.set_default("noise_on", "all")  # compare's flag; FlipOut's published runs

METHODS = ("flipout", "magnitude", "snip", "random")
TARGET = 0.999
EPOCHS = 350
# FlipOut's README (AndreiXYZ/flipout), test accuracy % at 99.9%: (mean, std) over 3 seeds.
PUBLISHED = {
    ("vgg19", "flipout"): (87.39, 0.23), ("vgg19", "magnitude"): (82.89, 2.00),
    ("vgg19", "random"): (10.0, 0.0), ("vgg19", "snip"): (10.0, 0.0),
    ("resnet18", "flipout"): (82.5, 0.11), ("resnet18", "magnitude"): (80.63, 0.45),
    ("resnet18", "random"): (13.65, 6.32), ("resnet18", "snip"): (10.0, 0.0),
}
# The run settings every raw row of one --output_dir must share.
SETTINGS = ("epochs", "train_examples", "test_examples", "batch", "width", "noise_on")

flags.DEFINE_enum("keras", "2", ["2", "3"], "2: tf_keras with TF-MOT; 3: Keras 3.")
flags.DEFINE_enum("backend", _DEFAULT_BACKEND, list(BACKENDS),
                  "Keras 3 backend (--keras=3); default KERAS_BACKEND if set, else jax.")
flags.DEFINE_string("data_dir", None, "CIFAR-10's python batches (data_batch_1..5, test_batch, "
                    "or cifar-10-batches-py/ in it), or TFDS's data directory.")
flags.DEFINE_enum("data_source", "auto", ["auto", "tfds", "pickle"], "Where CIFAR-10 comes from "
                  "(keras_signflip.data.load).")
flags.DEFINE_integer("batch_size", 128, "Batch size (FlipOut's: 128).")
flags.DEFINE_float("width", 1.0, "Filters x width (1: FlipOut's networks; tests use less).")
flags.DEFINE_string("table", None, "The generated table; default --output_dir/README.md.")
flags.DEFINE_bool("allow_cpu", False, "Run without a GPU (tests and tiny runs; the full grid "
                  "takes days on one GPU).")

# compare's flags, with this grid's defaults.
FLAGS.set_default("epochs", EPOCHS)
FLAGS.set_default("models", ["vgg19", "resnet18"])
FLAGS.set_default("methods", list(METHODS))
FLAGS.set_default("sparsities", [str(TARGET)])
FLAGS.set_default("train_examples", 50000)
FLAGS.set_default("test_examples", 10000)
FLAGS.set_default("output_dir", os.path.join("benchmarks", "results", "flipout_table"))


class UsageError(ValueError):
  """A bad flag or a clash with the results already in --output_dir."""


def family():
  """The row's `regime` (the table's family column): tf_keras, or keras3/<backend>."""
  return "tf_keras" if FLAGS.keras == "2" else f"keras3/{FLAGS.backend}"


def _keras_module():
  """Keras 3's module for --keras=3, else None (the zoo's default, tf_keras)."""
  if FLAGS.keras == "2":
    return None
  import keras  # pylint: disable=g-import-not-at-top
  if keras.backend.backend() != FLAGS.backend:
    raise UsageError(f"Keras 3 is already loaded with the {keras.backend.backend()} backend; "
                     f"run in a fresh process for --backend={FLAGS.backend}.")
  return keras


def has_gpu():
  """Whether the chosen family and backend see a GPU."""
  if FLAGS.keras == "3" and FLAGS.backend == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    return any(d.platform == "gpu" for d in jax.devices())
  if FLAGS.keras == "3" and FLAGS.backend == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    return torch.cuda.is_available()
  return bool(compare.tf.config.list_physical_devices("GPU"))


def load_data():
  """compare's data dict for CIFAR-10: augmented, shuffled per (seed, epoch) training
  batches, the test set, and the shapes. FlipOut trains on all 50k training images and
  chooses nothing, so "val" (which compare's runner evaluates) is the first 5k training
  images, unaugmented: recorded as `train_accuracy`, a check of fit, not a validation."""
  d = data_lib.load("cifar10", FLAGS.data_source, data_dir=FLAGS.data_dir, log=lambda *a: None)
  n = min(FLAGS.train_examples, d.train_size)
  train = d.train.take(n).cache()
  batch = FLAGS.batch_size
  return {
      # A full permutation every epoch, as FlipOut's DataLoader draws.
      "train": lambda seed, epoch: data_lib.pipeline(train, batch, cache=False, augment=d.augment,
                                                     shuffle_seed=seed * 1000 + epoch,
                                                     shuffle_buffer=n),
      "val": data_lib.pipeline(d.train, 1000, take=min(n, 5000)),
      "test": data_lib.pipeline(d.test, 1000, take=FLAGS.test_examples),
      "steps_per_epoch": math.ceil(n / batch), "train_examples": n,
      "test_examples": int(d.test.take(FLAGS.test_examples).reduce(0, lambda k, _: k + 1)),
      "source": d.source, "input_shape": d.input_shape, "classes": d.num_classes,
  }


def run_keras3(method, builder, data, sparsity, seed, keras):
  """One run of `method` on a Keras 3 model, as compare.run_one_shot runs it on tf_keras:
  FlipOut's schedule (snip: masks set at initialisation from 10 batches, none after),
  FlipOut's optimizer, noise for `flipout` only."""
  keras.utils.set_random_seed(seed)
  model = builder()
  epochs, steps_per_epoch = FLAGS.epochs, data["steps_per_epoch"]
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  if method == "snip":
    from keras_signflip.keras3 import schedules  # pylint: disable=g-import-not-at-top
    model = ksf.prune_sign_flip(model, criterion="magnitude", scope="global",
                                pruning_schedule=schedules.ConstantSparsity(sparsity, 2**40))
    ksf.snip(model, data["train"](seed, 0).take(10), sparsity, loss, batches=10)
    events = []
  else:
    kwargs = flipout.prune_kwargs(sparsity, epochs, steps_per_epoch, keras=keras)
    if method != "flipout":
      kwargs["criterion"] = "magnitude" if method == "magnitude" else ksf.criteria.Random(seed)
    model = ksf.prune_sign_flip(model, **kwargs)
    events = flipout.event_steps(sparsity, epochs, steps_per_epoch)
  model.compile(flipout.optimizer(epochs, steps_per_epoch, keras=keras, seed=seed,
                                  noise=flipout.NOISE if method == "flipout" else 0,
                                  noise_on=FLAGS.noise_on),
                loss, metrics=["accuracy"])
  start = time.time()
  for epoch in range(epochs):
    model.fit(data["train"](seed, epoch), epochs=epoch + 1, initial_epoch=epoch, verbose=0,
              shuffle=False, callbacks=[ksf.UpdatePruningStep()])
  steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
  test_loss, test_accuracy = model.evaluate(data["test"], verbose=0)[:2]
  return {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
          "val_accuracy": float(model.evaluate(data["val"], verbose=0)[1]),
          "sparsity": ksf.sparsity_report(model)["overall"], "steps": steps,
          "event_steps": events, "wall_seconds": time.time() - start, "flips_per_epoch": []}


def raw_path(model, method, target, seed):
  name = f"{model}__{family().replace('/', '-')}__{method}__{float(target):g}__{seed}.json"
  return os.path.join(FLAGS.output_dir, "raw", name)


def jobs():
  """(model, method, target, seed), seed first: an interrupted grid has whole seeds."""
  return [(model, method, float(target), int(seed)) for seed in FLAGS.seeds
          for model in FLAGS.models for target in FLAGS.sparsities for method in FLAGS.methods]


def settings(data):
  return {"epochs": FLAGS.epochs, "train_examples": data["train_examples"],
          "test_examples": data["test_examples"], "batch": FLAGS.batch_size,
          "width": FLAGS.width, "noise_on": FLAGS.noise_on}


# What rows written before a key was recorded ran with.
RECORDED_LATER = {"noise_on": "prunable", "model_revision": 1}


def _setting(row, key):
  """A raw row's setting (RECORDED_LATER's value where the row predates the key)."""
  return row.get(key, RECORDED_LATER.get(key))


def check_output_dir(mine):
  """UsageError when --output_dir already holds runs of other settings (a table mixing
  them would mean nothing); names each differing setting."""
  for row in results_io.read_raw(FLAGS.output_dir):
    clash = [f"{k} {_setting(row, k)!r} there, {mine[k]!r} here" for k in SETTINGS
             if _setting(row, k) != mine[k]]
    built = _setting(row, "model_revision")
    if row.get("model") and built != models_lib.revision(row["model"]):
      clash.append(f"{row['model']} revision {built} there, {models_lib.revision(row['model'])} "
                   "here (keras_signflip.models.REVISIONS)")
    if clash:
      raise UsageError(f"--output_dir={FLAGS.output_dir} holds runs with other settings ("
                       + "; ".join(clash) + "). Choose another --output_dir, or the same flags.")


def run_grid(data):
  keras = _keras_module()
  shard, shards = results_io.parse_shard(FLAGS.shard)
  every = jobs()
  done = sum(os.path.exists(raw_path(*j)) for j in every)
  todo = results_io.shard_jobs(every, shard, shards, lambda j: os.path.exists(raw_path(*j)))
  print(f"flipout_table: {len(every)} runs ({family()}), {done} done, "
        f"{len(todo)} for shard {FLAGS.shard}; data: {data['source']}", flush=True)
  started = time.time()
  for i, (model_name, method, target, seed) in enumerate(todo):
    elapsed = time.time() - started
    eta = f", ~{elapsed / i * (len(todo) - i) / 3600:.1f} h left" if i else ""
    print(f"[{i + 1}/{len(todo)}, {elapsed:.0f} s{eta}] {model_name} {method} "
          f"{100 * target:g}% seed {seed}", flush=True)
    get = models_lib.get(model_name, keras, width=FLAGS.width)
    builder = lambda get=get: get(data["input_shape"], data["classes"])  # noqa: E731
    run_started = time.time()
    try:
      if keras is None:
        result = compare.run_one_shot(method, "flipout", builder, data, target, seed)
      else:
        result = run_keras3(method, builder, data, target, seed, keras)
    except Exception as e:  # pylint: disable=broad-except
      # A run that fails (a mask update on weights gone non-finite raises; memory runs
      # out) is recorded and left out of the means, and the grid goes on: stopping would
      # leave every later run undone, and a restart would fail the same way.
      result = {"failed": f"{type(e).__name__}: {e}"[:300], "test_accuracy": None,
                "sparsity": None, "wall_seconds": time.time() - run_started}
      print(f"  failed: {result['failed']}", flush=True)
    result["train_accuracy"] = result.pop("val_accuracy", None)  # see load_data
    results_io.write_row(raw_path(model_name, method, target, seed), dict(
        result, model=model_name, regime=family(), method=method, target=target, seed=seed,
        source=data["source"], model_revision=models_lib.revision(model_name),
        **settings(data)))
    if not result.get("failed"):
      print(f"  test accuracy {100 * result['test_accuracy']:.2f}%, test loss "
            f"{result['test_loss']:.4g}, sparsity {100 * result['sparsity']:.2f}%, "
            f"{result['wall_seconds']:.0f} s", flush=True)


def left_out(row):
  """Why a raw row is left out of the means (a failed run, or one whose test loss is not
  finite: diverged after the last event, its accuracy near chance), else None."""
  if row.get("failed"):
    return f"failed: {row['failed']}"
  if not math.isfinite(row.get("test_loss", 0.0)):
    return f"test loss {row['test_loss']} at the end"
  return None


def _published(model, method, target):
  if abs(target - TARGET) > 1e-9 or (model, method) not in PUBLISHED:
    return "-"
  mean, std = PUBLISHED[(model, method)]
  return f"{mean:.2f} ± {std:.2f}"


def table(rows, path):
  """Writes the markdown table from raw `rows` (those `left_out` listed apart, never
  averaged); returns aggregate's statistics."""
  reasons = [left_out(r) for r in rows]
  dropped = [(r, why) for r, why in zip(rows, reasons) if why]
  rows = [r for r, why in zip(rows, reasons) if not why]
  agg = aggregate(rows)
  order = {m: i for i, m in enumerate(METHODS)}
  lines = ["# FlipOut's CIFAR-10 table, rerun with keras_signflip", "",
           "Generated by `python -m benchmarks.flipout_table` from the raw JSON in "
           f"`{os.path.join(FLAGS.output_dir, 'raw')}/`; do not edit by hand. Test accuracy "
           "in %: mean ± std over seeds (n); vs global magnitude: per seed paired, the mean "
           "difference in points with its 95% t interval (2 seeds or more). FlipOut's: its "
           "README's table (3 seeds, 350 epochs, PyTorch).", ""]
  for setting in sorted({(r.get("regime"),) + tuple(_setting(r, k) for k in SETTINGS)
                         for r in rows}):
    regime, epochs, examples, tests, batch, width, noise_on = setting
    partial = [why for why, bad in (
        (f"{epochs} epoch(s), not {EPOCHS}", epochs != EPOCHS),
        (f"{examples} training examples, not 50000", examples != 50000),
        (f"{tests} test examples, not 10000", tests != 10000),
        (f"batch {batch}, not 128", batch != 128),
        (f"width {width:g}, not 1", width != 1),
        (f"noise on {noise_on}, not on every parameter", noise_on != "all")) if bad]
    sources = sorted({r.get("source", "?") for r in rows if r["regime"] == regime})
    lines.append(f"- {regime}: {epochs} epoch(s), {examples} training examples, {tests} test "
                 f"examples, batch {batch}, noise on {noise_on}, "
                 f"width {width:g}; data: {'; '.join(sources)}."
                 + (f" **Not FlipOut's budget** ({', '.join(partial)}): not comparable with "
                    "its numbers." if partial else ""))
  lines += ["", "| model | family | target | method | sparsity | test accuracy % | "
            "vs global magnitude | FlipOut's | n |", "|---|---|---|---|---|---|---|---|---|"]
  for (model, regime, target, method), v in sorted(
      agg.items(), key=lambda kv: (kv[0][:3], order.get(kv[0][3], len(order)))):
    lines.append(f"| {model} | {regime} | {100 * target:g}% | {method} | "
                 f"{100 * v['sparsity']:.2f}% | {100 * v['accuracy_mean']:.2f} ± "
                 f"{100 * v['accuracy_std']:.2f} | {ci_text(v['vs_magnitude'])} | "
                 f"{_published(model, method, target)} | {v['n']} |")
  if not agg:
    lines.append("| (no runs yet) | | | | | | | | |")
  if dropped:
    lines += ["", "Left out of the table (n counts the runs above only):", ""] + [
        f"- {r['model']} {r['regime']} {100 * r['target']:g}% {r['method']} seed {r['seed']}: "
        f"{why}" for r, why in sorted(dropped, key=lambda d: (d[0]["model"], d[0]["method"],
                                                              d[0]["seed"]))]
  results_io.write_text(path, "\n".join(lines) + "\n")
  return agg


def validate():
  """UsageError for bad flags, before anything is loaded or written."""
  bad = ([m for m in FLAGS.methods if m not in METHODS]
         + [m for m in FLAGS.models if m not in models_lib.MODELS])
  if bad:
    raise UsageError(f"unknown {bad}; methods are {list(METHODS)}, models "
                     f"{sorted(models_lib.MODELS)}.")
  if FLAGS.width != 1 and any(m not in models_lib.WIDTH_MODELS for m in FLAGS.models):
    raise UsageError(f"--width={FLAGS.width:g} applies to {list(models_lib.WIDTH_MODELS)} only.")
  if not FLAGS.width > 0 or FLAGS.batch_size < 1 or not 1 <= FLAGS.epochs < 1000:
    raise UsageError("--width must be > 0, --batch_size >= 1 and --epochs in [1, 1000) (a "
                     "seed's epoch e draws data order seed * 1000 + e: no two seeds share one).")
  try:
    targets = [float(t) for t in FLAGS.sparsities]
    assert all(0 < t < 1 for t in targets)
    [int(s) for s in FLAGS.seeds]  # pylint: disable=expression-not-assigned
  except (ValueError, AssertionError):
    raise UsageError("--sparsities must be numbers in (0, 1), --seeds integers.") from None


def main(argv):
  if len(argv) > 1:
    sys.exit(f"flipout_table.py: error: unexpected arguments {argv[1:]}")
  # The run is planned whole but fit one epoch a call: the one-fit warning is moot.
  warnings.filterwarnings("ignore", category=schedule_checks.ScheduleWarning)
  logging.set_verbosity(logging.WARNING)
  compare.tf.get_logger().setLevel("ERROR")
  path = FLAGS.table or os.path.join(FLAGS.output_dir, "README.md")
  if FLAGS.keras == "3" and FLAGS.backend != "tensorflow":
    # TensorFlow only feeds the data here: leave the GPUs' memory to JAX or PyTorch.
    compare.tf.config.set_visible_devices([], "GPU")
  if not FLAGS.report_only:
    try:
      validate()
      if not FLAGS.allow_cpu and not has_gpu():
        raise UsageError(f"no GPU is visible to {family()}; the full grid takes days on one "
                         "GPU (docs/flipout_table.md). Pass --allow_cpu to run on the CPU anyway.")
      data = load_data()  # its errors say how to get CIFAR-10
      for target in FLAGS.sparsities:  # the run must fit FlipOut's events and a recovery tail
        flipout.event_steps(float(target), FLAGS.epochs, data["steps_per_epoch"])
      check_output_dir(settings(data))
    except ValueError as e:
      sys.exit(f"flipout_table.py: error: {e}")
    if FLAGS.keras == "2":
      compare.tf.config.experimental.enable_op_determinism()
    results_io.provenance()  # the code this process loaded, before the checkout moves on
    run_grid(data)
  if FLAGS.write_report or FLAGS.report_only:
    agg = table(results_io.read_raw(FLAGS.output_dir), path)
    print(f"Wrote {path} ({len(agg)} rows)")


if __name__ == "__main__":
  app.run(main)
