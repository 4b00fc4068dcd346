"""Hoyer-Square (keras_signflip.tf_keras.hoyer) against NumPy statements of DeepHoyer."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras import hoyer
from keras_signflip.tf_keras._framework import keras, tf
from tests import testing_utils as tu


def test_value_and_gradient_equal_the_formula():
  w = np.random.RandomState(0).randn(5, 4)
  l1, l2 = np.abs(w).sum(), (w ** 2).sum()
  var = tf.Variable(w.astype(np.float32))
  with tf.GradientTape() as tape:
    value = hoyer.HoyerSquare(0.5)(var)
  np.testing.assert_allclose(value.numpy(), 0.5 * l1 ** 2 / l2, rtol=1e-5)
  grad = 0.5 * (2 * l1 * np.sign(w) / l2 - 2 * l1 ** 2 * w / l2 ** 2)
  np.testing.assert_allclose(tape.gradient(value, var).numpy(), grad, rtol=1e-4, atol=1e-6)
  assert hoyer.hoyer_square(np.eye(3)[0]).numpy() == pytest.approx(1.0)   # one-hot: 1
  assert hoyer.hoyer_square(np.ones(7)).numpy() == pytest.approx(7.0)     # dense: n
  assert np.isfinite(hoyer.hoyer_square(np.zeros(4)).numpy())


def _trained(strength):
  x, y = tu.data(n=256)
  model = ksf.prune_sign_flip(tu.mlp(hidden=32), pruning_schedule=tu.never(), scope="global")
  if strength:
    assert hoyer.add_hoyer_square(model, strength) == 2
  tu.compile_sgd(model, lr=0.05).fit(x, y, batch_size=32, epochs=15, verbose=0,
                                     callbacks=[ksf.UpdatePruningStep()])
  return model


def test_the_penalty_sparsifies_and_threshold_prune_keeps_what_is_large():
  plain, penalised = _trained(0.0), _trained(3e-3)
  measure = lambda m: np.mean([hoyer.hoyer_square(s.weight).numpy() / np.prod(s.weight.shape)  # noqa: E731
                               for s in ksf.flip_states(m)])
  assert measure(penalised) < measure(plain)  # H_S / n falls as weights concentrate
  before = {s.weight.name: s.weight.numpy() for s in ksf.flip_states(penalised)}
  report = hoyer.threshold_prune(penalised, 0.05)
  for s in ksf.flip_states(penalised):
    keep = np.abs(before[s.weight.name]) >= 0.05
    np.testing.assert_array_equal(s.mask.numpy() > 0, keep)
    np.testing.assert_array_equal(s.weight.numpy(), np.where(keep, before[s.weight.name], 0))
    assert report[s.weight.name] == pytest.approx(1 - keep.mean())


def test_bad_arguments():
  with pytest.raises(ValueError, match="strength"):
    hoyer.HoyerSquare(-1.0)
  with pytest.raises(ValueError, match="threshold"):
    hoyer.threshold_prune(_trained(0.0), -0.1)
  with pytest.raises(ValueError, match="prune_sign_flip"):
    hoyer.threshold_prune(tu.mlp(), 0.1)
  assert keras.regularizers.get(
      keras.regularizers.serialize(hoyer.HoyerSquare(0.25))).strength == 0.25


def test_threshold_prune_zeroes_the_optimizer_slots_of_pruned_weights():
  """As on Keras 3 (one implementation, `keras_signflip.hoyer_square`): momentum left
  on a pruned weight would move it again if it ever grew back."""
  x, y = tu.data(n=64)
  model = ksf.prune_sign_flip(tu.mlp(hidden=8), pruning_schedule=tu.never(), scope="global")
  tu.compile_sgd(model, lr=0.05, momentum=0.9).fit(x, y, batch_size=16, epochs=2, verbose=0,
                                                   callbacks=[ksf.UpdatePruningStep()])
  from keras_signflip.tf_keras import dynamic  # pylint: disable=g-import-not-at-top
  before = {s.weight.name: [v.numpy() for v in dynamic.optimizer_slots(model.optimizer, s.weight)]
            for s in ksf.flip_states(model)}
  assert all(slots and np.any(slots[0]) for slots in before.values())  # momentum is there
  weights = np.concatenate([s.weight.numpy().ravel() for s in ksf.flip_states(model)])
  threshold = float(np.median(np.abs(weights)))
  kept = {s.weight.name: np.abs(s.weight.numpy()) >= threshold for s in ksf.flip_states(model)}
  hoyer.threshold_prune(model, threshold)
  for s in ksf.flip_states(model):
    keep = kept[s.weight.name]
    for slot, old in zip(dynamic.optimizer_slots(model.optimizer, s.weight),
                         before[s.weight.name]):
      np.testing.assert_array_equal(slot.numpy(), np.where(keep, old, 0))
    assert not np.any(s.flips.numpy()[~keep])
