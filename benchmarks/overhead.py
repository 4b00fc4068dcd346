r"""Overhead of keras_signflip against TF-MOT, measured as ratios in one process.

1. Per-epoch `fit` time (batch 60, Adam, random data) of each --models entry
   (LeNet-300-100, LeNet-5) and of MLPs of each --widths (two hidden layers
   of that width; the scaling rows): dense, TF-MOT `prune_low_magnitude`, and
   `prune_sign_flip` with `Hybrid` at layer and global scope. Same data, same
   PolynomialDecay schedule (mask updates every 100 steps). Variants run
   interleaved, one epoch each per round, after a warm-up epoch; medians and
   best epochs are reported, ratios against TF-MOT from both.
2. Keras' own check of callback speed: tf_keras warns "Callback method ... is
   slow compared to the batch time" when the callbacks' mean hook time over
   the first batches of a `fit` exceeds the mean batch time; every `fit`
   above is watched for it and the count is printed.
3. Extra bytes per prunable weight of each criterion's wrapper over TF-MOT's
   (the variables of both wrappers on LeNet-300-100, counted).
4. One mask update of a 4096 x 4096 kernel: TF-MOT's magnitude update (a
   full `top_k` sort) against keras_signflip's exact radix selection, layer
   scope and global scope over 16 tensors of 1024 x 1024 (16.8M weights).

    python -m benchmarks.overhead [--rounds=7] [--examples=12000] [--json=out.json]
        [--parts=epochs,memory,mask_update]   # parts 1-2, 3, 4 (all by default)
"""
import contextlib
import logging
import statistics
import time

from absl import app, flags

import numpy as np

import keras_signflip as ksf
from keras_signflip import criteria
from keras_signflip import models as models_lib
from keras_signflip.tf_keras import state as state_lib, mask_update
from keras_signflip.tf_keras._framework import keras, tf, tfmot
from benchmarks import results_io
from benchmarks.epoch_timer import EpochTimer
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl

flags.DEFINE_integer("rounds", 7, "Timed epochs per variant (interleaved).")
flags.DEFINE_integer("examples", 12000, "Training examples per epoch (batch 60).")
flags.DEFINE_list("models", ["lenet_300_100", "lenet5"], "Models timed per epoch.")
flags.DEFINE_list("widths", ["256", "1024", "4096"], "Hidden widths of the scaling MLPs.")
flags.DEFINE_integer("scaling_examples", 3000, "Training examples per epoch for the MLPs.")
flags.DEFINE_integer("update_repeats", 5, "Timed repeats of each mask update.")
flags.DEFINE_string("json", None, "Also write the figures to this JSON file (the parts "
                    "run replace theirs; the others' figures are kept).")
flags.DEFINE_list("parts", ["epochs", "memory", "mask_update"],
                  "What to measure: epochs (fit times and the slow-callback check), memory, "
                  "mask_update.")
FLAGS = flags.FLAGS

VARIANTS = ("dense", "tfmot", "signflip_layer", "signflip_global")


def _mlp(width):
  def build(input_shape, num_classes):
    return keras.Sequential([keras.layers.Flatten(input_shape=input_shape),
                             keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(num_classes)])
  return build


def _variant(name, builder, steps, rounds):
  keras.utils.set_random_seed(0)
  model = builder((28, 28, 1), 10)
  schedule = lambda: tfmot.sparsity.keras.PolynomialDecay(  # noqa: E731
      0.0, 0.9, begin_step=0, end_step=steps * (rounds + 1), frequency=100)
  callbacks = []
  if name == "tfmot":
    model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule())
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
  elif name.startswith("signflip"):
    model = ksf.prune_sign_flip(model, pruning_schedule=schedule(),
                                criterion=criteria.Hybrid(2), scope=name.split("_")[1])
    callbacks = [ksf.UpdatePruningStep()]
  model.compile(keras.optimizers.Adam(1.2e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model, callbacks


class _SlowCallbackWarnings(logging.Handler):
  """Counts tf_keras' "is slow compared to the batch time" warnings."""

  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    if "slow compared to the batch time" in record.getMessage():
      self.messages.append(record.getMessage())


@contextlib.contextmanager
def watch_slow_callbacks():
  handler = _SlowCallbackWarnings()
  logger = tf.get_logger()
  logger.addHandler(handler)
  try:
    yield handler.messages
  finally:
    logger.removeHandler(handler)


def epoch_times(builder, examples, rounds):
  """{variant: [seconds per epoch]} over `rounds` interleaved epochs (`EpochTimer`)."""
  rng = np.random.RandomState(0)
  x, y = rng.rand(examples, 28, 28, 1).astype("float32"), rng.randint(0, 10, examples)
  runs = {n: _variant(n, builder, examples // 60, rounds) for n in VARIANTS}
  for model, cbs in runs.values():  # warm-up epoch: tracing, allocation
    model.fit(x, y, batch_size=60, epochs=1, verbose=0, callbacks=cbs)
  times = {n: [] for n in VARIANTS}
  for r in range(rounds):
    for n in VARIANTS:
      model, cbs = runs[n]
      timer = EpochTimer()
      model.fit(x, y, batch_size=60, epochs=1, verbose=0, callbacks=cbs + [timer])
      times[n] += timer.seconds
    print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in VARIANTS),
          flush=True)
  return times


def summarise(times):
  med = {n: statistics.median(t) for n, t in times.items()}
  best = {n: min(t) for n, t in times.items()}
  return {"median_s": med, "best_s": best,
          "ratio_vs_tfmot_median": {n: med[n] / med["tfmot"] for n in med},
          "ratio_vs_tfmot_best": {n: best[n] / best["tfmot"] for n in best},
          "ratio_vs_dense_median": {n: med[n] / med["dense"] for n in med}}


def _variable_bytes(variables):
  return sum(v.dtype.size * int(np.prod(v.shape)) for v in variables)


def extra_bytes_per_weight():
  """{criterion: bytes per prunable weight beyond TF-MOT's wrapper}, counted
  from the variables both wrappers create on LeNet-300-100."""
  def wrappers(model):
    return [layer for layer in model.layers if hasattr(layer, "pruning_vars")]

  def wrapper_bytes(model):
    own = {id(w) for layer in wrappers(model) for w in layer.layer.weights}
    return _variable_bytes([v for layer in wrappers(model) for v in layer.weights
                            if id(v) not in own])

  def base():
    return models_lib.lenet_300_100((28, 28, 1), 10)
  schedule = tfmot.sparsity.keras.ConstantSparsity(0.9, 0)
  tfmot_model = tfmot.sparsity.keras.prune_low_magnitude(base(), pruning_schedule=schedule)
  prunable = sum(int(np.prod(w.shape)) for layer in wrappers(tfmot_model)
                 for w, *_ in layer.pruning_vars)
  tfmot_bytes = wrapper_bytes(tfmot_model)
  out = {}
  for name in criteria.CRITERIA:
    model = ksf.prune_sign_flip(base(), pruning_schedule=schedule, criterion=name)
    out[name] = (wrapper_bytes(model) - tfmot_bytes) / prunable
  return out


def _flip_vars(weight):
  v = lambda x, d: tf.Variable(x, dtype=d, trainable=False)  # noqa: E731
  return state_lib.PruningState(
      weight, v(tf.ones_like(weight), tf.float32), v(0.0, tf.float32),
      v(tf.zeros(weight.shape, tf.int8), tf.int8), v(tf.zeros(weight.shape, tf.int32), tf.int32),
      None, 0)


def _time(fn):
  fn()  # trace
  samples = []
  for _ in range(FLAGS.update_repeats):
    start = time.perf_counter()
    out = fn()
    tf.nest.map_structure(lambda t: t.numpy(), out)
    samples.append(time.perf_counter() - start)
  return statistics.median(samples)


def mask_update_times():
  rng = np.random.RandomState(1)
  big = tf.Variable(rng.randn(4096, 4096).astype("float32"))
  parts = [tf.Variable(rng.randn(1024, 1024).astype("float32")) for _ in range(16)]
  schedule = tfmot.sparsity.keras.ConstantSparsity(0.9, 0)

  def tfmot_update(weights):
    pruning = pruning_impl.Pruning(lambda: 1, [], schedule, (1, 1), "AVG")
    return tf.function(lambda: [pruning._update_mask(w) for w in weights])  # pylint: disable=protected-access

  big_state, part_states = _flip_vars(big), [_flip_vars(p) for p in parts]
  ours = lambda states: tf.function(  # noqa: E731
      lambda: mask_update.compute_masks(states, 0.9, criteria.Magnitude()))
  ours_layerwise = tf.function(lambda: [
      mask_update.compute_masks([s], 0.9, criteria.Magnitude()) for s in part_states])
  hybrid = tf.function(lambda: mask_update.compute_masks(part_states, 0.9, criteria.Hybrid(2)))
  return {
      "tfmot_4096x4096": _time(tfmot_update([big])),
      "signflip_layer_4096x4096": _time(ours([big_state])),
      "tfmot_16x1024x1024": _time(tfmot_update(parts)),
      "signflip_layer_16x1024x1024": _time(ours_layerwise),
      "signflip_global_16x1024x1024": _time(ours(part_states)),
      "signflip_global_hybrid_16x1024x1024": _time(hybrid),
  }


def _print_epochs(name, summary):
  print(f"{name}: per-epoch fit time, median (best) and ratio to TF-MOT's median (best)")
  for n in VARIANTS:
    print(f"  {n:16s} {summary['median_s'][n]:7.3f} s ({summary['best_s'][n]:.3f})   "
          f"x{summary['ratio_vs_tfmot_median'][n]:.3f} TF-MOT "
          f"(x{summary['ratio_vs_tfmot_best'][n]:.3f})   "
          f"x{summary['ratio_vs_dense_median'][n]:.3f} dense", flush=True)


def main(argv):
  del argv
  tf.get_logger().setLevel("WARNING")
  report = {}
  if "epochs" in FLAGS.parts:
    report.update(measure_epochs())
  if "memory" in FLAGS.parts:
    report["extra_bytes_per_weight_vs_tfmot"] = extra_bytes_per_weight()
    print("Extra bytes per prunable weight over TF-MOT's wrapper (counted variables):")
    for name, b in report["extra_bytes_per_weight_vs_tfmot"].items():
      print(f"  {name:24s} {b:5.2f}")
  if "mask_update" in FLAGS.parts:
    report.update(measure_mask_updates())
  if FLAGS.json:
    results_io.update_json(FLAGS.json, report)


def measure_epochs():
  report = {"epochs": {}, "scaling": {}}
  with watch_slow_callbacks() as slow:
    for name in FLAGS.models:
      print(f"{name}, {FLAGS.examples} examples:", flush=True)
      report["epochs"][name] = summarise(epoch_times(models_lib.get(name), FLAGS.examples,
                                                     FLAGS.rounds))
      _print_epochs(name, report["epochs"][name])
    for width in (int(w) for w in FLAGS.widths):
      name = f"mlp_{width}x2"
      print(f"{name}, {FLAGS.scaling_examples} examples:", flush=True)
      report["scaling"][name] = summarise(epoch_times(_mlp(width), FLAGS.scaling_examples,
                                                      max(3, FLAGS.rounds // 2)))
      _print_epochs(name, report["scaling"][name])
  report["slow_callback_warnings"] = list(slow)
  print(f"tf_keras 'callback is slow compared to the batch time' warnings: {len(slow)}")
  for message in slow:
    print("  " + message)
  return report


def measure_mask_updates():
  updates = mask_update_times()
  tfmot_big, tfmot_parts = updates["tfmot_4096x4096"], updates["tfmot_16x1024x1024"]
  ratios = {
      "layer_4096x4096": updates["signflip_layer_4096x4096"] / tfmot_big,
      "layer_16x1024x1024": updates["signflip_layer_16x1024x1024"] / tfmot_parts,
      "global_16x1024x1024": updates["signflip_global_16x1024x1024"] / tfmot_parts,
      "global_hybrid_16x1024x1024": updates["signflip_global_hybrid_16x1024x1024"] / tfmot_parts,
  }
  print(f"One mask update (median of {FLAGS.update_repeats}; Magnitude unless named):")
  for n, t in updates.items():
    print(f"  {n:36s} {t:7.3f} s")
  for n, r in ratios.items():
    print(f"  ratio {n:30s} x{r:.3f} TF-MOT")
  return {"mask_update_seconds": updates, "mask_update_ratio_vs_tfmot": ratios}


if __name__ == "__main__":
  app.run(main)
