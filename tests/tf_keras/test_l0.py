"""L0 gates (keras_signflip.tf_keras.l0) against NumPy statements of Louizos et al.'s formulas."""
import math

import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras import l0
from keras_signflip.tf_keras._framework import keras
from tests import testing_utils as tu

B, G, Z = 2 / 3, -0.1, 1.1


def _gate():
  layer = l0.L0Gate(keras.layers.Dense(4, name="d"), strength=0.1, seed=1)
  layer.build((None, 3))
  layer.log_alpha.assign(np.linspace(-4, 4, 12).reshape(3, 4).astype(np.float32))
  return layer


def test_test_time_gates_and_expected_l0_are_the_papers():
  layer = _gate()
  la = layer.log_alpha.numpy().astype(np.float64)
  sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
  np.testing.assert_allclose(layer.gates(False).numpy(),
                             np.clip(sig(la) * (Z - G) + G, 0, 1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(layer.expected_l0().numpy(),
                             sig(la - B * math.log(-G / Z)).sum(), rtol=1e-5)


def test_training_gates_follow_the_hard_concrete_distribution():
  layer = _gate()
  draws = np.stack([layer.gates(True).numpy() for _ in range(3000)])
  assert draws.min() >= 0 and draws.max() <= 1
  la = layer.log_alpha.numpy().astype(np.float64)
  # P(z > 0) = P(s > -gamma / (zeta - gamma)) = sigmoid(log_alpha - beta * logit(t)), t that cut
  t = -G / (Z - G)
  want = 1 / (1 + np.exp(-(la - B * math.log(t / (1 - t)))))
  np.testing.assert_allclose((draws > 0).mean(axis=0), want, atol=0.04)


def test_penalty_is_added_and_strip_prunes_the_shut_gates(tmp_path):
  x, y = tu.data()
  keras.utils.set_random_seed(0)
  model = l0.l0_gates(tu.mlp(), strength=0.05)
  model.compile(keras.optimizers.Adam(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model(x[:2], training=True)
  assert len(model.losses) == 2
  model.fit(x, y, batch_size=32, epochs=25, verbose=0)
  plain = l0.strip(model)
  zeros = [float(np.mean(l.kernel.numpy() == 0)) for l in plain.layers if hasattr(l, "kernel")]
  assert max(zeros) > 0.1  # the penalty shut gates
  np.testing.assert_allclose(plain(x).numpy(), model(x, training=False).numpy(), rtol=1e-5,
                             atol=1e-5)
  model.save(str(tmp_path / "m.keras"))
  loaded = keras.models.load_model(str(tmp_path / "m.keras"))
  np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(),
                             rtol=1e-6)
  # The stripped model exports sparse, its shut gates as the zeros.
  report = ksf.export_saved_model(plain, str(tmp_path / "export"), verbose=False)
  kernels = [l.kernel.numpy() for l in plain.layers if hasattr(l, "kernel")]
  assert report["overall_sparsity"] == pytest.approx(
      sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels))


def test_bad_arguments():
  with pytest.raises(ValueError, match="strength"):
    l0.L0Gate(keras.layers.Dense(2), strength=-1)
  with pytest.raises(ValueError, match="zeta"):
    l0.L0Gate(keras.layers.Dense(2), zeta=0.9)
  with pytest.raises(ValueError, match="no kernel"):
    l0.L0Gate(keras.layers.Flatten())
