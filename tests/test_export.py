"""The sparse SavedModel: densified once, at the first call, into a cache saved empty."""
import os

import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._compat import keras, tf, tfmot


def _pruned_conv_net():
  keras.utils.set_random_seed(0)
  base = keras.Sequential([
      keras.layers.Conv2D(8, 3, input_shape=(8, 8, 1), name="c"),
      keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(),
      keras.layers.Flatten(), keras.layers.Dense(16, activation="relu", name="d"),
      keras.layers.Dense(3, name="out")])
  model = ksf.prune_sign_flip(base, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
      0.9, 0, frequency=1),
                              criterion="magnitude", scope="global")
  model.compile("sgd", "mse")
  x = np.random.RandomState(0).randn(32, 8, 8, 1).astype("float32")
  model.fit(x, np.zeros((32, 3), "float32"), batch_size=8, epochs=1, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  assert ksf.sparsity_report(model)["overall"] > 0.89
  return model, x


def test_export_serves_like_the_stripped_model_and_saves_no_dense_copy(tmp_path):
  model, x = _pruned_conv_net()
  want = ksf.strip_pruning(model)(x, training=False).numpy()
  path = str(tmp_path / "export")
  ksf.export_saved_model(model, path, verbose=False)
  saved = dict(tf.train.list_variables(os.path.join(path, "variables", "variables")))
  caches = [name for name in saved if "cache" in name and "OPTIMIZER" not in name]
  assert caches and all(saved[name] == [0] for name in caches)  # saved empty
  serve = tf.saved_model.load(path).signatures["serving_default"]
  for _ in range(3):  # the first call fills the cache, later ones read it
    got = list(serve(tf.constant(x)).values())[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("values_dtype,tolerance", [("float16", 2e-3), ("int8", 3e-2)])
def test_quantised_values_serve_within_their_bound_and_are_smaller(tmp_path, values_dtype,
                                                                     tolerance):
  model, x = _pruned_conv_net()
  want = ksf.strip_pruning(model)(x, training=False).numpy()
  full = ksf.export_saved_model(model, str(tmp_path / "f32"), verbose=False)
  small = ksf.export_saved_model(model, str(tmp_path / values_dtype), verbose=False,
                                 values_dtype=values_dtype)
  assert small["gzip_bytes"] < full["gzip_bytes"]
  serve = tf.saved_model.load(str(tmp_path / values_dtype)).signatures["serving_default"]
  got = list(serve(tf.constant(x)).values())[0].numpy()
  assert np.max(np.abs(got - want)) <= tolerance * np.max(np.abs(want))


def test_quantised_int8_weights_are_per_channel_roundings():
  from keras_signflip.tf_keras import export as export_lib  # pylint: disable=g-import-not-at-top
  w = np.random.RandomState(0).randn(6, 4).astype(np.float32) * [1, 10, 0.1, 0]
  w[np.abs(w) < 0.3] = 0
  packed = export_lib._Packed(w, "w", values_dtype="int8")  # pylint: disable=protected-access
  scales = np.where(np.abs(w).max(0) > 0, np.abs(w).max(0) / 127, 1)
  np.testing.assert_allclose(packed.dense().numpy(), np.round(w / scales) * scales, rtol=1e-6)


def test_bad_export_options_write_nothing(tmp_path):
  model, _ = _pruned_conv_net()
  for kwargs in ({"values_dtype": "int4"}, {"values_dtype": "int8", "sparse": False}):
    with pytest.raises(ValueError, match="values_dtype"):
      ksf.export_saved_model(model, str(tmp_path / "x"), verbose=False, **kwargs)
  assert not os.listdir(tmp_path)
