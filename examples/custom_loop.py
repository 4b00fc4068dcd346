r"""Pruning in your own training loop: `keras_signflip.Pruner`, on either family.

    python examples/custom_loop.py --keras=2                   # tf_keras, tf.GradientTape
    python examples/custom_loop.py --keras=3 --backend=jax     # stateless_call, jax.jit
    python examples/custom_loop.py --keras=3 --backend=torch   # loss.backward()
    python examples/custom_loop.py --keras=3 --backend=tensorflow

Trains a small MLP on synthetic clusters (CPU, seconds) to --sparsity with the
Hybrid criterion; prints one line per epoch. The four pruner calls (`begin`,
`before_step`, `epoch_end`, `end`) are what `fit` with `UpdatePruningStep`
runs, so this loop prunes exactly as `fit` would (tests/tf_keras/test_custom_loop.py).
"""
import os

from absl import app, flags

import numpy as np

flags.DEFINE_enum("keras", "2", ["2", "3"], "2: tf_keras with TF-MOT; 3: Keras 3.")
flags.DEFINE_enum("backend", os.environ.get("KERAS_BACKEND", "jax"),
                  ["jax", "torch", "tensorflow"], "Keras 3 backend (with --keras=3).")
flags.DEFINE_integer("epochs", 4, "Training epochs.")
flags.DEFINE_integer("examples", 1024, "Synthetic training examples.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("sparsity", 0.8, "Final sparsity, reached at the middle of training.")
flags.DEFINE_integer("seed", 0, "Seed of the data and the initial weights.")

FLAGS = flags.FLAGS
FEATURES, CLASSES = 16, 4


def make_data():
  """Gaussian clusters: class c centred at a random point, unit noise."""
  rng = np.random.RandomState(FLAGS.seed)
  centres = rng.randn(CLASSES, FEATURES) * 0.4
  y = rng.randint(0, CLASSES, FLAGS.examples).astype("int32")
  x = (centres[y] + rng.randn(FLAGS.examples, FEATURES)).astype("float32")
  return x, y


def batches(x, y):
  for i in range(0, len(x) - FLAGS.batch_size + 1, FLAGS.batch_size):
    yield x[i:i + FLAGS.batch_size], y[i:i + FLAGS.batch_size]


def pruned_mlp(keras, polynomial_decay):
  """A 16-64-64-4 MLP, wrapped: sparsity from 0 to --sparsity over half the steps,
  in five mask updates."""
  import keras_signflip as ksf  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(FLAGS.seed)
  base = keras.Sequential([keras.Input((FEATURES,)),
                           keras.layers.Dense(64, activation="relu"),
                           keras.layers.Dense(64, activation="relu"),
                           keras.layers.Dense(CLASSES)])
  steps = FLAGS.epochs * (FLAGS.examples // FLAGS.batch_size)
  end = max(steps // 2, 1)
  schedule = polynomial_decay(0.0, FLAGS.sparsity, begin_step=0, end_step=end,
                              frequency=max(end // 5, 1))  # five mask updates
  return ksf.prune_sign_flip(base, pruning_schedule=schedule, criterion="hybrid")


def report(model, epoch, losses):
  import keras_signflip as ksf  # pylint: disable=g-import-not-at-top
  masks, flips = ksf.masks(model).values(), ksf.flip_counts(model).values()
  pruned = sum(int((np.asarray(m) == 0).sum()) for m in masks)
  total = sum(np.asarray(m).size for m in masks)
  print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, sparsity {pruned / total:.3f}, "
        f"flips {sum(int(np.asarray(f).sum()) for f in flips)}", flush=True)


def train_tf_keras(x, y):
  """tf_keras (TF-MOT's family): a tf.function step with tf.GradientTape."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  import keras_signflip as ksf  # pylint: disable=g-import-not-at-top
  model = pruned_mlp(keras, tfmot.sparsity.keras.PolynomialDecay)
  optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function
  def train_step(xb, yb):
    with tf.GradientTape() as tape:
      loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  pruner = ksf.Pruner(model, optimizer)
  pruner.begin()
  for epoch in range(FLAGS.epochs):
    losses = []
    for xb, yb in batches(x, y):
      pruner.before_step()
      losses.append(float(train_step(xb, yb)))
    pruner.epoch_end()
    report(model, epoch, losses)
  pruner.end()
  return model


def train_jax(model, optimizer, loss_fn, x, y):
  """JAX: a jitted pure step; the pruner takes and returns its state."""
  import jax  # pylint: disable=g-import-not-at-top
  import keras_signflip as ksf  # pylint: disable=g-import-not-at-top

  def loss_and_updates(trainable, non_trainable, xb, yb):
    logits, non_trainable = model.stateless_call(trainable, non_trainable, xb, training=True)
    return loss_fn(yb, logits), non_trainable

  grad_fn = jax.value_and_grad(loss_and_updates, has_aux=True)

  @jax.jit
  def train_step(state, xb, yb):
    trainable, non_trainable, optimizer_values = state
    (loss, non_trainable), grads = grad_fn(trainable, non_trainable, xb, yb)
    trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable)
    return loss, (trainable, non_trainable, optimizer_values)

  pruner = ksf.Pruner(model, optimizer)
  pruner.begin()
  state = pruner.state()  # (trainable, non_trainable, optimizer) values
  for epoch in range(FLAGS.epochs):
    losses = []
    for xb, yb in batches(x, y):
      state = pruner.before_step(state)  # mask updates write and re-read the state
      loss, state = train_step(state, xb, yb)
      losses.append(float(loss))
    state = pruner.epoch_end(state)  # the model's variables now hold `state`
    report(model, epoch, losses)
  pruner.end(state)


def train_torch(model, optimizer, loss_fn, x, y):
  """PyTorch: model(x), loss.backward(), the Keras optimizer's apply."""
  import torch  # pylint: disable=g-import-not-at-top
  import keras_signflip as ksf  # pylint: disable=g-import-not-at-top
  pruner = ksf.Pruner(model, optimizer)
  pruner.begin()
  for epoch in range(FLAGS.epochs):
    losses = []
    for xb, yb in batches(x, y):
      pruner.before_step()
      loss = loss_fn(torch.as_tensor(yb), model(xb, training=True))
      model.zero_grad()
      loss.backward()
      grads = [v.value.grad for v in model.trainable_variables]
      with torch.no_grad():
        optimizer.apply(grads, model.trainable_variables)
      losses.append(loss.item())
    pruner.epoch_end()
    report(model, epoch, losses)
  pruner.end()


def train_tensorflow(model, optimizer, loss_fn, x, y):
  """Keras 3 on TensorFlow: a tf.function step with tf.GradientTape."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import keras_signflip as ksf  # pylint: disable=g-import-not-at-top

  @tf.function
  def train_step(xb, yb):
    with tf.GradientTape() as tape:
      loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    return loss

  pruner = ksf.Pruner(model, optimizer)
  pruner.begin()
  for epoch in range(FLAGS.epochs):
    losses = []
    for xb, yb in batches(x, y):
      pruner.before_step()
      losses.append(float(train_step(xb, yb)))
    pruner.epoch_end()
    report(model, epoch, losses)
  pruner.end()


def train_keras3(x, y):
  os.environ["KERAS_BACKEND"] = FLAGS.backend  # before Keras 3 is imported
  import keras  # pylint: disable=g-import-not-at-top
  from keras_signflip.keras3 import schedules  # pylint: disable=g-import-not-at-top
  if keras.backend.backend() != FLAGS.backend:
    raise app.UsageError(f"Keras 3 is loaded with the {keras.backend.backend()} backend; "
                         f"run in a fresh process for --backend={FLAGS.backend}.")
  model = pruned_mlp(keras, schedules.PolynomialDecay)
  optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
  optimizer.build(model.trainable_variables)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  loops = {"jax": train_jax, "torch": train_torch, "tensorflow": train_tensorflow}
  loops[FLAGS.backend](model, optimizer, loss_fn, x, y)
  return model


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  x, y = make_data()
  if FLAGS.keras == "2":
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    train_tf_keras(x, y)
  else:
    train_keras3(x, y)


if __name__ == "__main__":
  app.run(main)
