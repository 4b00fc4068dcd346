"""Gradient criteria, SNIP, SET and RigL on the Keras 3 path (this process's backend).

References: gradients recovered from plain SGD steps (g = (w_t - w_t+1) / lr),
closed-form gradients of a linear model, NumPy statements of the rules.
"""
import math

import numpy as np
import pytest

import keras
from keras import ops

import keras_signflip as ksf
from keras_signflip import keras3 as k3

LR = 0.1


def _np(x):
  return np.asarray(ops.convert_to_numpy(x))


def _mlp(criterion, schedule, optimizer):
  keras.utils.set_random_seed(1)
  base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh", name="h1"),
                           keras.layers.Dense(3, name="out")])
  model = ksf.prune_sign_flip(base, pruning_schedule=schedule, criterion=criterion,
                              scope="global")
  model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def _data(n=96):
  rng = np.random.RandomState(0)
  return rng.randn(n, 8).astype("float32"), rng.randint(0, 3, n)


class _Weights(keras.callbacks.Callback):
  """Each step's weights and masks before it (after the mask update) and after it."""

  def __init__(self):
    super().__init__()
    self.before, self.after, self.masks = [], [], []

  def _read(self, attr):
    return [_np(getattr(s, attr)).astype(np.float64) for s in ksf.flip_states(self.model)]

  def on_train_batch_begin(self, batch, logs=None):
    self.before.append(self._read("weight"))
    self.masks.append(self._read("mask"))

  def on_train_batch_end(self, batch, logs=None):
    self.after.append(self._read("weight"))


@pytest.mark.parametrize("name", ["saliency", "movement_score"])
def test_recorded_sums_equal_a_recount_from_sgd_steps(name):
  x, y = _data()
  update = 3  # the step whose batch begins with the mask update
  schedule = k3.schedules.ConstantSparsity(0.5, begin_step=update, end_step=update, frequency=1)
  model = _mlp(name, schedule, ksf.record_gradients(keras.optimizers.SGD(LR)))
  weights = _Weights()
  model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), weights])
  sums = [np.zeros_like(w) for w in weights.before[0]]
  for t, (before, after, masks) in enumerate(zip(weights.before, weights.after, weights.masks), 1):
    if t == update:
      at_update = [s.copy() for s in sums]
      sums = [np.zeros_like(s) if name == "saliency" else s * m for s, m in zip(sums, masks)]
    sums = [s + w * (w - w1) / LR for s, w, w1 in zip(sums, before, after)]  # w_t * g_t
  states = ksf.flip_states(model)
  for s, want in zip(states, sums):
    np.testing.assert_allclose(_np(k3.optimizers.grad_product(s.weight)), want, atol=2e-5)
  scores = np.concatenate([(np.abs(a) if name == "saliency" else -a).ravel() for a in at_update])
  kept = np.concatenate([_np(s.mask).ravel() > 0 for s in states])
  assert kept.sum() == round(scores.size * 0.5)
  assert scores[kept].min() >= scores[~kept].max() - 1e-6


def test_a_recording_optimizer_saves_and_loads_as_one(tmp_path):
  x, y = _data()
  model = _mlp("saliency", k3.schedules.ConstantSparsity(0.5, begin_step=2, frequency=2),
               ksf.record_gradients(keras.optimizers.Adam(0.01)))
  model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  model.save(tmp_path / "m.keras")
  loaded = keras.models.load_model(tmp_path / "m.keras")
  assert k3.optimizers.records_gradients(loaded.optimizer)
  assert isinstance(loaded.optimizer, keras.optimizers.Adam)
  assert float(_np(loaded.optimizer.learning_rate)) == pytest.approx(0.01, rel=1e-6)
  for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
    np.testing.assert_array_equal(_np(a), _np(b), err_msg=a.path)
  for s in ksf.flip_states(loaded):
    assert np.any(_np(k3.optimizers.grad_product(s.weight)))


def test_a_gradient_criterion_without_a_recording_optimizer_is_an_error():
  x, y = _data()
  model = _mlp("saliency", k3.schedules.ConstantSparsity(0.5, begin_step=2),
               keras.optimizers.SGD(LR))
  before = [_np(w) for w in model.weights]
  with pytest.raises(ValueError, match="record_gradients"):
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  for w, b in zip(model.weights, before):
    np.testing.assert_array_equal(_np(w), b)
  with pytest.raises(ValueError, match="Keras 3 optimizer"):
    k3.record_gradients("sgd")


def _linear(sparsity=None, seed=0):
  """x @ w1 @ w2, no biases; pruned (layer scope) by one Adam step when `sparsity` is given."""
  keras.utils.set_random_seed(seed)
  base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, use_bias=False, name="a"),
                           keras.layers.Dense(3, use_bias=False, name="b")])
  schedule = (k3.schedules.ConstantSparsity(0.5, begin_step=2**30) if sparsity is None else
              k3.schedules.ConstantSparsity(sparsity, begin_step=0, end_step=1, frequency=1))
  model = ksf.prune_sign_flip(base, pruning_schedule=schedule, criterion="magnitude",
                              scope="global" if sparsity is None else "layer")
  model.compile(keras.optimizers.Adam(0.01), "mse")
  rng = np.random.RandomState(seed)
  x, y = rng.randn(16, 6).astype("float32"), rng.randn(16, 3).astype("float32")
  if sparsity is not None:
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  return model, x, y


def _mse_gradients(w1, w2, x, y):
  """d mean((x w1 w2 - y)^2) / d (w1, w2), closed form."""
  h = x @ w1
  d_out = 2.0 * (h @ w2 - y) / y.size
  return x.T @ (d_out @ w2.T), h.T @ d_out


def _top_k_keep(scores, mags, k):
  order = np.lexsort((np.arange(scores.size), -mags, -scores))
  keep = np.zeros(scores.size, bool)
  keep[order[:k]] = True
  return keep


def test_snip_masks_equal_numpy_snip():
  rng = np.random.RandomState(0)
  batches = [(rng.randn(8, 6).astype("float32"), rng.randn(8, 3).astype("float32"))
             for _ in range(3)]
  model, _, _ = _linear()
  w1, w2 = (_np(s.weight).astype(np.float64) for s in ksf.flip_states(model))
  g1, g2 = np.zeros_like(w1), np.zeros_like(w2)
  for x, y in batches[:2]:
    a, b = _mse_gradients(w1, w2, x, y)
    g1, g2 = g1 + a, g2 + b
  scores = np.concatenate([np.abs(w1 * g1).ravel(), np.abs(w2 * g2).ravel()])
  mags = np.concatenate([np.abs(w1).ravel(), np.abs(w2).ravel()])
  keep = _top_k_keep(scores, mags, round(45 * 0.3))
  report = ksf.snip(model, batches, 0.7, loss="mse", batches=2)
  want = [keep[:w1.size].reshape(w1.shape), keep[w1.size:].reshape(w2.shape)]
  for s, m, w in zip(ksf.flip_states(model), want, (w1, w2)):
    np.testing.assert_array_equal(_np(s.mask) > 0, m)
    np.testing.assert_array_equal(_np(s.weight), (w * m).astype(np.float32))
  assert set(report) == {s.weight.path for s in ksf.flip_states(model)}
  with pytest.raises(ValueError, match="batches"):
    ksf.snip(model, batches[:1], 0.5, loss="mse", batches=2)


def _check_drop_and_grow(model, callback, grow_for, fraction):
  states = ksf.flip_states(model)
  before = [(_np(s.mask) > 0, _np(s.weight)) for s in states]
  callback.set_model(model)
  callback.on_train_begin()
  callback.update(1)
  for i, (s, (mask, w)) in enumerate(zip(states, before)):
    n = int(round(fraction * mask.sum()))
    active = np.flatnonzero(mask.ravel())
    drop = active[np.argsort(np.abs(w.ravel()[active]), kind="stable")[:n]]
    grow = grow_for(i, mask, n)
    want = mask.ravel().copy()
    want[drop], want[grow] = False, True
    new = _np(s.mask).ravel() > 0
    np.testing.assert_array_equal(new, want)
    assert new.sum() == mask.sum()  # the sparsity is kept exactly
    assert np.all(_np(s.weight).ravel()[grow] == 0)  # grown weights start at 0
    assert np.all(_np(s.weight).ravel()[~new] == 0)
    slots = k3.mask_update.optimizer_slots(model.optimizer, s.weight)
    assert len(slots) == 2  # Adam's moments
    for slot in slots:
      assert np.all(_np(slot).ravel()[grow] == 0) and np.all(_np(slot).ravel()[~new] == 0)
    assert any(np.any(_np(slot).ravel()[new] != 0) for slot in slots)


def test_set_drops_the_smallest_and_regrows_at_random():
  model, _, _ = _linear(0.6)
  rng = np.random.RandomState(4)
  grow = lambda i, mask, n: rng.choice(np.flatnonzero(~mask.ravel()), n, replace=False)  # noqa: E731
  _check_drop_and_grow(model, ksf.DynamicSparsity("set", fraction=0.3, frequency=1, seed=4),
                       grow, 0.3)


def test_rigl_regrows_the_largest_closed_form_gradients():
  model, x, y = _linear(0.6)
  w1, w2 = (_np(s.weight).astype(np.float64) for s in ksf.flip_states(model))
  grads = _mse_gradients(w1, w2, x, y)

  def grow(i, mask, n):
    inactive = np.flatnonzero(~mask.ravel())
    return inactive[np.argsort(-np.abs(grads[i].ravel()[inactive]), kind="stable")[:n]]
  callback = ksf.DynamicSparsity("rigl", fraction=0.3, frequency=1, end_step=4,
                                 data=[(x, y)], loss="mse")
  fraction = callback.update_fraction(1)
  assert fraction == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
  _check_drop_and_grow(model, callback, grow, fraction)


def test_rigl_during_fit_keeps_the_sparsity():
  x, y = _data()
  model = _mlp("magnitude", k3.schedules.ConstantSparsity(0.8, begin_step=0, end_step=1,
                                                          frequency=1),
               keras.optimizers.SGD(LR, momentum=0.9))
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  rigl = ksf.DynamicSparsity("rigl", fraction=0.3, frequency=3, end_step=12,
                             data=[(x[:32], y[:32])], loss=loss)
  history = model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                      callbacks=[ksf.UpdatePruningStep(), rigl])
  assert rigl.updates == 4 and rigl.regrown > 0
  assert history.history["regrown"][-1] == rigl.regrown
  total = sum(int(np.prod(s.weight.shape)) for s in ksf.flip_states(model))
  kept = sum(int(_np(s.mask).sum()) for s in ksf.flip_states(model))
  assert kept == round(total * 0.2)
  for s in ksf.flip_states(model):
    assert not np.any(_np(s.weight)[_np(s.mask) == 0])
