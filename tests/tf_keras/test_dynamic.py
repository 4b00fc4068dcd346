"""SET and RigL (keras_signflip.tf_keras.dynamic) against NumPy statements of one update."""
import math

import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras import dynamic
from keras_signflip.tf_keras._framework import keras, tf, tfmot
from tests import testing_utils as tu


def _sparse_linear(sparsity=0.6, seed=0):
  """Two bias-free linear layers, pruned at the first step (layer scope), one Adam step taken
  so that every weight, pruned ones included, has non-zero Adam moments."""
  keras.utils.set_random_seed(seed)
  base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, use_bias=False, name="a"),
                           keras.layers.Dense(3, use_bias=False, name="b")])
  model = ksf.prune_sign_flip(base, criterion="magnitude", pruning_schedule=(
      tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, end_step=1, frequency=1)))
  model.compile(keras.optimizers.Adam(0.01), "mse")
  rng = np.random.RandomState(seed)
  x, y = rng.randn(16, 6).astype(np.float32), rng.randn(16, 3).astype(np.float32)
  model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  return model, x, y


def _check_update(model, callback, expected_grow, fraction):
  states = ksf.flip_states(model)
  before = [(s.mask.numpy() > 0, s.weight.numpy()) for s in states]
  callback.set_model(model)
  callback.on_train_begin()
  callback.update(1)
  for s, (mask, w), grow_fn in zip(states, before, expected_grow):
    n = int(round(fraction * mask.sum()))
    active = np.flatnonzero(mask.ravel())
    drop = active[np.argsort(np.abs(w.ravel()[active]), kind="stable")[:n]]
    grow = grow_fn(s, mask, n)
    want = mask.ravel().copy()
    want[drop], want[grow] = False, True
    new = s.mask.numpy().ravel() > 0
    np.testing.assert_array_equal(new, want)
    assert new.sum() == mask.sum()  # the sparsity is kept exactly
    assert np.all(s.weight.numpy().ravel()[grow] == 0)  # grown weights start at 0
    for slot in dynamic.optimizer_slots(model.optimizer, s.weight):
      assert np.all(slot.numpy().ravel()[grow] == 0)
    others = np.setdiff1d(np.arange(new.size), grow)
    assert any(np.any(slot.numpy().ravel()[others] != 0)
               for slot in dynamic.optimizer_slots(model.optimizer, s.weight))
  return callback


def test_set_drops_the_smallest_and_regrows_at_random():
  model, _, _ = _sparse_linear()
  assert all(len(dynamic.optimizer_slots(model.optimizer, s.weight)) == 2
             for s in ksf.flip_states(model))  # Adam's m and v
  callback = ksf.DynamicSparsity("set", fraction=0.3, frequency=1, seed=4)
  rng = np.random.RandomState(4)
  grow = lambda s, mask, n: rng.choice(np.flatnonzero(~mask.ravel()), n, replace=False)  # noqa: E731
  _check_update(model, callback, [grow, grow], 0.3)


def test_rigl_regrows_the_largest_gradients_of_a_numpy_recount():
  model, x, y = _sparse_linear()
  w1, w2 = (s.weight.numpy().astype(np.float64) for s in ksf.flip_states(model))
  h = x @ w1
  d_out = 2.0 * (h @ w2 - y) / y.size
  grads = [x.T @ (d_out @ w2.T), h.T @ d_out]  # d mean squared error / d w, closed form

  def grow_for(g):
    def grow(s, mask, n):
      inactive = np.flatnonzero(~mask.ravel())
      return inactive[np.argsort(-np.abs(g.ravel()[inactive]), kind="stable")[:n]]
    return grow
  callback = ksf.DynamicSparsity("rigl", fraction=0.3, frequency=1, end_step=4,
                                     data=[(x, y)], loss="mse")
  fraction = callback.update_fraction(1)
  assert fraction == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
  _check_update(model, callback, [grow_for(g) for g in grads], fraction)


def test_rigl_during_fit_keeps_the_sparsity_and_counts_regrowth():
  x, y = tu.data()
  model = ksf.prune_sign_flip(tu.mlp(), criterion="magnitude", pruning_schedule=(
      tfmot.sparsity.keras.ConstantSparsity(0.8, begin_step=0, end_step=1, frequency=1)))
  model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
  rigl = ksf.DynamicSparsity("rigl", fraction=0.3, frequency=3, end_step=20, data=data,
                                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  history = model.fit(x, y, batch_size=16, epochs=3, verbose=0,
                      callbacks=[ksf.UpdatePruningStep(), rigl])
  assert rigl.updates == 6 and rigl.regrown > 0
  regrown = history.history["regrown"]  # totals so far, one per epoch
  assert regrown[-1] == rigl.regrown and regrown == sorted(regrown) and regrown[0] > 0
  for s in ksf.flip_states(model):
    mask = s.mask.numpy()
    assert int(mask.sum()) == tu.reference_kept(mask.size, 0.8)
    assert not np.any(s.weight.numpy()[mask == 0])


def test_bad_arguments():
  with pytest.raises(ValueError, match="method"):
    ksf.DynamicSparsity("grow")
  with pytest.raises(ValueError, match="fraction"):
    ksf.DynamicSparsity("set", fraction=1.0)
  with pytest.raises(ValueError, match="data"):
    ksf.DynamicSparsity("rigl")
