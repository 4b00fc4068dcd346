r"""Serving latency and size of the sparse SavedModel against the dense one.

Prunes LeNet-300-100, LeNet-5 and a 4096-wide MLP to each of --sparsities
with magnitude (--scope global or per layer) on random data (latency depends
on the shapes and the format, not on what was learnt), exports it four times
-- `sparse=False` (plain dense variables, the baseline), `sparse=True` (bits +
values, densified once into a cache when it loads), and that with
`kernels="auto"` (ELL or COO products where this machine measured them
faster) and `kernels="sparse"` (COO products at every batch) -- loads each
with plain `tf.saved_model.load` and times their calls interleaved, per batch
size, through the `serving_default` signature and through the restored
tf.function (`loaded.serve`): TensorFlow adds a fixed cost to every signature
call, dense or sparse (~4 ms at batch 1 here, ~0.5 ms above), which hides
what the products save. With --tflite it also converts the pruned model to
TFLite twice (TF's sparsity optimisation, and plain) and times
`tf.lite.Interpreter.invoke` at batch 1, interleaved (XNNPack is TFLite's
default CPU delegate). Prints medians, ratios sparse/dense and sizes as JSON.

    python -m benchmarks.inference
"""
import json
import os
import statistics
import tempfile
import time

from absl import app, flags

import numpy as np

import keras_signflip as ksf
from keras_signflip import models as models_lib
from keras_signflip.tf_keras import export as export_lib
from keras_signflip.tf_keras._framework import keras, tf, tfmot

from benchmarks import results_io

flags.DEFINE_list("sparsities", ["0.95", "0.98"], "Global sparsities of the pruned models.")
flags.DEFINE_list("batches", ["1", "4", "16", "256"], "Batch sizes.")
flags.DEFINE_integer("calls", 200, "Timed calls per model, batch size and path (interleaved).")
flags.DEFINE_multi_enum(
    "through", ["signature", "function"], ["signature", "function"],
    "How to call each loaded SavedModel: its serving_default signature, or the restored "
    "tf.function (`loaded.serve`). TF adds a fixed cost to signature calls, largest at batch 1.")
flags.DEFINE_list("models", ["lenet_300_100", "lenet5", "mlp_4096"],
                  "Models: keras_signflip.models names, or mlp_4096 (784-4096-4096-10).")
flags.DEFINE_enum("scope", "global", ["global", "layer"],
                  "Magnitude pruning scope: global leaves some layers denser than others.")
flags.DEFINE_bool("tflite", True, "Also TFLite: sparsity-optimised vs plain, batch 1.")
flags.DEFINE_string("json", None, "Also write the figures to this JSON file (entries measured "
                    "replace theirs; the others are kept).")
FLAGS = flags.FLAGS


def _wide_mlp(input_shape, classes):
  x = inputs = keras.Input(input_shape)
  x = keras.layers.Flatten()(x)
  for i in range(2):
    x = keras.layers.Dense(4096, activation="relu", name=f"fc{i + 1}")(x)
  return keras.Model(inputs, keras.layers.Dense(classes, name="output")(x))


def _pruned(builder, sparsity):
  keras.utils.set_random_seed(0)
  model = ksf.prune_sign_flip(builder((28, 28, 1), 10), criterion="magnitude", scope=FLAGS.scope,
                              pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                                  sparsity, 0, frequency=1))
  model.compile("sgd", "mse")
  x = np.random.RandomState(0).rand(8, 28, 28, 1).astype("float32")
  model.fit(x, np.zeros((8, 10), "float32"), batch_size=8, epochs=1, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  return model


EXPORTS = {"dense": dict(sparse=False), "sparse": dict(sparse=True),
           "sparse_auto": dict(sparse=True, kernels="auto"),
           "sparse_kernels": dict(sparse=True, kernels="sparse")}


def measure(name, builder, sparsity, directory):
  model = _pruned(builder, sparsity)
  paths, kernels = {}, {}
  for kind, kwargs in EXPORTS.items():
    paths[kind] = os.path.join(directory, f"{name}_{sparsity}_{kind}")
    kernels[kind] = ksf.export_saved_model(model, paths[kind], verbose=False, **kwargs)["kernels"]
  loaded = {kind: tf.saved_model.load(p) for kind, p in paths.items()}
  out = {"sparsity": ksf.sparsity_report(model)["overall"],
         "auto_plans": kernels["sparse_auto"],
         "gzip_bytes": {k: export_lib.gzip_size(p) for k, p in paths.items()}, "batches": {}}
  for batch in (int(b) for b in FLAGS.batches):
    x = tf.constant(np.random.RandomState(1).rand(batch, 28, 28, 1).astype("float32"))
    out["batches"][batch] = {}
    for through in FLAGS.through:
      serve = {kind: (m.signatures["serving_default"] if through == "signature" else m.serve)
               for kind, m in loaded.items()}
      times = {kind: [] for kind in serve}
      for f in serve.values():
        f(x)  # warm-up
      for _ in range(FLAGS.calls):
        for kind, f in serve.items():
          start = time.perf_counter()
          f(x)
          times[kind].append(time.perf_counter() - start)
      med = {k: statistics.median(v) for k, v in times.items()}
      out["batches"][batch][through] = {
          "median_us": {k: 1e6 * v for k, v in med.items()},
          "ratio_over_dense": {k: med[k] / med["dense"] for k in med if k != "dense"}}
  if FLAGS.tflite:
    out["tflite"] = _tflite(model, directory, f"{name}_{sparsity}")
  return out


def _tflite(model, directory, name):
  """Sizes and batch-1 invoke latency: TF's sparsity optimisation vs plain TFLite."""
  stripped = ksf.strip_pruning(model)
  interpreters, sizes = {}, {}
  for kind in ("sparse", "dense"):
    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    if kind == "sparse":
      converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    flat = converter.convert()
    path = os.path.join(directory, f"{name}_{kind}.tflite")
    with open(path, "wb") as f:
      f.write(flat)
    sizes[kind] = {"bytes": len(flat), "gzip_bytes": export_lib.gzip_size(path)}
    interpreter = tf.lite.Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    interpreters[kind] = interpreter
  x = np.random.RandomState(1).rand(1, 28, 28, 1).astype("float32")
  times = {kind: [] for kind in interpreters}
  for _ in range(FLAGS.calls):
    for kind, interpreter in interpreters.items():
      interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
      start = time.perf_counter()
      interpreter.invoke()
      times[kind].append(time.perf_counter() - start)
  med = {k: statistics.median(v) for k, v in times.items()}
  return {"sizes": sizes, "median_us_batch_1": {k: 1e6 * v for k, v in med.items()},
          "ratio_sparse_over_dense": med["sparse"] / med["dense"]}


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  models = {name: _wide_mlp if name == "mlp_4096" else models_lib.get(name)
            for name in FLAGS.models}
  with tempfile.TemporaryDirectory() as directory:
    results = {f"{name} {sparsity}": measure(name, builder, float(sparsity), directory)
               for name, builder in models.items() for sparsity in FLAGS.sparsities}
  print(json.dumps(results, indent=1, sort_keys=True))
  print(format_table(results))
  if FLAGS.json:  # the (model, sparsity) entries measured replace theirs; others are kept
    results_io.update_json(FLAGS.json, results)


def format_table(results):
  """Median latency of each export over the dense SavedModel's, per batch."""
  lines = ["model sparsity        batch  through    sparse  sparse_auto  sparse_kernels  "
           "(x dense median)  dense us"]
  for name, result in results.items():
    for batch, paths in result["batches"].items():
      for through, row in paths.items():
        r = row["ratio_over_dense"]
        lines.append(f"{name:22s} {batch:>5}  {through:9s} {r['sparse']:6.2f}  "
                     f"{r['sparse_auto']:11.2f}  {r['sparse_kernels']:14.2f}  "
                     f"{row['median_us']['dense']:24.0f}")
  for name, result in results.items():
    if "tflite" in result:
      t = result["tflite"]
      lines.append(f"{name:22s} TFLite, batch 1: sparsity-optimised / plain x"
                   f"{t['ratio_sparse_over_dense']:.2f} latency, "
                   f"{t['sizes']['sparse']['bytes']:,} / {t['sizes']['dense']['bytes']:,} bytes")
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main)
