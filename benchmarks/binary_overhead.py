r"""Does examples/train.py add time per epoch beyond the model's own fit?

Times, in one process, epochs of `examples.train --criterion=none` (dense,
no output_dir) against a plain `model.fit` of the same model on the same
pipeline (same validation data). Reports medians and the ratio (goal <= 1.05).

    python -m benchmarks.binary_overhead [--epochs=5] [--train_examples=12000]
"""
import statistics
import time

from absl import app, flags

from keras_signflip import data as data_lib
from keras_signflip import models as models_lib
from keras_signflip.tf_keras._framework import keras

from examples import common
from examples import train as train_bin

FLAGS = flags.FLAGS


def main(argv):
  del argv
  FLAGS.criterion, FLAGS.verbose = "none", 0
  FLAGS.train_examples = FLAGS.train_examples or 12000
  FLAGS.test_examples = FLAGS.test_examples or 2000
  FLAGS.epochs = max(FLAGS.epochs, 3)
  data, _ = common.load_data()
  train_ds = data_lib.pipeline(data.train, FLAGS.batch_size, shuffle_seed=0,
                               take=FLAGS.train_examples)
  test_ds = data_lib.pipeline(data.test, FLAGS.batch_size, take=FLAGS.test_examples)
  keras.utils.set_random_seed(0)
  model = models_lib.get(FLAGS.model)(data.input_shape, data.num_classes)
  model.compile(keras.optimizers.Adam(FLAGS.learning_rate),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  plain = []
  for _ in range(FLAGS.epochs):
    start = time.time()
    model.fit(train_ds, epochs=1, validation_data=test_ds, verbose=0)
    plain.append(time.time() - start)
  train_bin.EpochLog.seconds = []
  train_bin.train()
  binary = train_bin.EpochLog.seconds
  # Drop each side's first epoch (tracing, cache filling).
  p, b = statistics.median(plain[1:]), statistics.median(binary[1:])
  print(f"plain model.fit: median {p:.3f}s/epoch {['%.3f' % t for t in plain]}")
  print(f"examples.train --criterion=none: median {b:.3f}s/epoch {['%.3f' % t for t in binary]}")
  print(f"ratio {b / p:.3f} (goal <= 1.05)")


if __name__ == "__main__":
  app.run(main)
