"""`keras_signflip.Pruner` in this backend's own training loop gives `fit`'s state.

JAX: a jitted step over `model.stateless_call` and `optimizer.stateless_apply`,
the state passed through the pruner's calls. PyTorch: `model(x)`,
`loss.backward()`, `optimizer.apply`. TensorFlow: a `tf.GradientTape`. Each
against `fit` with `UpdatePruningStep` on the same model, data and schedule:
masks and flip counts equal, weights within float rounding.
"""
import numpy as np
import pytest

import keras
from keras import ops

import keras_signflip as ksf
from keras_signflip import keras3 as k3

BATCH, EPOCHS = 16, 2
BACKEND = keras.backend.backend()


def _np(x):
  return np.asarray(ops.convert_to_numpy(x))


def _data(n=128):
  rng = np.random.RandomState(0)
  return rng.randn(n, 8).astype("float32"), rng.randint(0, 3, n).astype("int32")


def _model(scope):
  keras.utils.set_random_seed(3)
  base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                           keras.layers.Dense(3)])
  schedule = k3.schedules.PolynomialDecay(0.0, 0.5, begin_step=2, end_step=10, frequency=2)
  return ksf.prune_sign_flip(base, pruning_schedule=schedule, criterion="hybrid", scope=scope)


def _optimizer():
  return keras.optimizers.SGD(0.5, momentum=0.9)  # momentum: slots must stay masked


def _loss():
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _state(model):
  """Masks, flips and every weight, in model order."""
  return {"masks": [_np(s.mask) for s in ksf.flip_states(model)],
          "flips": [_np(s.flips) for s in ksf.flip_states(model)],
          "weights": [_np(w) for w in model.weights]}


def _fit(scope, x, y):
  model = _model(scope)
  model.compile(_optimizer(), _loss())
  model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  return _state(model)


def _batches(x, y):
  return [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]


def _jax_loop(model, optimizer, loss_fn, x, y, epochs):
  import jax  # pylint: disable=g-import-not-at-top

  def loss_and_updates(trainable, non_trainable, xb, yb):
    logits, non_trainable = model.stateless_call(trainable, non_trainable, xb, training=True)
    return loss_fn(yb, logits), non_trainable

  grad_fn = jax.value_and_grad(loss_and_updates, has_aux=True)

  @jax.jit
  def train_step(state, xb, yb):
    trainable, non_trainable, optimizer_values = state
    (_, non_trainable), grads = grad_fn(trainable, non_trainable, xb, yb)
    trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable)
    return trainable, non_trainable, optimizer_values

  pruner = ksf.Pruner(model, optimizer)
  pruner.begin()
  state = pruner.state()
  for _ in range(epochs):
    for xb, yb in _batches(x, y):
      state = pruner.before_step(state)
      state = train_step(state, xb, yb)
    state = pruner.epoch_end(state)
  pruner.end(state)  # the model holds the final state


def _torch_loop(model, optimizer, loss_fn, x, y, epochs):
  import torch  # pylint: disable=g-import-not-at-top
  if not optimizer.built:
    optimizer.build(model.trainable_variables)
  pruner = ksf.Pruner(model, optimizer)
  pruner.begin()
  for _ in range(epochs):
    for xb, yb in _batches(x, y):
      pruner.before_step()
      loss = loss_fn(yb, model(xb, training=True))
      model.zero_grad()
      loss.backward()
      grads = [v.value.grad for v in model.trainable_variables]
      with torch.no_grad():
        optimizer.apply(grads, model.trainable_variables)
    pruner.epoch_end()
  pruner.end()


def _tensorflow_loop(model, optimizer, loss_fn, x, y, epochs):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.function
  def train_step(xb, yb):
    with tf.GradientTape() as tape:
      loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)

  if not optimizer.built:
    optimizer.build(model.trainable_variables)
  pruner = ksf.Pruner(model, optimizer)
  pruner.begin()
  for _ in range(epochs):
    for xb, yb in _batches(x, y):
      pruner.before_step()
      train_step(xb, yb)
    pruner.epoch_end()
  pruner.end()


LOOPS = {"jax": _jax_loop, "torch": _torch_loop, "tensorflow": _tensorflow_loop}


@pytest.mark.parametrize("scope,calls", [("layer", 1), ("global", 1), ("global", EPOCHS)])
def test_custom_loop_equals_fit(scope, calls):
  """calls=EPOCHS: one epoch per begin() ... end(), as a resumed loop runs."""
  x, y = _data()
  want = _fit(scope, x, y)
  model, optimizer, loss_fn = _model(scope), _optimizer(), _loss()
  for _ in range(calls):
    LOOPS[BACKEND](model, optimizer, loss_fn, x, y, EPOCHS // calls)
  got = _state(model)
  assert sum(int((m == 0).sum()) for m in want["masks"]) > 0  # the schedule pruned
  assert sum(int(f.sum()) for f in want["flips"]) > 0  # and weights flipped
  for key in ("masks", "flips"):
    assert len(got[key]) == len(want[key]) == 2
    for i, (g, w) in enumerate(zip(got[key], want[key])):
      np.testing.assert_array_equal(g, w, err_msg=f"{key} {i}")
  assert len(got["weights"]) == len(want["weights"])
  for i, (g, w) in enumerate(zip(got["weights"], want["weights"])):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"weight {i}")


def test_state_of_the_wrong_length_is_refused_before_any_change():
  model = _model("layer")
  pruner = ksf.Pruner(model, _optimizer())
  pruner.begin()
  trainable, non_trainable, optimizer_values = pruner.state()
  before = _state(model)
  with pytest.raises(ValueError, match="state's trainable values: expected 4"):
    pruner.epoch_end((trainable[:1], non_trainable, optimizer_values))
  for key in before:
    for g, w in zip(_state(model)[key], before[key]):
      np.testing.assert_array_equal(g, w)
  pruner.end()


def test_training_call_outside_begin_and_end_raises():
  model = _model("layer")
  x, _ = _data(16)
  pruner = ksf.Pruner(model, _optimizer())
  with pytest.raises(ValueError, match=r"Pruner\(model, optimizer\).begin\(\)"):
    model(x, training=True)
  pruner.begin()
  model(x, training=True)
  pruner.end()
  with pytest.raises(ValueError, match="UpdatePruningStep"):
    model(x, training=True)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's stateless loops only")
def test_jax_loop_that_forgets_its_state_is_told_before_a_mask_update():
  import jax  # pylint: disable=g-import-not-at-top
  model, optimizer, loss_fn = _model("layer"), _optimizer(), _loss()
  x, y = _data(BATCH)

  @jax.jit
  def train_step(state, xb, yb):
    trainable, non_trainable, optimizer_values = state
    def loss(t):
      logits, _ = model.stateless_call(t, non_trainable, xb, training=True)
      return loss_fn(yb, logits)
    trainable, optimizer_values = optimizer.stateless_apply(
        optimizer_values, jax.grad(loss)(trainable), trainable)
    return trainable, non_trainable, optimizer_values

  pruner = ksf.Pruner(model, optimizer)
  pruner.begin()
  state = pruner.state()
  masks = [_np(s.mask) for s in ksf.flip_states(model)]
  pruner.before_step()  # step 1: no mask update, nothing read
  state = train_step(state, x, y)
  with pytest.raises(ValueError, match="Pass them: state = pruner.before_step"):
    pruner.before_step()  # step 2: a mask update, on variables one step old
  for s, m in zip(ksf.flip_states(model), masks):
    np.testing.assert_array_equal(_np(s.mask), m)
