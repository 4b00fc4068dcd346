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


def test_structure_units_option_and_its_refusals():
  import keras_signflip as ksf  # pylint: disable=import-outside-toplevel
  from keras_signflip.units import Units  # pylint: disable=import-outside-toplevel
  L = keras.layers
  base = keras.Sequential([keras.Input((6,)), L.Dense(4, name="d"), L.Dense(2, name="out")])
  model = ksf.prune_sign_flip(base, criterion="magnitude", structure="units",
                              dense_layers=("last",))
  assert [w.criterion for w in ksf.collect_wrappers(model)] == [Units("magnitude")]
  emb = keras.Sequential([keras.Input((3,)), L.Embedding(5, 4, name="emb"), L.Flatten(),
                          L.Dense(2)])
  with pytest.raises(ValueError, match=r"Layer emb \(Embedding\)"):
    ksf.prune_sign_flip(emb, structure="units", dense_layers=("last",))
  with pytest.raises(ValueError, match="scope='layer'"):
    ksf.prune_sign_flip(base, structure="units", scope="global")
