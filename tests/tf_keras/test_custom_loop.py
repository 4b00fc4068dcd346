"""`keras_signflip.Pruner` in a tf.GradientTape loop gives `fit`'s masks, flips and weights.

The Keras 3 loops (JAX stateless, PyTorch, TensorFlow) are in
tests/keras3/test_keras3_custom_loop.py; examples/custom_loop.py's test in
tests/examples/test_custom_loop_binary.py.
"""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tf, tfmot
from tests import testing_utils as tu

BATCH, EPOCHS = 16, 2


def _model(scope):
  schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=2, end_step=10,
                                                  frequency=2)
  return ksf.prune_sign_flip(tu.mlp(), pruning_schedule=schedule, criterion="hybrid",
                             scope=scope)


def _optimizer():
  return keras.optimizers.SGD(0.5, momentum=0.9)  # momentum: slots must stay masked


def _loss():
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _state(model):
  """Masks, flips and every weight, in model order (the two models' layer names differ)."""
  return {"masks": list(ksf.masks(model).values()),
          "flips": list(ksf.flip_counts(model).values()),
          "weights": [w.numpy() for w in model.weights]}


def _fit(scope, x, y):
  model = _model(scope)
  model.compile(_optimizer(), _loss())
  model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  return _state(model)


def _custom_loop(scope, x, y, calls):
  """EPOCHS epochs in `calls` runs of begin() ... end() (calls > 1: a resumed loop)."""
  model, optimizer, loss_fn = _model(scope), _optimizer(), _loss()

  @tf.function
  def train_step(xb, yb):
    with tf.GradientTape() as tape:
      loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

  for _ in range(calls):
    pruner = ksf.Pruner(model, optimizer)
    pruner.begin()
    for _ in range(EPOCHS // calls):
      for i in range(0, len(x), BATCH):
        pruner.before_step()
        train_step(x[i:i + BATCH], y[i:i + BATCH])
      pruner.epoch_end()
    pruner.end()
  return _state(model)


@pytest.mark.parametrize("scope,calls", [("layer", 1), ("global", 1), ("global", EPOCHS)])
def test_gradient_tape_loop_equals_fit(scope, calls):
  x, y = tu.data(128)
  want, got = _fit(scope, x, y), _custom_loop(scope, x, y, calls)
  assert sum(int((m == 0).sum()) for m in want["masks"]) > 0  # the schedule pruned
  assert sum(int(f.sum()) for f in want["flips"]) > 0  # and weights flipped
  for key in ("masks", "flips"):
    assert len(got[key]) == len(want[key]) == 2
    for i, (g, w) in enumerate(zip(got[key], want[key])):
      np.testing.assert_array_equal(g, w, err_msg=f"{key} {i}")
  assert len(got["weights"]) == len(want["weights"])
  for i, (g, w) in enumerate(zip(got["weights"], want["weights"])):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"weight {i}")


def test_pruner_refuses_an_optimizer_of_another_kind():
  model = _model("layer")
  with pytest.raises(ValueError, match="Expected a Keras optimizer"):
    ksf.Pruner(model, object())


def test_training_without_begin_names_the_pruner():
  model = _model("layer")
  x, _ = tu.data(16)
  with pytest.raises(ValueError, match=r"keras_signflip.Pruner\(model, optimizer\).begin\(\)"):
    model(x, training=True)
