r"""Overhead of keras_signflip against TF-MOT, measured as ratios in one process.

1. Per-epoch `fit` time of LeNet-300-100 (batch 60): dense, TF-MOT
   `prune_low_magnitude`, and `prune_sign_flip` with `Hybrid` at layer and
   global scope. Same data, same PolynomialDecay schedule (mask updates every
   100 steps). Variants run interleaved, round after round; the best
   epoch time of each is reported (this shared machine stalls at times), and
   the medians go into --json.
2. One mask update of a 4096 x 4096 kernel: TF-MOT's magnitude update (a
   full `top_k` sort) against keras_signflip's exact radix selection, layer
   scope and global scope over 16 tensors of 1024 x 1024 (16.8M weights).

    python -m benchmarks.overhead [--rounds=5] [--examples=12000] [--json=out.json]
"""
import json
import statistics
import time

from absl import app, flags

import numpy as np

import keras_signflip as ksf
from keras_signflip import criteria
from keras_signflip.tf_keras import state as state_lib, mask_update
from keras_signflip.tf_keras._compat import keras, tf, tfmot
from keras_signflip.models import lenet_300_100
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl

flags.DEFINE_integer("rounds", 5, "Timed epochs per variant (interleaved).")
flags.DEFINE_integer("examples", 12000, "Training examples per epoch (batch 60).")
flags.DEFINE_integer("update_repeats", 3, "Timed repeats of each mask update.")
flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")
FLAGS = flags.FLAGS


def _data(n):
  rng = np.random.RandomState(0)
  return rng.rand(n, 28, 28).astype("float32"), rng.randint(0, 10, n)


def _variant(name, steps):
  keras.utils.set_random_seed(0)
  model = lenet_300_100((28, 28), 10)
  schedule = lambda: tfmot.sparsity.keras.PolynomialDecay(  # noqa: E731
      0.0, 0.9, begin_step=0, end_step=steps * (FLAGS.rounds + 1), frequency=100)
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


def epoch_times():
  x, y = _data(FLAGS.examples)
  steps = FLAGS.examples // 60
  names = ["dense", "tfmot", "signflip_layer", "signflip_global"]
  runs = {n: _variant(n, steps) for n in names}
  for n, (model, cbs) in runs.items():  # warm-up epoch: tracing, allocation
    model.fit(x, y, batch_size=60, epochs=1, verbose=0, callbacks=cbs)
  times = {n: [] for n in names}
  for r in range(FLAGS.rounds):
    for n in names:
      model, cbs = runs[n]
      start = time.perf_counter()
      model.fit(x, y, batch_size=60, epochs=1, verbose=0, callbacks=cbs)
      times[n].append(time.perf_counter() - start)
    print(f"round {r + 1}/{FLAGS.rounds}: " +
          ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names), flush=True)
  # This shared machine stalls now and then; the minimum is the stable figure.
  return ({n: min(t) for n, t in times.items()}, {n: statistics.median(t) for n, t in times.items()})


def _flip_vars(weight):
  v = lambda x, d: tf.Variable(x, dtype=d, trainable=False)  # noqa: E731
  return state_lib.FlipState(
      weight, v(tf.ones_like(weight), tf.float32), v(0.0, tf.float32),
      v(tf.zeros(weight.shape, tf.int8), tf.int8), v(tf.zeros(weight.shape, tf.int32), tf.int32),
      v(weight, tf.float32), 0)


def _time(fn):
  fn()  # trace
  samples = []
  for _ in range(FLAGS.update_repeats):
    start = time.perf_counter()
    out = fn()
    tf.nest.map_structure(lambda t: t.numpy(), out)
    samples.append(time.perf_counter() - start)
  return min(samples)


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
  return {
      "tfmot_4096x4096": _time(tfmot_update([big])),
      "signflip_layer_4096x4096": _time(ours([big_state])),
      "tfmot_16x1024x1024": _time(tfmot_update(parts)),
      "signflip_layer_16x1024x1024": _time(ours_layerwise),
      "signflip_global_16x1024x1024": _time(ours(part_states)),
  }


def main(argv):
  del argv
  epochs, medians = epoch_times()
  updates = mask_update_times()
  report = {
      "epoch_seconds": epochs,
      "epoch_seconds_median": medians,
      "epoch_ratio_vs_tfmot_median": {n: medians[n] / medians["tfmot"] for n in medians},
      "epoch_ratio_vs_tfmot": {n: epochs[n] / epochs["tfmot"] for n in epochs},
      "epoch_ratio_vs_dense": {n: epochs[n] / epochs["dense"] for n in epochs},
      "mask_update_seconds": updates,
      "mask_update_ratio_vs_tfmot": {
          "layer_4096x4096": updates["signflip_layer_4096x4096"] / updates["tfmot_4096x4096"],
          "layer_16x1024x1024": updates["signflip_layer_16x1024x1024"] / updates["tfmot_16x1024x1024"],
          "global_16x1024x1024": updates["signflip_global_16x1024x1024"] / updates["tfmot_16x1024x1024"],
      },
      "extra_bytes_per_weight_vs_tfmot": 9,
  }
  print("\nPer-epoch fit time, LeNet-300-100, batch 60, "
        f"{FLAGS.examples} examples (best of {FLAGS.rounds}; medians in --json):")
  for n, t in epochs.items():
    print(f"  {n:16s} {t:7.3f} s   x{report['epoch_ratio_vs_tfmot'][n]:.3f} TF-MOT"
          f"   x{report['epoch_ratio_vs_dense'][n]:.3f} dense")
  print("One mask update (best of %d):" % FLAGS.update_repeats)
  for n, t in updates.items():
    print(f"  {n:30s} {t:7.3f} s")
  for n, r in report["mask_update_ratio_vs_tfmot"].items():
    print(f"  ratio {n:24s} x{r:.3f} TF-MOT")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  app.run(main)
