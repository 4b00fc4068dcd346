"""Criteria: one conformance suite over every criterion, plus known answers."""
import numpy as np
import pytest

from keras_signflip import criteria
from keras_signflip.tf_keras._framework import tf

ALL = [criteria.Magnitude(), criteria.SignFlip(), criteria.Hybrid(),
       criteria.Hybrid(power=1.0), criteria.LargeFinalSameSign(),
       criteria.MagnitudeIncrease(), criteria.Movement(), criteria.Random(seed=7)]

W = np.array([[0.5, -2.0, 0.0], [1.5, -0.25, 3.0]], np.float32)
REF = np.array([[-0.5, -1.0, 1.0], [1.0, 0.25, -3.0]], np.float32)
FLIPS = np.array([[0, 3, 1], [2, 0, 5]], np.int32)

# Independent NumPy statements of the formulas in RESEARCH.md.
EXPECTED = {
    "Magnitude": np.abs(W),
    "SignFlip": -FLIPS.astype(np.float32),
    "Hybrid": np.abs(W) ** 2 / (FLIPS + 1),
    "LargeFinalSameSign": np.array([[0, 2.0, 0], [1.5, 0, 0]], np.float32),
    "MagnitudeIncrease": np.abs(W) - np.abs(REF),
    "Movement": np.abs(W - REF),
}


def _score(c, w=W, flips=FLIPS, ref=REF, key=11):
  return np.asarray(c.score(tf.constant(w), criteria.WeightState(
      tf.constant(flips), tf.constant(ref), key)))


@pytest.mark.parametrize("criterion", ALL, ids=repr)
def test_shape_dtype_finite(criterion):
  s = _score(criterion)
  assert s.shape == W.shape
  assert np.all(np.isfinite(s))


@pytest.mark.parametrize("criterion", ALL, ids=repr)
def test_config_round_trip(criterion):
  rebuilt = criteria.get(criteria.serialize(criterion))
  assert rebuilt == criterion and rebuilt is not criterion
  assert type(criterion).from_config(criterion.get_config()) == criterion


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_known_answers(name):
  c = getattr(criteria, name)()
  np.testing.assert_allclose(_score(c), EXPECTED[name], rtol=1e-6)


def test_hybrid_power():
  np.testing.assert_allclose(_score(criteria.Hybrid(power=3)),
                             np.abs(W) ** 3 / (FLIPS + 1), rtol=1e-6)


def test_random_is_fixed_per_seed_and_tensor_and_uniform():
  r = criteria.Random(seed=3)
  big = np.zeros((200, 100), np.float32)
  state = (np.zeros_like(big, np.int32), big)
  a, b = _score(r, big, *state, key=1), _score(r, big, *state, key=1)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, _score(r, big, *state, key=2))
  assert not np.array_equal(a, _score(criteria.Random(seed=4), big, *state, key=1))
  assert 0.0 <= a.min() and a.max() < 1.0
  hist, _ = np.histogram(a, bins=10, range=(0, 1))
  assert hist.min() > 0.08 * a.size and hist.max() < 0.12 * a.size


def test_random_same_on_numpy_namespace():
  r = criteria.Random(seed=5)
  np.testing.assert_allclose(_score(r), r.score(W, criteria.WeightState(FLIPS, REF, 11), np))


def test_registry_lookup_and_errors():
  assert criteria.get("hybrid") == criteria.Hybrid()
  assert set(criteria.CRITERIA) == {"magnitude", "sign_flip", "hybrid",
                                    "large_final_same_sign", "magnitude_increase",
                                    "movement", "recent_flips", "saliency",
                                    "movement_score", "random"}
  with pytest.raises(ValueError, match="magnitude.*sign_flip|Received: criterion='nope'"):
    criteria.get("nope")
  with pytest.raises(ValueError, match="power"):
    criteria.Hybrid(power=0)
  with pytest.raises(ValueError, match="seed"):
    criteria.Random(seed=-1)


def test_user_criterion_is_one_short_class_and_serialises():
  class Cubic(criteria.Criterion):
    def score(self, weight, state, xp=None):
      return abs(weight) ** 3
  assert criteria.get(criteria.serialize(Cubic())) == Cubic()


@pytest.mark.parametrize("criterion", ALL, ids=repr)
def test_same_scores_through_keras3_ops_and_numpy(criterion):
  keras3 = pytest.importorskip("keras")
  if not keras3.__version__.startswith("3"):
    pytest.skip("Keras 3 is not installed")
  state = criteria.WeightState(FLIPS, REF, 11)
  via_numpy = np.asarray(criterion.score(W, state, np))
  via_keras_ops = keras3.ops.convert_to_numpy(criterion.score(W, state, keras3.ops))
  np.testing.assert_allclose(via_keras_ops, via_numpy, rtol=1e-6)


def test_distinct_names_number_repeats_in_order():
  names = ["mha/kernel", "mha/kernel", "fc/kernel", "mha/kernel", "fc/kernel"]
  got = criteria.distinct_names(names)
  assert got == ["mha/kernel", "mha/kernel#1", "fc/kernel", "mha/kernel#2", "fc/kernel#1"]
  assert len({criteria.tensor_key(n) for n in got}) == len(got)  # Random tells them apart

