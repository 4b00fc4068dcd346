r"""Structured pruning that shrinks: latency of the shrunk model, accuracy beside unstructured.

(a) Latency (`--parts=latency`). LeNet-300-100 and LeNet-5 (tf_keras, plain
    TensorFlow, no custom kernels) with 50/75/90% of every hidden layer's units
    removed (`kept_count(units, fraction)` kept; the output layer whole) by
    `ksf.shrink`. Which units are removed does not change a layer's cost, so
    they are drawn at random. Each model is called through one `tf.function`
    (training=False), dense and shrunk alternating, `--repeats` timed calls
    after 20 untimed ones, at batch 1 and 128, each shrunk call timed back to
    back with a dense one (order alternating); the report gives the medians and
    the median of the paired ratios shrunk / dense, with its quartiles.
(b) Accuracy (`--parts=accuracy`). LeNet-300-100 on Fashion-MNIST, compare.py's
    data, FlipOut's regime without gradient noise and its schedule (same steps,
    data order and learning rate for both): `Units(Hybrid(2))` at layer scope
    (each hidden layer reaches the unit fraction; the output layer dense), shrunk
    after training, against unstructured global `Hybrid(2)` (compare's `hybrid`)
    at the same number of kept kernel weights; per seed paired, the mean
    difference with its 95% t interval (`analysis.paired`).

One raw JSON a run under --structured_dir/raw (a finished run is not redone);
the report (README.md there) is written from those files only.

    python -m benchmarks.structured --parts=latency
    TF_NUM_INTRAOP_THREADS=1 python -m benchmarks.structured --parts=accuracy
    python -m benchmarks.structured --report_only
"""
import os
import platform
import statistics
import time

from absl import app, flags

import numpy as np

from benchmarks import compare  # defines the shared flags (epochs, seeds, ...)
from benchmarks import results_io
from benchmarks.analysis import ci_text, paired

ksf, keras, tf, flipout = compare.ksf, compare.keras, compare.tf, compare.flipout
models_lib = compare.models_lib

flags.DEFINE_list("parts", ["latency", "accuracy"], "Which parts to run: latency, accuracy.")
flags.DEFINE_list("fractions", ["0.5", "0.75", "0.9"], "Fractions of each hidden layer's units "
                  "removed.")
flags.DEFINE_list("latency_models", ["lenet_300_100", "lenet5"], "Models timed in part (a).")
flags.DEFINE_integer("repeats", 400, "Timed calls per model and batch size (median).")
flags.DEFINE_string("accuracy_model", "lenet_300_100", "The model of part (b).")
flags.DEFINE_string("structured_dir", os.path.join("benchmarks", "results", "structured"),
                    "Raw results (raw/) and the report (README.md).")
FLAGS = flags.FLAGS

BATCHES = (1, 128)
INPUT_SHAPE, CLASSES = (28, 28, 1), 10


def _hidden_producers(model):
  layers = [l for l in model.layers if type(l).__name__ in ksf.shrinking.PRODUCERS]
  return layers[:-1]


def remove_units(model, fraction, seed):
  """`model` with kept_count(units, fraction) units of each hidden layer kept, the
  others' kernel columns and biases zeroed (at random), shrunk."""
  rng = np.random.default_rng(seed)
  for layer in _hidden_producers(model):
    kernel, bias = layer.get_weights()
    units = kernel.shape[-1]
    kept = max(int(np.round(units * (1 - fraction))), 1)
    gone = rng.permutation(units)[kept:]
    kernel[..., gone], bias[gone] = 0, 0
    layer.set_weights([kernel, bias])
  return ksf.shrink(model)


def kernel_weights(model):
  return sum(int(np.prod(l.get_weights()[0].shape)) for l in model.layers
             if type(l).__name__ in ksf.shrinking.PRODUCERS)


def _timed(fn, x):
  start = time.perf_counter()
  fn(x).numpy()
  return time.perf_counter() - start


def layer_times(model, x, repeats=50):
  """[(layer name, median ms)] of each layer called alone (its own tf.function) on the
  previous layer's output: where a model's time goes."""
  out = []
  for layer in model.layers:
    if isinstance(layer, keras.layers.InputLayer):
      continue
    fn = tf.function(lambda a, layer=layer: layer(a, training=False))
    for _ in range(5):
      fn(x).numpy()
    out.append((layer.name, 1e3 * statistics.median(_timed(fn, x) for _ in range(repeats))))
    x = fn(x)
  return out


def run_latency(model_name, fraction):
  keras.utils.set_random_seed(0)
  dense = models_lib.get(model_name)(INPUT_SHAPE, CLASSES)
  small = remove_units(models_lib.get(model_name)(INPUT_SHAPE, CLASSES), fraction, 0)
  out = {"part": "latency", "model": model_name, "fraction": fraction,
         "params_dense": dense.count_params(), "params_shrunk": small.count_params(),
         "kernel_weights_dense": kernel_weights(dense),
         "kernel_weights_shrunk": kernel_weights(small), "repeats": FLAGS.repeats,
         "threads": [os.environ.get("TF_NUM_INTRAOP_THREADS", "default"),
                     os.environ.get("TF_NUM_INTEROP_THREADS", "default")],
         "tensorflow": tf.__version__, "machine": platform.processor() or platform.machine(),
         "batches": {}}
  calls = {name: tf.function(lambda x, m=m: m(x, training=False))
           for name, m in (("dense", dense), ("shrunk", small))}
  for batch in BATCHES:
    x = tf.constant(np.random.default_rng(1).normal(size=(batch,) + INPUT_SHAPE), tf.float32)
    for fn in calls.values():
      for _ in range(20):
        fn(x).numpy()
    times = {name: [] for name in calls}
    for i in range(FLAGS.repeats):  # back to back, the order alternating
      for name in (("dense", "shrunk") if i % 2 == 0 else ("shrunk", "dense")):
        times[name].append(_timed(calls[name], x))
    ratios = np.asarray(times["shrunk"]) / np.asarray(times["dense"])
    out["batches"][str(batch)] = {
        "dense_ms": 1e3 * statistics.median(times["dense"]),
        "shrunk_ms": 1e3 * statistics.median(times["shrunk"]),
        "ratio": float(np.median(ratios)),
        "ratio_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])]}
  x = tf.constant(np.random.default_rng(1).normal(size=(BATCHES[-1],) + INPUT_SHAPE), tf.float32)
  out["layers"] = [[kind, name, ms] for kind, m in (("dense", dense), ("shrunk", small))
                   for name, ms in layer_times(m, x)]
  return out


def matched_sparsity(model_name, fraction):
  """The unstructured sparsity with the kernel weights the shrunk structured model keeps."""
  dense = models_lib.get(model_name)(INPUT_SHAPE, CLASSES)
  small = remove_units(models_lib.get(model_name)(INPUT_SHAPE, CLASSES), fraction, 0)
  return 1 - kernel_weights(small) / kernel_weights(dense)


def run_structured(builder, data, fraction, seed):
  """FlipOut's schedule and regime (no noise), Units(Hybrid(2)) per layer, then shrunk."""
  keras.utils.set_random_seed(seed)
  steps_per_epoch = data["steps_per_epoch"]
  kwargs = flipout.prune_kwargs(fraction, FLAGS.epochs, steps_per_epoch)
  model = ksf.prune_sign_flip(builder(), kwargs["pruning_schedule"], criterion=kwargs["criterion"],
                              structure="units", dense_layers=("last",))
  compare._compile(model, compare._optimizer("flipout", FLAGS.epochs, steps_per_epoch,  # pylint: disable=protected-access
                                             False, seed))
  start = time.time()
  for epoch in range(FLAGS.epochs):
    model.fit(data["train"](seed, epoch), epochs=epoch + 1, initial_epoch=epoch, verbose=0,
              callbacks=[ksf.UpdatePruningStep()])
  small = ksf.shrink(model)
  compare._compile(small, "sgd")  # pylint: disable=protected-access
  masked = ksf.strip_pruning(model)
  compare._compile(masked, "sgd")  # pylint: disable=protected-access
  return {"test_accuracy": float(small.evaluate(data["test"], verbose=0)[1]),
          "masked_test_accuracy": float(masked.evaluate(data["test"], verbose=0)[1]),
          "val_accuracy": float(small.evaluate(data["val"], verbose=0)[1]),
          "kernel_weights": kernel_weights(small), "params": small.count_params(),
          "steps": int(model.optimizer.iterations.numpy()), "wall_seconds": time.time() - start}


def _raw(*parts):
  return os.path.join(FLAGS.structured_dir, "raw", "__".join(str(p) for p in parts) + ".json")


def latency_part():
  for model_name in FLAGS.latency_models:
    for fraction in map(float, FLAGS.fractions):
      path = _raw("latency", model_name, f"{fraction:g}")
      if not os.path.exists(path):
        results_io.write_json(path, run_latency(model_name, fraction))
        print(f"latency {model_name} {fraction:g}: written", flush=True)


def accuracy_part():
  data = compare._load_data()  # pylint: disable=protected-access
  name = FLAGS.accuracy_model
  builder = lambda: models_lib.get(name)(data["input_shape"], data["classes"])  # noqa: E731
  for seed in map(int, FLAGS.seeds):
    for fraction in map(float, FLAGS.fractions):
      for method in ("units", "weights"):
        path = _raw("accuracy", name, method, f"{fraction:g}", seed)
        if os.path.exists(path):
          continue
        target = matched_sparsity(name, fraction)
        result = (run_structured(builder, data, fraction, seed) if method == "units" else
                  compare.run_one_shot("hybrid", "flipout", builder, data, target, seed))
        result.update(part="accuracy", model=name, method=method, fraction=fraction,
                      seed=seed, target_sparsity=target, epochs=FLAGS.epochs,
                      train_examples=data["train_examples"], source=data["source"])
        result.pop("flips_per_epoch", None)
        results_io.write_json(path, result)
        print(f"accuracy {name} {method} {fraction:g} seed {seed}: "
              f"{result['test_accuracy']:.4f}", flush=True)


def report(rows):
  lines = ["# Structured pruning that shrinks: measured", "",
           "Generated by `python -m benchmarks.structured --report_only` from `raw/` (one JSON "
           "a run); how each number is measured: the docstring of `benchmarks/structured.py` "
           "and `docs/structured.md`.", ""]
  latency = [r for r in rows if r["part"] == "latency"]
  if latency:
    r0 = latency[0]
    lines += ["## (a) Latency of the shrunk model against the dense one (plain TensorFlow)", "",
              f"tf_keras on TensorFlow {r0['tensorflow']}, CPU, threads (intra, inter) "
              f"{r0['threads']} (TF_NUM_INTRAOP_THREADS, TF_NUM_INTEROP_THREADS), "
              f"median of {r0['repeats']} calls "
              "of a `tf.function` per model; each shrunk call paired with a dense one, back to "
              "back in one process (a 2-core machine shared with other jobs: the absolute "
              "times vary between rows, the paired ratios much less).", "",
              "| model | units removed | parameters dense -> shrunk | batch | dense ms | "
              "shrunk ms | shrunk / dense (quartiles) |", "|---|---|---|---|---|---|---|"]
    for r in sorted(latency, key=lambda r: (r["model"], r["fraction"])):
      for batch, b in sorted(r["batches"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {r['model']} | {100 * r['fraction']:g}% | {r['params_dense']:,} -> "
                     f"{r['params_shrunk']:,} | {batch} | {b['dense_ms']:.3f} | "
                     f"{b['shrunk_ms']:.3f} | {b['ratio']:.2f} ({b['ratio_quartiles'][0]:.2f}-"
                     f"{b['ratio_quartiles'][1]:.2f}) |")
    lines.append("")
    timed = [r for r in latency if r.get("layers") and r["fraction"] == max(
        x["fraction"] for x in latency)]
    if timed:
      lines += ["Where the time goes, at batch 128 and the largest fraction: each layer "
                "called alone on the previous layer's output (median of 50 calls, ms).", "",
                "| model | layer | dense ms | shrunk ms |", "|---|---|---|---|"]
      for r in sorted(timed, key=lambda r: r["model"]):
        dense = [(n, ms) for kind, n, ms in r["layers"] if kind == "dense"]
        shrunk = [ms for kind, _, ms in r["layers"] if kind == "shrunk"]
        lines += [f"| {r['model']} | {n} | {d:.3f} | {sm:.3f} |"
                  for (n, d), sm in zip(dense, shrunk)]
      lines.append("")
  accuracy = [r for r in rows if r["part"] == "accuracy"]
  lines += ["## (b) Accuracy: units against weights at the same kernel-weight count", ""]
  if not accuracy:
    lines += ["Not run yet (`--parts=accuracy`).", ""]
  else:
    by = {}
    for r in accuracy:
      by.setdefault((r["model"], r["fraction"], r["method"]), {})[r["seed"]] = r
    r0 = accuracy[0]
    lines += [f"Fashion-MNIST ({r0['source']}, {r0['train_examples']} "
              f"training examples), {r0['epochs']} epochs, FlipOut's schedule and SGD regime "
              "without gradient noise; `units`: Units(Hybrid(2)) per layer, output layer dense, "
              "test accuracy of the shrunk model; `weights`: global Hybrid(2) at the sparsity "
              "that keeps the same number of kernel weights. Differences are units - weights, "
              "paired by seed, with 95% t intervals.", "",
              "| model | units removed | kernel weights kept | weights: sparsity | "
              "units: accuracy | weights: accuracy | units - weights (pp) | seeds |",
              "|---|---|---|---|---|---|---|---|"]
    for (model, fraction) in sorted({(k[0], k[1]) for k in by}):
      units, weights = by.get((model, fraction, "units"), {}), by.get((model, fraction,
                                                                      "weights"), {})
      acc = lambda runs: {s: r["test_accuracy"] for s, r in runs.items()}  # noqa: E731
      mean = lambda runs: (f"{100 * statistics.mean(acc(runs).values()):.2f}%"  # noqa: E731
                           if runs else "-")
      any_run = next(iter({**units, **weights}.values()))
      kept = next(iter(units.values()))["kernel_weights"] if units else "-"
      lines.append(f"| {model} | {100 * fraction:g}% | {kept:,} | "
                   f"{100 * any_run['target_sparsity']:.2f}% | {mean(units)} | {mean(weights)} | "
                   f"{ci_text(paired(acc(units), acc(weights)))} | "
                   f"{len(set(units) & set(weights))} |")
    shrunk = [r for r in accuracy if r["method"] == "units"]
    same = sum(r["test_accuracy"] == r["masked_test_accuracy"] for r in shrunk)
    lines += ["", f"The shrunk model's test accuracy equals the masked model's in {same} of "
              f"{len(shrunk)} `units` runs.", ""]
  return "\n".join(lines)


def main(argv):
  del argv
  rows = results_io.read_raw(FLAGS.structured_dir)
  if not FLAGS.report_only:
    unknown = set(FLAGS.parts) - {"latency", "accuracy"}
    if unknown:
      raise app.UsageError(f"--parts: unknown {sorted(unknown)}; expected latency, accuracy.")
    if "latency" in FLAGS.parts:
      latency_part()
    if "accuracy" in FLAGS.parts:
      accuracy_part()
    rows = results_io.read_raw(FLAGS.structured_dir)
  results_io.write_text(os.path.join(FLAGS.structured_dir, "README.md"), report(rows))


if __name__ == "__main__":
  app.run(main)
