"""Targeted dropout (keras_signflip.tf_keras.targeted_dropout) against NumPy."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras import targeted_dropout as td
from keras_signflip.tf_keras._framework import keras, tf


def _numpy_candidates(kernel, targeted):
  columns = np.abs(kernel.reshape(-1, kernel.shape[-1]))
  k = int(np.floor(targeted * columns.shape[0]))
  if k == 0:
    return np.zeros(kernel.shape, bool)
  threshold = np.sort(columns, axis=0)[k]
  return (columns < threshold[None, :]).reshape(kernel.shape)


def _model(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.layers.Conv2D(4, 3, input_shape=(6, 6, 2), name="c"),
                           keras.layers.Flatten(), keras.layers.Dense(5, name="d")])


@pytest.mark.parametrize("targeted", [0.0, 0.3, 0.75])
def test_candidates_are_each_columns_smallest(targeted):
  kernel = np.random.RandomState(1).randn(3, 3, 2, 4).astype(np.float32)
  np.testing.assert_array_equal(td.candidates(tf.constant(kernel), targeted).numpy(),
                                _numpy_candidates(kernel, targeted))


def test_inference_zeroes_candidates_and_training_drops_a_rate_of_them():
  model = td.targeted_dropout(_model(), rate=0.4, targeted=0.6, seed=3)
  wrapper = model.layers[-1]
  x = np.random.RandomState(0).randn(7, 6, 6, 2).astype(np.float32)
  kernel = wrapper.layer.kernel.numpy()
  chosen = _numpy_candidates(kernel, 0.6)
  hidden = keras.Sequential(model.layers[:-1])(x).numpy()
  bias = wrapper.layer.bias.numpy()
  np.testing.assert_allclose(model(x, training=False).numpy(),
                             hidden @ np.where(chosen, 0, kernel) + bias, rtol=1e-5, atol=1e-5)
  dropped = []
  for _ in range(200):  # which weights a training pass used: solve from outputs
    used = wrapper._kernel_used(True).numpy()
    gone = (used == 0) & (kernel != 0)
    assert not np.any(gone & ~chosen), "only candidates may be dropped"
    dropped.append(gone[chosen].mean())
  assert abs(np.mean(dropped) - 0.4) < 0.02


def test_training_learns_and_strip_gives_the_pruned_plain_model(tmp_path):
  model = td.targeted_dropout(_model(), rate=0.5, targeted=0.5)
  x = np.random.RandomState(0).randn(64, 6, 6, 2).astype(np.float32)
  y = x.reshape(64, -1)[:, :5] * 2.0
  model.compile(keras.optimizers.SGD(0.05), "mse")
  losses = model.fit(x, y, batch_size=16, epochs=8, verbose=0).history["loss"]
  assert losses[-1] < losses[0]
  plain = td.strip(model)
  assert not any(isinstance(l, td.TargetedDropout) for l in plain.layers)
  for wrapper, layer in ((model.layers[0], plain.layers[0]), (model.layers[-1], plain.layers[-1])):
    kernel = wrapper.layer.kernel.numpy()
    np.testing.assert_array_equal(layer.kernel.numpy(),
                                  np.where(_numpy_candidates(kernel, 0.5), 0, kernel))
  np.testing.assert_allclose(plain(x).numpy(), model(x, training=False).numpy(), rtol=1e-5,
                             atol=1e-5)
  report = ksf.export_saved_model(plain, str(tmp_path / "export"), verbose=False)
  assert report["overall_sparsity"] >= 0.49
  model.save(str(tmp_path / "m.keras"))
  loaded = keras.models.load_model(str(tmp_path / "m.keras"))
  np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(),
                             rtol=1e-6)


def test_bad_arguments():
  layer = keras.layers.Dense(3)
  with pytest.raises(ValueError, match="rate"):
    td.TargetedDropout(layer, rate=1.5)
  with pytest.raises(ValueError, match="targeted"):
    td.TargetedDropout(layer, targeted=1.0)
  with pytest.raises(ValueError, match="no kernel"):
    td.TargetedDropout(keras.layers.Flatten())
