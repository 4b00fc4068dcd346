r"""Does sign-flip pruning reach sparse, accurate networks faster? One command.

Runs every method on real Fashion-MNIST (Debian's IDX files offline, TFDS
otherwise) for each model, target sparsity and seed; keeps one raw JSON per
run under --output_dir/raw (a finished run is never redone, so an interrupted
grid resumes where it stopped); then writes BENCHMARKS.md -- machine,
versions, the exact command, the table and PNG plots -- from those files
only. Nothing in the report is typed by hand.

Methods:
  dense              no pruning
  tfmot              TF-MOT prune_low_magnitude, polynomial schedule, per layer
  global_magnitude   keras_signflip Magnitude, global, polynomial schedule
  hybrid             FlipOut hybrid |w|^2/(flips+1), global, geometric schedule
  sign_flip          SignFlip flip-triggered (min_flips), global, capped by a
                     polynomial schedule: the sparsity emerges
  lfss               LargeFinalSameSign, global, polynomial schedule
  random             Random, global, polynomial schedule
  lottery_magnitude  iterative pruning (20%/round, output 10%) with rewinding
  lottery_hybrid     the same, ranking by the hybrid criterion
  early_bird         early-bird ticket (magnitude) drawn during dense
                     training, pruned once to the target, retrained

"Steps spent" counts every optimizer step, every lottery round included; a
ticket at a target sparsity is the first round at or beyond it. "Mask fixed"
is the step after which the mask no longer changed (for schedules: their last
pruning step; for tickets: the start of the final round).

    python -m benchmarks.compare --quick            # about 10 minutes, 2 cores
    python -m benchmarks.compare                    # the full grid
"""
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

from absl import app, flags, logging

import numpy as np

import keras_signflip as ksf
from keras_signflip import data as data_lib
from keras_signflip.lottery import early_bird as early_bird_lib
from keras_signflip import lottery
from keras_signflip import models as models_lib
from keras_signflip.lottery import reinit as reinit_lib
from keras_signflip.lottery import rewind as rewind_lib
from keras_signflip.tf_keras._compat import keras, tf, tfmot

from benchmarks import overhead as overhead_lib

METHODS = ("dense", "tfmot", "global_magnitude", "hybrid", "sign_flip", "lfss", "random",
           "lottery_magnitude", "lottery_hybrid", "early_bird")

flags.DEFINE_bool("quick", False, "Reduced grid: one seed, sparsities 90 and 98, "
                  "LeNet-300-100, fewer epochs and examples (about 10 minutes).")
flags.DEFINE_list("models", ["lenet_300_100", "lenet5"], "Models.")
flags.DEFINE_list("sparsities", ["0.8", "0.9", "0.95", "0.98", "0.99"], "Target sparsities.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_list("methods", list(METHODS), "Methods to run.")
flags.DEFINE_integer("epochs", 5, "Epochs of one-shot methods (and of dense).")
flags.DEFINE_integer("lottery_epochs", 2, "Epochs per lottery round.")
flags.DEFINE_integer("train_examples", 12000, "Training examples.")
flags.DEFINE_integer("test_examples", 10000, "Test examples.")
flags.DEFINE_integer("min_flips", 1, "Flip threshold of the sign_flip method.")
flags.DEFINE_string("output_dir", None, "Raw results and plots; default "
                    "benchmarks/results/quick or benchmarks/results/full.")
flags.DEFINE_bool("report_only", False, "Regenerate the report from the raw results only.")
flags.DEFINE_string("report", "BENCHMARKS.md", "The generated report.")
flags.DEFINE_string("idx_dir", data_lib.DEFAULT_IDX_DIR, "Fashion-MNIST IDX files.")
flags.DEFINE_bool("overhead", True, "Run benchmarks.overhead's measurements for the report.")
FLAGS = flags.FLAGS

BATCH = 60
LR = 1.2e-3


def _apply_quick():
  if FLAGS.output_dir is None:
    FLAGS.output_dir = os.path.join("benchmarks", "results", "quick" if FLAGS.quick else "full")
  if FLAGS.quick:
    FLAGS.models, FLAGS.sparsities, FLAGS.seeds = ["lenet_300_100"], ["0.9", "0.98"], ["0"]
    FLAGS.epochs, FLAGS.lottery_epochs = min(FLAGS.epochs, 3), 1
    FLAGS.train_examples = min(FLAGS.train_examples, 6000)
    FLAGS.test_examples = min(FLAGS.test_examples, 2000)


class _FlipHistory(keras.callbacks.Callback):
  """Per epoch and wrapped weight: flips of currently unpruned weights.

  Carries over between the one-epoch `fit` calls of one run (it resets only
  for another model), so every epoch gets its own row.
  """

  def __init__(self):
    super().__init__()
    self.epochs, self._last, self._model_id = [], {}, None

  def on_train_begin(self, logs=None):
    if self._model_id != id(self.model):
      self.epochs, self._last, self._model_id = [], {}, id(self.model)

  def on_epoch_end(self, epoch, logs=None):
    row = {}
    for s in ksf.flip_states(self.model):
      count, alive = s.flips.numpy(), s.mask.numpy() > 0
      prev = self._last.get(s.weight.name, np.zeros_like(count))
      row[s.weight.name.split(":")[0]] = int((count - prev)[alive].sum())
      self._last[s.weight.name] = count
    self.epochs.append(row)


def _compile(model):
  model.compile(keras.optimizers.Adam(LR), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])


def _schedule(method, sparsity, total_steps):
  frequency = max(total_steps // 24, 1)
  end = max((total_steps * 2 // 3) // frequency, 1) * frequency
  if method == "hybrid":
    events = max(end // frequency, 1)
    fraction = 1 - (1 - sparsity) ** (1 / events)
    return ksf.tf_keras.schedules.GeometricSparsity(fraction, frequency, 0, end, max_sparsity=sparsity), end
  return tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, 0, end, frequency=frequency), end


def run_schedule_method(method, builder, data, sparsity, seed):
  """One training run with a pruning schedule (or dense)."""
  keras.utils.set_random_seed(seed)
  model = builder()
  steps_per_epoch = math.ceil(FLAGS.train_examples / BATCH)
  total = steps_per_epoch * FLAGS.epochs
  schedule, fixed = _schedule(method, sparsity, total)
  history = _FlipHistory()
  callbacks = [history]
  if method == "tfmot":
    model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
  elif method != "dense":
    criterion = {"global_magnitude": "magnitude", "hybrid": ksf.criteria.Hybrid(2),
                 "sign_flip": "sign_flip", "lfss": "large_final_same_sign",
                 "random": ksf.criteria.Random(seed)}[method]
    model = ksf.prune_sign_flip(model, pruning_schedule=schedule, criterion=criterion,
                                scope="global",
                                min_flips=FLAGS.min_flips if method == "sign_flip" else None)
    callbacks.append(ksf.UpdatePruningStep())
  _compile(model)
  start = time.time()
  for epoch in range(FLAGS.epochs):
    model.fit(data["train"](seed, epoch), epochs=epoch + 1, initial_epoch=epoch, verbose=0,
              callbacks=callbacks)
  accuracy = float(model.evaluate(data["test"], verbose=0)[1])
  return {"test_accuracy": accuracy, "sparsity": ksf.sparsity_report(model)["overall"],
          "steps": int(model.optimizer.iterations.numpy()),
          "mask_fixed_step": 0 if method == "dense" else int(min(fixed, total)),
          "wall_seconds": time.time() - start, "flips_per_epoch": history.epochs}


def _rounds_to_reach(target, builder, config):
  """Rounds until the overall sparsity reaches `target`, from the real kept
  counts (the output layer's slower rate included)."""
  wrapped = ksf.prune_sign_flip(builder(), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0))
  sizes = [int(np.prod(s.weight.shape)) for s in ksf.flip_states(wrapped)]
  r = 0
  while sum(lottery.kept_counts(sizes, config, r)) > (1 - target) * sum(sizes) and r < 200:
    r += 1
  return r


def run_lottery(criterion, builder, data, seed, output_dir):
  """Iterative pruning to beyond the largest target; returns the round rows."""
  target = max(float(s) for s in FLAGS.sparsities)
  config = lottery.LotteryConfig(rounds=0, prune_rate=0.2, prune_rate_output=0.1,
                                 criterion=criterion, epochs=FLAGS.lottery_epochs, seed=seed,
                                 eval_every=math.ceil(FLAGS.train_examples / BATCH))
  config = dataclasses.replace(config, rounds=_rounds_to_reach(target, builder, config))
  return lottery.run(builder, _compile, lambda r, e: data["train"](seed * 1000 + r, e),
                     data["val"], data["test"], config, output_dir, log=lambda *a: None)


def ticket_at(rows, sparsity):
  """The first round at or beyond `sparsity`, with the steps spent to reach it."""
  spent = 0
  for row in sorted(rows, key=lambda r: r["round"]):
    spent += row["steps"]
    if 100 - row["weights_remaining_pct"] >= 100 * sparsity - 1e-9:
      return {"test_accuracy": row["test_accuracy"],
              "sparsity": 1 - row["weights_remaining_pct"] / 100, "steps": spent,
              "mask_fixed_step": spent - row["steps"], "wall_seconds": None,
              "round": row["round"]}
  return None


def run_early_bird(builder, data, sparsity, seed):
  """Dense training with EarlyBird, then one retraining of the ticket."""
  keras.utils.set_random_seed(seed)
  model = ksf.prune_sign_flip(builder(), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
      0.5, begin_step=2**62), criterion="magnitude")
  init = rewind_lib.snapshot(model)
  _compile(model)
  bird = early_bird_lib.EarlyBird(sparsity, "magnitude", epsilon=0.1, window=3)
  start = time.time()
  for epoch in range(FLAGS.epochs):
    model.fit(data["train"](seed, epoch), epochs=epoch + 1, initial_epoch=epoch, verbose=0,
              callbacks=[ksf.UpdatePruningStep(), bird])
    if bird.mask is not None:
      break
  search_steps = int(model.optimizer.iterations.numpy())
  mask = bird.mask or {s.weight.name: m for s, m in zip(ksf.flip_states(model), bird.draw())}
  for s in ksf.flip_states(model):
    s.mask.assign(mask[s.weight.name])
  reinit_lib.reinitialize(model, "rewind", init)
  _compile(model)
  for epoch in range(FLAGS.epochs):
    model.fit(data["train"](seed + 7, epoch), epochs=epoch + 1, initial_epoch=epoch, verbose=0,
              callbacks=[ksf.UpdatePruningStep()])
  return {"test_accuracy": float(model.evaluate(data["test"], verbose=0)[1]),
          "sparsity": ksf.sparsity_report(model)["overall"],
          "steps": search_steps + int(model.optimizer.iterations.numpy()),
          "mask_fixed_step": search_steps, "early_bird_epoch": bird.epoch,
          "wall_seconds": time.time() - start}


def _load_data():
  source = "idx" if os.path.exists(os.path.join(FLAGS.idx_dir, "train-images-idx3-ubyte.gz")) else "auto"
  d = data_lib.load("fashion_mnist", source, FLAGS.idx_dir, log=lambda *a: None)
  n = min(FLAGS.train_examples, d.train_size - 5000)
  train = d.train.skip(5000).take(n).cache()
  return {
      "train": lambda seed, epoch: data_lib.pipeline(train, BATCH, cache=False,
                                                     shuffle_seed=seed * 100 + epoch),
      "val": data_lib.pipeline(d.train.take(min(5000, n // 4)), 1000),
      "test": data_lib.pipeline(d.test, 1000, take=FLAGS.test_examples),
      "source": d.source, "input_shape": d.input_shape, "classes": d.num_classes,
  }


def _raw_path(model, method, sparsity, seed):
  return os.path.join(FLAGS.output_dir, "raw", f"{model}__{method}__{sparsity}__{seed}.json")


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def run_grid(data):
  """Runs every missing (model, method, sparsity, seed); returns nothing."""
  for model_name in FLAGS.models:
    builder = lambda m=model_name: models_lib.get(m)(data["input_shape"], data["classes"])  # noqa: E731
    for seed in (int(s) for s in FLAGS.seeds):
      jobs = [(m, s) for m in FLAGS.methods for s in FLAGS.sparsities]
      for method, s in jobs:
        path = _raw_path(model_name, method, s, seed)
        if os.path.exists(path) or (method == "dense" and s != FLAGS.sparsities[0]):
          continue
        print(f"{model_name} {method} sparsity {s} seed {seed} ...", flush=True)
        if method.startswith("lottery_"):
          criterion = {"lottery_magnitude": "magnitude", "lottery_hybrid": ksf.criteria.Hybrid(2)}[method]
          rows = run_lottery(criterion, builder, data, seed, os.path.join(
              FLAGS.output_dir, "lottery", f"{model_name}__{method}__{seed}"))
          for s2 in FLAGS.sparsities:
            result = ticket_at(rows, float(s2))
            if result is not None:
              _write(_raw_path(model_name, method, s2, seed), dict(
                  result, model=model_name, method=method, target=float(s2), seed=seed))
          continue
        if method == "early_bird":
          result = run_early_bird(builder, data, float(s), seed)
        else:
          result = run_schedule_method(method, builder, data, float(s), seed)
        _write(path, dict(result, model=model_name, method=method,
                          target=0.0 if method == "dense" else float(s), seed=seed))


def load_raw(output_dir):
  raw = os.path.join(output_dir, "raw")
  if not os.path.isdir(raw):
    return []
  rows = []
  for name in sorted(os.listdir(raw)):
    if name.endswith(".json"):
      with open(os.path.join(raw, name)) as f:
        rows.append(json.load(f))
  return rows


def aggregate(rows):
  """{(model, method, target): {mean/std of accuracy, steps, ... , n}}."""
  groups = {}
  for r in rows:
    groups.setdefault((r["model"], r["method"], r["target"]), []).append(r)
  out = {}
  for key, rs in groups.items():
    acc = [r["test_accuracy"] for r in rs]
    walls = [r["wall_seconds"] for r in rs if r.get("wall_seconds") is not None]
    out[key] = {
        "accuracy_mean": statistics.mean(acc),
        "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
        "sparsity": statistics.mean(r["sparsity"] for r in rs),
        "steps": statistics.mean(r["steps"] for r in rs),
        "mask_fixed_step": statistics.mean(r["mask_fixed_step"] for r in rs),
        "wall_seconds": statistics.mean(walls) if walls else None,
        "n": len(rs),
    }
  return out


def answer(agg, models):
  """Two sentences answering the research question, from the table alone."""
  # The headline target is 98%; otherwise the largest target at which
  # every model has both a hybrid and a lottery result.
  common = [t for t in {t for (_, m, t) in agg if m == "hybrid"}
            if all((m, meth, t) in agg for m in models for meth in ("hybrid", "lottery_magnitude"))]
  if not common:
    return "Not enough runs to compare the hybrid with lottery tickets yet."
  target = 0.98 if 0.98 in common else max(common)
  pairs = [(m, agg[(m, "hybrid", target)], agg[(m, "lottery_magnitude", target)])
           for m in models if (m, "hybrid", target) in agg and (m, "lottery_magnitude", target) in agg]
  if not pairs:
    return "Not enough runs to compare the hybrid with lottery tickets yet."
  wins = [m for m, h, lt in pairs if h["accuracy_mean"] >= lt["accuracy_mean"]]
  verdict = ("Yes" if len(wins) == len(pairs) else "No" if not wins else "Partly")
  ratios = ", ".join("%.2fx" % (h["steps"] / lt["steps"]) for _, h, lt in pairs)
  first = (f"{verdict}: at {100 * target:g}% target sparsity the one-run FlipOut hybrid was at "
           f"least as accurate as lottery tickets from iterative magnitude pruning with "
           f"rewinding on {len(wins)} of {len(pairs)} models ({', '.join(m for m, _, _ in pairs)}), "
           f"spending {ratios} of their training steps.")
  second = "Test accuracy, hybrid vs tickets: " + "; ".join(
      f"{m} {100 * h['accuracy_mean']:.2f}% vs {100 * lt['accuracy_mean']:.2f}% "
      f"({100 * (h['accuracy_mean'] - lt['accuracy_mean']):+.2f} points, tickets at "
      f"{100 * lt['sparsity']:.2f}% sparsity, {h['n']} and {lt['n']} seeds)"
      for m, h, lt in pairs) + "."
  return f"{first} {second}"


def plots(rows, agg, output_dir):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  files = []
  models = sorted({m for (m, _, _) in agg})
  for model in models:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for method in METHODS:
      pts = sorted((k[2], v) for k, v in agg.items() if k[0] == model and k[1] == method)
      if not pts:
        continue
      remaining = [100 * (1 - v["sparsity"]) for _, v in pts]
      acc = [100 * v["accuracy_mean"] for _, v in pts]
      err = [100 * v["accuracy_std"] for _, v in pts]
      axes[0].errorbar(remaining, acc, yerr=err, marker="o", label=method, capsize=2)
      axes[1].plot([v["steps"] for _, v in pts], acc, marker="o", linestyle="", label=method)
    axes[0].set_xscale("log")
    axes[0].invert_xaxis()
    axes[0].set_xlabel("% of weights remaining")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("training steps spent")
    for ax in axes:
      ax.set_ylabel("test accuracy (%)")
      ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{model} on Fashion-MNIST")
    fig.tight_layout()
    path = os.path.join(output_dir, f"{model}_accuracy.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    files.append(path)
    flips = [r for r in rows if r["model"] == model and r["method"] in ("hybrid", "sign_flip")
             and r.get("flips_per_epoch")]
    if flips:
      fig, ax = plt.subplots(figsize=(6, 4))
      for r in flips[:4]:
        for layer in r["flips_per_epoch"][0]:
          ax.plot(range(1, len(r["flips_per_epoch"]) + 1),
                  [e.get(layer, 0) for e in r["flips_per_epoch"]], marker=".",
                  label=f"{r['method']} {100 * r['target']:g}% {layer}")
      ax.set_xlabel("epoch")
      ax.set_ylabel("sign flips of unpruned weights")
      ax.set_yscale("symlog")
      ax.legend(fontsize=6)
      ax.grid(True, alpha=0.3)
      fig.tight_layout()
      path = os.path.join(output_dir, f"{model}_flips.png")
      fig.savefig(path, dpi=100)
      plt.close(fig)
      files.append(path)
  return files


def report(rows, commands, overhead, data_source):
  agg = aggregate(rows)
  out_dir = FLAGS.output_dir
  files = plots(rows, agg, out_dir)
  rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(FLAGS.report)) or ".")  # noqa: E731
  lines = ["# BENCHMARKS", "",
           "Generated by `benchmarks/compare.py`; do not edit by hand. Raw per-run JSON: "
           f"`{rel(os.path.join(out_dir, 'raw'))}/`.", "",
           "## Answer", "", answer(agg, sorted({k[0] for k in agg})), "",
           "## Setup", "",
           "- Commands that produced the raw results in this directory, in order: "
           + ", ".join(f"`{c}`" for c in dict.fromkeys(commands)),
           f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
           f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
           f"{platform.release()}; Python {platform.python_version()}",
           f"- Versions: TensorFlow {tf.__version__}, tf_keras {keras.__version__}, "
           f"TF-MOT {tfmot.__version__}, keras_signflip {ksf.__version__}",
           f"- Data: {data_source}; {FLAGS.train_examples} training examples, "
           f"{FLAGS.test_examples} test examples; Adam {LR}, batch {BATCH}; "
           f"{FLAGS.epochs} epochs per one-shot run, {FLAGS.lottery_epochs} per lottery round.",
           "", "## Results", "",
           "Accuracy is mean ± std over seeds (n runs). Steps: optimizer steps spent, all "
           "lottery rounds included. Mask fixed: step after which the mask no longer changed.",
           "", "| model | method | target | sparsity | test accuracy % | steps | mask fixed | wall s | n |",
           "|---|---|---|---|---|---|---|---|---|"]
  for (model, method, target), v in sorted(agg.items(), key=lambda kv: (kv[0][0], kv[0][2], METHODS.index(kv[0][1]))):
    wall = f"{v['wall_seconds']:.1f}" if v["wall_seconds"] is not None else "-"
    lines.append(f"| {model} | {method} | {100 * target:g}% | {100 * v['sparsity']:.2f}% | "
                 f"{100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} | "
                 f"{v['steps']:.0f} | {v['mask_fixed_step']:.0f} | {wall} | {v['n']} |")
  lines += ["", "## Plots", ""] + [f"![{os.path.basename(f)}]({rel(f)})" for f in files]
  if overhead:
    lines += ["", "## Overhead (benchmarks/overhead.py, same process ratios)", "", "```",
              json.dumps(overhead, indent=1, sort_keys=True), "```"]
  with open(FLAGS.report + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(FLAGS.report + ".tmp", FLAGS.report)
  _write(os.path.join(out_dir, "aggregate.json"),
         [dict(model=k[0], method=k[1], target=k[2], **v) for k, v in agg.items()])
  return agg


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  _apply_quick()
  unknown = [m for m in FLAGS.methods if m not in METHODS]
  if unknown or any(m not in models_lib.MODELS for m in FLAGS.models):
    print(f"compare.py: error: unknown methods {unknown} or models {FLAGS.models}; "
          f"methods are {list(METHODS)}, models {sorted(models_lib.MODELS)}.", file=sys.stderr)
    sys.exit(2)
  tf.config.experimental.enable_op_determinism()
  data = _load_data()
  if not FLAGS.report_only:
    run_grid(data)
  overhead = None
  if FLAGS.overhead and not FLAGS.report_only:
    FLAGS.rounds, FLAGS.examples = (3, 3000) if FLAGS.quick else (7, 12000)
    epochs, medians = overhead_lib.epoch_times()
    updates = overhead_lib.mask_update_times()
    overhead = {"epoch_seconds_best": epochs,
                "epoch_ratio_vs_tfmot_best": {k: v / epochs["tfmot"] for k, v in epochs.items()},
                "epoch_ratio_vs_tfmot_median": {k: v / medians["tfmot"] for k, v in medians.items()},
                "mask_update_seconds": updates,
                "mask_update_ratio_vs_tfmot_4096x4096":
                    updates["signflip_layer_4096x4096"] / updates["tfmot_4096x4096"]}
  if overhead:
    _write(os.path.join(FLAGS.output_dir, "overhead.json"), overhead)
  elif os.path.exists(os.path.join(FLAGS.output_dir, "overhead.json")):
    with open(os.path.join(FLAGS.output_dir, "overhead.json")) as f:
      overhead = json.load(f)
  command = ("python -m benchmarks.compare " + " ".join(sys.argv[1:])).strip()
  log_path = os.path.join(FLAGS.output_dir, "commands.json")
  commands = json.load(open(log_path)) if os.path.exists(log_path) else []
  _write(log_path, commands + [command])
  agg = report(load_raw(FLAGS.output_dir), commands + [command], overhead, data["source"])
  print(f"Wrote {FLAGS.report} ({len(agg)} table rows) and plots in {FLAGS.output_dir}")


if __name__ == "__main__":
  app.run(main)
