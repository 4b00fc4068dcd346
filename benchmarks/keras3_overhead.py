r"""Per-epoch overhead of the Keras 3 wrapper over the same unwrapped model.

LeNet-300-100 (batch 60, Adam, NumPy data), dense against `prune_sign_flip`
with `Hybrid` at layer and global scope (PolynomialDecay to 90%, a mask
update every 100 steps). Variants run interleaved, one epoch at a time after
a warm-up epoch, timed by `benchmarks.epoch_timer.EpochTimer` (the epoch,
not `fit`'s setup and teardown); medians are the figures, the best epochs
beside them. Each backend runs in its own
process; needs only Keras 3 and the backend (no TensorFlow for JAX/PyTorch).

Each backend also counts the extra bytes per prunable weight of every
criterion's wrapper over the unwrapped model: the wrapper's own variables,
plus the optimizer's `<weight>_grad_product` accumulators for the criteria
that read gradients (`record_gradients`).

    python -m benchmarks.keras3_overhead --backends=tensorflow,jax,torch [--rounds=5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np


def _extra_bytes_per_weight():
  """{criterion: extra bytes per prunable weight over the unwrapped LeNet-300-100}."""
  import keras  # pylint: disable=g-import-not-at-top
  import keras_signflip as ksf  # pylint: disable=g-import-not-at-top
  import keras_signflip.keras3 as k3  # pylint: disable=g-import-not-at-top
  from keras_signflip import criteria  # pylint: disable=g-import-not-at-top

  def nbytes(variables):
    return sum(np.dtype(v.dtype).itemsize * int(np.prod(v.shape)) for v in variables)

  out = {}
  for name in criteria.CRITERIA:
    model = k3.prune_sign_flip(
        keras.Sequential([keras.Input((784,)), keras.layers.Dense(300),
                          keras.layers.Dense(100), keras.layers.Dense(10)]),
        criterion=name)
    wrappers = [w for w in model.layers if isinstance(w, k3.PruneSignFlip)]
    own = {id(v) for w in wrappers for v in w.layer.weights}
    extra = nbytes([v for w in wrappers for v in w.weights if id(v) not in own])
    if criteria.get(name).uses_gradients:
      optimizer = ksf.record_gradients(keras.optimizers.SGD())
      optimizer.build(model.trainable_variables)
      extra += nbytes([v for v in optimizer.variables if v.name.endswith("_grad_product")])
    prunable = sum(int(np.prod(s.weight.shape)) for w in wrappers for s in w.flip_states)
    out[name] = extra / prunable
  return out


def _measure(rounds, examples):
  import keras  # pylint: disable=g-import-not-at-top
  import keras_signflip.keras3 as k3  # pylint: disable=g-import-not-at-top
  from benchmarks.epoch_timer import EpochTimer  # pylint: disable=g-import-not-at-top

  rng = np.random.RandomState(0)
  x = rng.rand(examples, 784).astype("float32")
  y = rng.randint(0, 10, examples)
  steps = -(-examples // 60)

  def build(variant):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(300, activation="relu"),
                              keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)])
    callbacks = []
    if variant != "dense":
      schedule = k3.schedules.PolynomialDecay(0.0, 0.9, 0, steps * (rounds + 1), frequency=100)
      model = k3.prune_sign_flip(model, pruning_schedule=schedule, criterion="hybrid",
                                 scope=variant)
      callbacks = [k3.UpdatePruningStep()]
    model.compile(keras.optimizers.Adam(1.2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, callbacks

  variants = {v: build(v) for v in ("dense", "layer", "global")}
  times = {v: [] for v in variants}
  for r in range(rounds + 1):
    for v, (model, callbacks) in variants.items():
      timer = EpochTimer()
      model.fit(x, y, batch_size=60, epochs=r + 1, initial_epoch=r, verbose=0,
                shuffle=False, callbacks=callbacks + [timer])
      if r:  # round 0 compiles
        times[v] += timer.seconds
  best = {v: min(t) for v, t in times.items()}
  median = {v: statistics.median(t) for v, t in times.items()}
  sparsity = k3.sparsity_report(variants["global"][0])["overall"]
  return {"backend": keras.backend.backend(), "keras": keras.__version__,
          "best_s": best, "median_s": median, "final_sparsity_global": sparsity,
          "overhead_layer": best["layer"] / best["dense"],
          "overhead_global": best["global"] / best["dense"],
          "overhead_layer_median": median["layer"] / median["dense"],
          "overhead_global_median": median["global"] / median["dense"],
          "extra_bytes_per_weight": _extra_bytes_per_weight()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--backends", default="tensorflow,jax,torch")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--examples", type=int, default=12000)
  parser.add_argument("--json", default=None)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print("RESULT " + json.dumps(_measure(args.rounds, args.examples)))
    return
  results = []
  for backend in args.backends.split(","):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    print(f"[{backend}] {args.rounds} timed epochs per variant ...", flush=True)
    out = subprocess.run([sys.executable, "-m", "benchmarks.keras3_overhead", "--child",
                          f"--rounds={args.rounds}", f"--examples={args.examples}"],
                         env=env, capture_output=True, text=True)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode or not line:
      print(f"[{backend}] failed:\n{out.stderr[-2000:]}")
      continue
    results.append(json.loads(line[0][len("RESULT "):]))
  print("\nRatio to the unwrapped model's epoch, median (best):")
  print("backend      dense s/epoch  layer x          global x")
  for r in results:
    print(f"{r['backend']:<12} {r['median_s']['dense']:>13.3f}  "
          f"{r['overhead_layer_median']:.3f} ({r['overhead_layer']:.3f})    "
          f"{r['overhead_global_median']:.3f} ({r['overhead_global']:.3f})")
  if results:
    names = list(results[0]["extra_bytes_per_weight"])
    print("\nExtra bytes per prunable weight over the unwrapped model (counted variables):")
    print(f"{'criterion':<24}" + "".join(f"{r['backend']:>12}" for r in results))
    for name in names:
      print(f"{name:<24}" + "".join(f"{r['extra_bytes_per_weight'][name]:>12.2f}"
                                    for r in results))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
