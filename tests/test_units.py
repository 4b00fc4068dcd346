"""Structured pruning (keras_signflip.units) and shrink on the tf_keras family.

The Keras 3 family runs the same cases (tests/units_cases.py) on every backend in
tests/keras3/test_keras3_units.py.
"""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip import array_namespace, criteria, units
from keras_signflip import shrink
from keras_signflip.tf_keras._framework import keras, tfmot
from tests import units_cases


def test_unit_scores_sum_live_weights():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(3, 2, 4)).astype(np.float32)
  live = rng.random((3, 2, 4)) > 0.3
  live[..., 2] = False
  got = units.unit_scores(scores, live, array_namespace.NUMPY)
  want = [scores[..., j][live[..., j]].sum() for j in range(4)]
  np.testing.assert_allclose(got[[0, 1, 3]], np.asarray(want)[[0, 1, 3]], rtol=1e-6)
  assert got[2] == -np.inf


def test_expand_broadcasts_over_unit_axis():
  keep = np.array([True, False, True])
  got = units.expand(keep, (2, 2, 3), array_namespace.NUMPY)
  assert got.shape == (2, 2, 3) and (got == keep).all()


@pytest.mark.parametrize("criterion", sorted(units_cases.SCORES))
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_unit_masks_equal_numpy_reference(criterion, sparsity):
  got, want = units_cases.unit_masks(keras, criterion, sparsity)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, w)


def test_units_config_round_trip():
  c = units.Units(criteria.Hybrid(power=3))
  again = criteria.get(criteria.serialize(c))
  assert again == c and again.base == criteria.Hybrid(power=3) and hash(again) == hash(c)
  assert units.structured("magnitude", "units") == units.Units("magnitude")
  assert units.structured("magnitude", None) == criteria.Magnitude()


def test_units_refuses_what_it_cannot_combine():
  with pytest.raises(ValueError, match="scope='layer'"):
    units.check(units.Units(), "global", None)
  with pytest.raises(ValueError, match="min_flips"):
    units.check(units.Units(), "layer", 2)
  with pytest.raises(ValueError, match="structure"):
    units.structured("hybrid", "filters")
  with pytest.raises(ValueError, match=r"Layer lstm \(LSTM\)"):
    units.check_layers([keras.layers.LSTM(3, name="lstm")], units.Units(), lambda l: [1])
  base = keras.Sequential([keras.layers.Embedding(5, 4, input_length=3, name="emb"),
                           keras.layers.Flatten(), keras.layers.Dense(2)])
  with pytest.raises(ValueError, match=r"Layer emb \(Embedding\)"):
    ksf.prune_sign_flip(base, structure="units", dense_layers=("last",))
  with pytest.raises(ValueError, match="scope='layer'"):
    ksf.prune_sign_flip(base, structure="units", scope="global")


def test_training_prunes_whole_units_on_schedule():
  base = keras.Sequential([keras.layers.Dense(10, activation="relu", input_shape=(6,)),
                           keras.layers.Dense(3)])
  schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.6, 0, 4, frequency=2)
  model = ksf.prune_sign_flip(base, schedule, criterion=units.Units("hybrid"),
                              dense_layers=("last",))
  model.compile("sgd", "mse")
  x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
  model.fit(x, x[:, :3], batch_size=8, epochs=1, callbacks=[ksf.UpdatePruningStep()], verbose=0)
  (mask,) = ksf.masks(model).values()
  columns = mask.sum(0)
  assert set(columns) <= {0, 6} and (columns == 0).sum() == 10 - round(10 * 0.4)
  small = shrink(model)
  assert small.layers[0].get_weights()[0].shape == (6, 4)
  np.testing.assert_allclose(small.predict(x, verbose=0),
                             ksf.strip_pruning(model).predict(x, verbose=0), atol=1e-5)


def test_shrink_mlp():
  model = units_cases.mlp(keras)
  x = np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32)
  units_cases.check_shrink(model, x, {"d1": 5, "d2": 4, "out": 3})


def test_shrink_conv_net_with_batch_norm():
  model = units_cases.conv_net(keras)
  x = np.random.default_rng(1).normal(size=(4, 10, 10, 2)).astype(np.float32)
  units_cases.check_shrink(model, x, {"c1": 3, "c2": 3, "d1": 4, "out": 3})


def test_shrink_keeps_constant_units_a_same_conv_reads():
  L = keras.layers
  model = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(4, 3, padding="same", name="a"),
                            L.Conv2D(2, 3, padding="same", name="b")])
  kernel, bias = model.layers[0].get_weights()
  kernel[..., :3] = 0
  bias[:] = [0.0, 0.5, -1.0, 2.0]  # unit 0: constant 0 (removed); 1, 2: nonzero (kept)
  model.layers[0].set_weights([kernel, bias])
  x = np.random.default_rng(2).normal(size=(2, 6, 6, 1)).astype(np.float32)
  units_cases.check_shrink(model, x, {"a": 3, "b": 2})


def test_shrink_refuses_layers_outside_the_chain():
  L = keras.layers
  inputs = keras.Input((4,))
  x = L.Dense(3, name="d")(inputs)
  model = keras.Model(inputs, L.Add(name="skip")([x, L.Dense(3)(inputs)]))
  with pytest.raises(ValueError, match=r"Layer skip \(Add\)"):
    shrink(model)
  norm = keras.Sequential([keras.Input((4,)), L.Dense(3), L.LayerNormalization(name="ln")])
  with pytest.raises(ValueError, match=r"Layer ln \(LayerNormalization\)"):
    shrink(norm)


def test_wrapped_model_with_units_saves_and_loads(tmp_path):
  base = keras.Sequential([keras.layers.Dense(4, input_shape=(6,)), keras.layers.Dense(2)])
  model = ksf.prune_sign_flip(base, criterion=criteria.Hybrid(3), structure="units",
                              dense_layers=("last",))
  model.save(tmp_path / "m.h5")
  with ksf.tf_keras.prune_scope():
    loaded = keras.models.load_model(tmp_path / "m.h5")
  assert [w.criterion for w in ksf.collect_wrappers(loaded)] == [units.Units(criteria.Hybrid(3))]


def test_shrink_keeps_units_of_a_hidden_softmax_and_refuses_unbuilt_models():
  L = keras.layers
  model = keras.Sequential([keras.Input((5,)), L.Dense(4, activation="softmax", name="s"),
                            L.Dense(2, name="out")])
  kernel, bias = model.layers[0].get_weights()
  kernel[:, :2] = 0  # dead columns, but softmax(.)[j] depends on the live units
  model.layers[0].set_weights([kernel, bias])
  x = np.random.default_rng(3).normal(size=(3, 5)).astype(np.float32)
  units_cases.check_shrink(model, x, {"s": 4, "out": 2})
  with pytest.raises(ValueError, match="built model"):
    shrink(keras.Sequential([L.Dense(2)]))
