"""GeometricSparsity: the sparsity sequence, pruning steps, validation, config."""
import numpy as np
import pytest

from keras_signflip.tf_keras import schedules
from keras_signflip.tf_keras._framework import keras


def _call(s, step):
  should, sparsity = s(step)
  return bool(should), float(sparsity)


def test_halves_remaining_weights_each_event():
  s = schedules.GeometricSparsity(0.5, frequency=10)
  got = [_call(s, step) for step in (1, 9, 10, 11, 20, 30)]
  assert [g[0] for g in got] == [False, False, True, False, True, True]
  np.testing.assert_allclose([g[1] for g in got], [0, 0, 0.5, 0.5, 0.75, 0.875], rtol=1e-6)


def test_begin_and_end_step():
  s = schedules.GeometricSparsity(0.2, frequency=5, begin_step=3, end_step=13)
  assert _call(s, 2) == (False, 0.0)
  assert _call(s, 3)[0] and np.isclose(_call(s, 3)[1], 0.2)
  assert _call(s, 13)[0] and np.isclose(_call(s, 13)[1], 1 - 0.8 ** 3)
  assert not _call(s, 18)[0] and np.isclose(_call(s, 18)[1], 1 - 0.8 ** 3)


def test_capped_by_max_sparsity():
  s = schedules.GeometricSparsity(0.5, frequency=1, max_sparsity=0.9)
  assert np.isclose(_call(s, 50)[1], 0.9)


@pytest.mark.parametrize("kwargs", [dict(fraction=0.0, frequency=1),
                                    dict(fraction=1.0, frequency=1),
                                    dict(fraction=0.5, frequency=0),
                                    dict(fraction=0.5, frequency=1, max_sparsity=1.0)])
def test_bad_arguments_raise(kwargs):
  with pytest.raises(ValueError):
    schedules.GeometricSparsity(**kwargs)


def test_config_round_trip_both_shapes():
  s = schedules.GeometricSparsity(0.3, 7, begin_step=2, end_step=40, max_sparsity=0.95)
  for rebuilt in (schedules.get(s.get_config()),
                  schedules.GeometricSparsity.from_config(s.get_config()["config"]),
                  keras.utils.deserialize_keras_object(
                      keras.utils.serialize_keras_object(s))):
    assert rebuilt.get_config() == s.get_config()
