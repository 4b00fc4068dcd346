"""Sparse variational dropout (keras_signflip.tf_keras.variational) against NumPy."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras import variational as vd
from keras_signflip.tf_keras._framework import keras, tf
from tests import testing_utils as tu


def test_kl_approximation_is_the_papers():
  log_alpha = np.linspace(-8, 8, 33)
  k1, k2, k3 = 0.63576, 1.87320, 1.48695
  neg_kl = k1 / (1 + np.exp(-(k2 + k3 * log_alpha))) - 0.5 * np.log1p(np.exp(-log_alpha)) - k1
  np.testing.assert_allclose(vd.kl_approximation(tf.constant(log_alpha)).numpy(), -neg_kl,
                             rtol=1e-6)
  assert np.all(np.diff(-neg_kl) < 0)  # larger alpha (noisier weight): smaller KL


def _layer(**kwargs):
  layer = vd.VariationalDropout(keras.layers.Dense(3, activation=None, name="d"), seed=2,
                                **kwargs)
  layer.build((None, 4))
  rng = np.random.RandomState(0)
  layer.layer.kernel.assign(rng.randn(4, 3).astype(np.float32))
  layer.layer.bias.assign(rng.randn(3).astype(np.float32))
  layer.log_sigma2.assign(np.log(rng.rand(4, 3) * 0.5 + 0.01).astype(np.float32))
  return layer


def test_local_reparameterisation_has_the_right_mean_and_variance():
  layer = _layer()
  x = np.random.RandomState(1).randn(1, 4).astype(np.float32)
  theta, sigma2 = layer.layer.kernel.numpy(), np.exp(layer.log_sigma2.numpy())
  draws = np.concatenate([layer(np.repeat(x, 500, 0), training=True).numpy() for _ in range(8)])
  np.testing.assert_allclose(draws.mean(0), (x @ theta + layer.layer.bias.numpy())[0], atol=0.08)
  np.testing.assert_allclose(draws.var(0), ((x ** 2) @ sigma2)[0], rtol=0.08)


@pytest.mark.parametrize("train_clip", [False, True])
def test_train_clip_drops_pruned_weights_from_the_training_mean(train_clip):
  """d(training output)/d theta is x through the mean (the noise's scale reads
  sigma^2 only): with train_clip it is exactly 0 for the weights past the threshold."""
  layer = _layer(train_clip=train_clip)
  theta, sigma2 = layer.layer.kernel.numpy(), np.exp(layer.log_sigma2.numpy())
  kept = np.clip(np.log(sigma2) - np.log(theta ** 2 + 1e-8), -10, 10) < 3
  assert 0 < kept.sum() < kept.size
  x = np.random.RandomState(1).randn(6, 4).astype(np.float32)
  with tf.GradientTape() as tape:
    out = tf.reduce_sum(layer(x, training=True))
  grad = tape.gradient(out, layer.layer.kernel).numpy()
  want = np.repeat(x.sum(0)[:, None], 3, axis=1)
  np.testing.assert_allclose(grad, np.where(kept, want, 0) if train_clip else want, rtol=1e-5,
                             atol=1e-6)


def test_test_time_prunes_weights_with_large_log_alpha_and_strip_matches():
  layer = _layer()
  theta = layer.layer.kernel.numpy()
  log_alpha = np.clip(layer.log_sigma2.numpy() - np.log(theta ** 2 + 1e-8), -10, 10)
  kept = log_alpha < 3
  assert 0 < kept.sum() < kept.size
  x = np.random.RandomState(1).randn(5, 4).astype(np.float32)
  np.testing.assert_allclose(layer(x, training=False).numpy(),
                             x @ np.where(kept, theta, 0) + layer.layer.bias.numpy(), rtol=1e-5,
                             atol=1e-5)


def test_training_sparsifies_resumes_and_strips(tmp_path):
  x, y = tu.data(n=256)
  keras.utils.set_random_seed(0)
  model = vd.variational_dropout(tu.mlp(hidden=32), strength=1.0 / 256)
  model.compile(keras.optimizers.Adam(0.02),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, batch_size=32, epochs=30, verbose=0, callbacks=[vd.KLWarmup(40)])
  assert float(model.layers[0].kl_scale.numpy()) == 1.0
  plain = vd.strip(model)
  zeros = [float(np.mean(l.kernel.numpy() == 0)) for l in plain.layers if hasattr(l, "kernel")]
  assert max(zeros) > 0.2, zeros  # the KL term drove log alpha above 3
  np.testing.assert_allclose(plain(x).numpy(), model(x, training=False).numpy(), rtol=1e-5,
                             atol=1e-5)
  model.save(str(tmp_path / "m.keras"))
  loaded = keras.models.load_model(str(tmp_path / "m.keras"))
  np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(),
                             rtol=1e-6)
  assert ksf.export_saved_model(plain, str(tmp_path / "e"), verbose=False)["overall_sparsity"] > 0


def test_bad_arguments():
  with pytest.raises(ValueError, match="strength"):
    vd.VariationalDropout(keras.layers.Dense(2), strength=-1)
  with pytest.raises(ValueError, match="no kernel"):
    vd.VariationalDropout(keras.layers.Flatten())
  with pytest.raises(ValueError, match="channels_last"):
    vd.VariationalDropout(keras.layers.Conv2D(2, 3, data_format="channels_first"))
  with pytest.raises(ValueError, match="steps"):
    vd.KLWarmup(0)
