"""SNIP (keras_signflip.tf_keras.snip) against a NumPy SNIP with closed-form gradients."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tf, tfmot
from tests import testing_utils as tu


def _linear(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, use_bias=False, name="a"),
                           keras.layers.Dense(3, use_bias=False, name="b")])


def _numpy_snip(w1, w2, batches, sparsity):
  """|w * g| with g = sum over batches of d mean((x w1 w2 - y)^2) / dw, then a global
  top-k (ties: larger |w|, then position)."""
  g1, g2 = np.zeros_like(w1), np.zeros_like(w2)
  for x, y in batches:
    h = x @ w1
    d_out = 2.0 * (h @ w2 - y) / y.size        # d mean / d output
    g2 += h.T @ d_out
    g1 += x.T @ (d_out @ w2.T)
  scores = np.concatenate([np.abs(w1 * g1).ravel(), np.abs(w2 * g2).ravel()])
  mags = np.concatenate([np.abs(w1).ravel(), np.abs(w2).ravel()])
  k = int(max(round(scores.size * (1 - sparsity)), 1))
  order = np.lexsort((np.arange(scores.size), -mags, -scores))
  keep = np.zeros(scores.size, bool)
  keep[order[:k]] = True
  return keep[:w1.size].reshape(w1.shape), keep[w1.size:].reshape(w2.shape)


def test_snip_masks_equal_numpy_snip_on_the_same_batches():
  rng = np.random.RandomState(0)
  batches = [(rng.randn(8, 6).astype(np.float32), rng.randn(8, 3).astype(np.float32))
             for _ in range(3)]
  model = ksf.prune_sign_flip(_linear(), pruning_schedule=tu.never(), scope="global")
  w1, w2 = (s.weight.numpy().astype(np.float64) for s in ksf.flip_states(model))
  report = ksf.snip(model, batches, 0.7, loss="mse", batches=2)
  want = _numpy_snip(w1, w2, batches[:2], 0.7)
  for s, m, w in zip(ksf.flip_states(model), want, (w1, w2)):
    np.testing.assert_array_equal(s.mask.numpy() > 0, m)
    np.testing.assert_array_equal(s.weight.numpy(), (w * m).astype(np.float32))  # pruned zeroed
  assert sum(int(s.mask.numpy().sum()) for s in ksf.flip_states(model)) == round(45 * 0.3)
  assert set(report) == {s.weight.name for s in ksf.flip_states(model)}


def test_snip_then_static_sparse_training_keeps_the_masks():
  x, y = tu.data()
  model = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
      0.8, 0), criterion="magnitude", scope="global")
  data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
  ksf.snip(model, data, 0.8, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  before = [s.mask.numpy() for s in ksf.flip_states(model)]
  tu.compile_sgd(model).fit(x, y, batch_size=32, epochs=1, verbose=0,
                            callbacks=[ksf.UpdatePruningStep()])
  for s, m in zip(ksf.flip_states(model), before):
    np.testing.assert_array_equal(s.mask.numpy(), m)
    assert not np.any(s.weight.numpy()[m == 0])


def test_snip_bad_input_changes_nothing():
  model = ksf.prune_sign_flip(_linear(), pruning_schedule=tu.never())
  before = [s.weight.numpy() for s in ksf.flip_states(model)]
  batch = [(np.zeros((2, 6), np.float32), np.zeros((2, 3), np.float32))]
  with pytest.raises(ValueError, match="sparsity"):
    ksf.snip(model, batch, 1.0, loss="mse")
  with pytest.raises(ValueError, match="asked for 2"):
    ksf.snip(model, batch, 0.5, loss="mse", batches=2)
  with pytest.raises(ValueError, match="prune_sign_flip"):
    ksf.snip(_linear(), batch, 0.5, loss="mse")
  for s, w in zip(ksf.flip_states(model), before):
    np.testing.assert_array_equal(s.weight.numpy(), w)
    assert s.mask.numpy().all()
