"""Structured pruning and shrink on the Keras 3 family, on this process's backend
(the cases and NumPy references of tests/units_cases.py, as tests/test_units.py)."""
import keras
import numpy as np
import pytest

from tests import units_cases


@pytest.mark.parametrize("criterion", sorted(units_cases.SCORES))
def test_unit_masks_equal_numpy_reference(criterion):
  got, want = units_cases.unit_masks(keras, criterion, 0.5)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, w)


def test_shrink_mlp_and_conv_net_with_batch_norm():
  rng = np.random.default_rng(1)
  units_cases.check_shrink(units_cases.mlp(keras), rng.normal(size=(5, 12)).astype(np.float32),
                           {"d1": 5, "d2": 4, "out": 3})
  units_cases.check_shrink(units_cases.conv_net(keras),
                           rng.normal(size=(4, 10, 10, 2)).astype(np.float32),
                           {"c1": 3, "c2": 3, "d1": 4, "out": 3})
