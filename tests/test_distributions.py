"""Per-layer sparsity distributions (keras_signflip.distributions) against NumPy
statements of Evci et al.'s ERK, and wired into prune_sign_flip's layer scope."""
import math

import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip import distributions
from keras_signflip.tf_keras._framework import keras, tfmot
from tests import testing_utils as tu

CONV_NET = {"c1": (5, 5, 1, 6), "c2": (5, 5, 6, 16), "f1": (256, 120), "f2": (120, 84),
            "out": (84, 10)}


def _kept(shapes, sparsities):
  return sum(math.prod(shapes[n]) * (1 - s) for n, s in sparsities.items())


def test_erk_densities_are_proportional_to_the_kernel_formula():
  shapes = {"a": (3, 3, 64, 64), "b": (512, 256), "c": (256, 10)}
  s = distributions.layer_sparsities(shapes, 0.95, "erk")
  raw = {"a": (3 + 3 + 64 + 64) / (3 * 3 * 64 * 64), "b": 768 / (512 * 256),
         "c": 266 / 2560}
  density = {n: 1 - s[n] for n in shapes}
  assert all(0 < d < 1 for d in density.values())
  ratios = [density[n] / raw[n] for n in shapes]
  np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)  # one eps for every layer
  total = sum(math.prod(v) for v in shapes.values())
  assert _kept(shapes, s) == pytest.approx(0.05 * total)


def test_erk_keeps_layers_dense_that_the_formula_would_overfill():
  s = distributions.layer_sparsities(CONV_NET, 0.5, "erk")
  # At 50%, one eps for all would give c1 (17 / 150 * eps) and out (94 / 840 * eps)
  # densities above 1: both dense, the other three take up their share.
  assert s["c1"] == 0.0 and s["out"] == 0.0
  total = sum(math.prod(v) for v in CONV_NET.values())
  assert _kept(CONV_NET, s) == pytest.approx(0.5 * total)
  free = [n for n in CONV_NET if s[n] > 0]
  ratio = [(1 - s[n]) / (sum(CONV_NET[n]) / math.prod(CONV_NET[n])) for n in free]
  np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)


def test_er_ignores_the_spatial_dims_and_uniform_is_the_target():
  s = distributions.layer_sparsities({"a": (3, 3, 8, 16), "b": (16, 32)}, 0.5, "er")
  assert (1 - s["a"]) / (1 - s["b"]) == pytest.approx((24 / 128) / (48 / 512))
  assert distributions.layer_sparsities(CONV_NET, 0.8) == {n: 0.8 for n in CONV_NET}


def test_dense_layers_and_custom_maps():
  s = distributions.layer_sparsities(CONV_NET, 0.9, "uniform", dense_layers=("first", "last"))
  assert s == {"c1": 0.0, "c2": 0.9, "f1": 0.9, "f2": 0.9, "out": 0.0}
  custom = distributions.layer_sparsities(CONV_NET, 0.9, {"f1": 0.95}, dense_layers=["c1"])
  assert custom == {"c1": 0.0, "c2": 0.9, "f1": 0.95, "f2": 0.9, "out": 0.9}
  with pytest.raises(ValueError, match="not a prunable layer"):
    distributions.layer_sparsities(CONV_NET, 0.9, dense_layers=["nope"])
  with pytest.raises(ValueError, match="sparsity_distribution"):
    distributions.layer_sparsities(CONV_NET, 0.9, "erdos")
  with pytest.raises(ValueError, match="f1"):
    distributions.layer_sparsities(CONV_NET, 0.9, {"f1": 1.5})


def _conv_model():
  keras.utils.set_random_seed(0)
  return keras.Sequential([
      keras.layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1), name="c1"),
      keras.layers.Conv2D(8, 3, activation="relu", name="c2"), keras.layers.Flatten(),
      keras.layers.Dense(32, activation="relu", name="f1"), keras.layers.Dense(3, name="out")])


def test_erk_at_layer_scope_reaches_each_layers_sparsity_and_leaves_dense_layers_unwrapped():
  schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=8, frequency=2)
  model = ksf.prune_sign_flip(_conv_model(), pruning_schedule=schedule, criterion="magnitude",
                              sparsity_distribution="erk", dense_layers=["last"])
  # As TF-MOT, Flatten is wrapped too.
  wrapped = {w.layer.name for w in ksf.collect_wrappers(model) if w.flip_states}
  assert wrapped == {"c1", "c2", "f1"}
  shapes = {l.name: tuple(l.kernel.shape) for l in _conv_model().layers if hasattr(l, "kernel")}
  want = distributions.layer_sparsities(shapes, 0.9, "erk", dense_layers=["last"])
  x = np.random.RandomState(0).randn(64, 8, 8, 1).astype("float32")
  y = np.random.RandomState(1).randint(0, 3, 64)
  tu.compile_sgd(model, lr=0.1).fit(x, y, batch_size=16, epochs=3, verbose=0,
                                    callbacks=[ksf.UpdatePruningStep()])
  for w in (w for w in ksf.collect_wrappers(model) if w.flip_states):
    mask = w.flip_states[0].mask.numpy()
    assert int(mask.sum()) == tu.reference_kept(mask.size, want[w.layer.name]), w.layer.name


def test_distribution_errors_are_clear_and_raised_before_wrapping():
  schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, 0)
  with pytest.raises(ValueError, match="layer scope"):
    ksf.prune_sign_flip(_conv_model(), pruning_schedule=schedule, scope="global",
                        sparsity_distribution="erk")
  with pytest.raises(ValueError, match="not a prunable layer"):
    ksf.prune_sign_flip(_conv_model(), pruning_schedule=schedule, dense_layers=["zz"])


def test_scaled_schedules_save_and_load(tmp_path):
  schedule = ksf.tf_keras.schedules.GeometricSparsity(0.5, 2, max_sparsity=0.9)
  model = ksf.prune_sign_flip(_conv_model(), pruning_schedule=schedule, criterion="magnitude",
                              sparsity_distribution={"c1": 0.3}, dense_layers=["out"])
  scaled = {w.layer.name: w.pruning_schedule for w in ksf.collect_wrappers(model) if w.flip_states}
  assert scaled["c1"].get_config() == \
      ksf.tf_keras.schedules.ScaledSparsity(schedule, 0.3 / 0.9).get_config()
  assert scaled["c2"] is schedule
  assert float(scaled["c1"](100)[1]) == pytest.approx(0.3, abs=1e-6)
  tu.compile_sgd(model)
  path = str(tmp_path / "m.keras")
  model.save(path)
  with ksf.prune_scope():
    loaded = keras.models.load_model(path)
  got = {w.layer.name: w.pruning_schedule.get_config() for w in ksf.collect_wrappers(loaded)
         if w.flip_states}
  assert got == {n: s.get_config() for n, s in scaled.items()}
