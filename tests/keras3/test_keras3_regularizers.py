"""Targeted dropout, L0, variational dropout and Hoyer-Square on the Keras 3 path
(this process's backend), against NumPy statements of the papers' formulas."""
import numpy as np
import pytest

import keras
from keras import ops

import keras_signflip as ksf
from keras_signflip import keras3 as k3


def _np(x):
  return np.asarray(ops.convert_to_numpy(x))


def _mlp(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="a"),
                           keras.layers.Dense(3, name="b")])


def _x(n=64, seed=0):
  return np.random.RandomState(seed).randn(n, 6).astype("float32")


def test_targeted_dropout_candidates_inference_and_strip():
  model = k3.targeted_dropout.targeted_dropout(_mlp(), rate=0.5, targeted=0.5, seed=3)
  wrappers = [l for l in model.layers if isinstance(l, k3.targeted_dropout.TargetedDropout)]
  assert len(wrappers) == 2
  plain = k3.targeted_dropout.strip(model)
  x = _x()
  h = x
  for w, layer in zip(wrappers, plain.layers):
    kernel = _np(w.layer.kernel)
    k = int(np.floor(0.5 * kernel.shape[0]))
    kth = np.sort(np.abs(kernel), axis=0)[k]
    want = np.abs(kernel) < kth[None, :]  # per column: below the k-th smallest
    np.testing.assert_array_equal(_np(k3.targeted_dropout.candidates(kernel, 0.5)), want)
    np.testing.assert_array_equal(_np(layer.kernel), np.where(want, 0, kernel))
    h = h @ np.where(want, 0, kernel) + _np(w.layer.bias)
    h = np.maximum(h, 0) if w.layer.name == "a" else h
  np.testing.assert_allclose(_np(model(x, training=False)), h, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(_np(plain(x)), h, rtol=1e-5, atol=1e-5)
  # In training, each candidate is dropped with probability `rate`, others never.
  w = wrappers[0]
  kernel = _np(w.layer.kernel)
  chosen = _np(k3.targeted_dropout.candidates(kernel, 0.5))
  drops = np.mean([_np(w.kernel_used(True)) == 0 for _ in range(100)], axis=0)
  assert np.all(drops[~chosen] == 0)
  assert abs(drops[chosen].mean() - 0.5) < 0.05
  with pytest.raises(ValueError, match="targeted"):
    k3.targeted_dropout.TargetedDropout(keras.layers.Dense(2), targeted=1.0)


def _hard_concrete_test_gates(log_alpha):
  return np.clip(1 / (1 + np.exp(-log_alpha)) * 1.2 - 0.1, 0, 1)


def test_l0_gates_penalty_and_strip():
  model = k3.l0.l0_gates(_mlp(), strength=1e-3, init_keep=0.5, seed=2)
  gates = [l for l in model.layers if isinstance(l, k3.l0.L0Gate)]
  rng = np.random.RandomState(0)
  for g in gates:
    g.log_alpha.assign(rng.uniform(-4, 3, g.log_alpha.shape).astype("float32"))
  for g in gates:
    la = _np(g.log_alpha).astype(np.float64)
    np.testing.assert_allclose(_np(g.gates(False)), _hard_concrete_test_gates(la), atol=1e-6)
    expected = np.sum(1 / (1 + np.exp(-(la - (2 / 3) * np.log(0.1 / 1.1)))))
    np.testing.assert_allclose(float(_np(g.expected_l0())), expected, rtol=1e-5)
    # P(z > 0) of the training draws = sigmoid(log_alpha - beta * log(-gamma / zeta)).
    open_rate = np.mean([_np(g.gates(True)) > 0 for _ in range(150)], axis=0)
    p = 1 / (1 + np.exp(-(la - (2 / 3) * np.log(0.1 / 1.1))))
    assert np.abs(open_rate - p).mean() < 0.05
  x = _x()
  model(x, training=True)
  penalty = sum(1e-3 * float(_np(g.expected_l0())) for g in gates)
  np.testing.assert_allclose(float(sum(_np(l) for l in model.losses)), penalty, rtol=1e-5)
  plain = k3.l0.strip(model)
  for g, layer in zip(gates, plain.layers):
    np.testing.assert_allclose(_np(layer.kernel), _np(g.layer.kernel) * _np(g.gates(False)),
                               rtol=1e-6)
  np.testing.assert_allclose(_np(plain(x)), _np(model(x, training=False)), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="strength"):
    k3.l0.L0Gate(keras.layers.Dense(2), strength=-1)


def test_variational_dropout_kl_lrt_and_strip(tmp_path):
  la = np.linspace(-8, 8, 33)
  want = -(0.63576 / (1 + np.exp(-(1.87320 + 1.48695 * la))) - 0.5 * np.log1p(np.exp(-la))
           - 0.63576)
  np.testing.assert_allclose(_np(k3.variational.kl_approximation(ops.convert_to_tensor(
      la.astype("float32")))), want, rtol=1e-4, atol=1e-5)
  model = k3.variational.variational_dropout(_mlp(), strength=1e-4, seed=1)
  wrappers = [l for l in model.layers if isinstance(l, k3.variational.VariationalDropout)]
  rng = np.random.RandomState(1)
  for w in wrappers:
    w.log_sigma2.assign(rng.uniform(-6, 2, w.log_sigma2.shape).astype("float32"))
  first = wrappers[0]
  log_alpha = np.clip(_np(first.log_sigma2) - np.log(_np(first.layer.kernel) ** 2 + 1e-8), -10, 10)
  np.testing.assert_allclose(_np(first.log_alpha()), log_alpha, rtol=1e-4, atol=1e-4)
  # Local reparameterisation, through a linear bias-free layer: y ~ N(x theta, x^2 sigma^2).
  keras.utils.set_random_seed(5)
  linear = k3.variational.VariationalDropout(keras.layers.Dense(3, use_bias=False), seed=4)
  x = _x(4)
  linear.build(x.shape)
  linear.log_sigma2.assign(rng.uniform(-4, 0, linear.log_sigma2.shape).astype("float32"))
  theta, sigma2 = _np(linear.layer.kernel), np.exp(_np(linear.log_sigma2))
  draws = _np(linear(np.tile(x, (2000, 1)), training=True)).reshape(2000, *x.shape[:1], 3)
  mean, var = x @ theta, (x ** 2) @ sigma2
  assert np.all(np.abs(draws.mean(0) - mean) < 5 * np.sqrt(var / 2000))
  np.testing.assert_allclose(draws.var(0), var, rtol=0.15)
  # Test time and strip: theta where log alpha < 3.
  plain = k3.variational.strip(model)
  for w, layer in zip(wrappers, plain.layers):
    la = _np(w.log_alpha())
    np.testing.assert_array_equal(_np(layer.kernel), np.where(la < 3, _np(w.layer.kernel), 0))
  np.testing.assert_allclose(_np(plain(_x())), _np(model(_x(), training=False)), rtol=1e-5,
                             atol=1e-5)
  # The KL loss and a save/load round trip of log sigma^2.
  model(_x(), training=True)
  kl = sum(1e-4 * np.sum(-(0.63576 / (1 + np.exp(-(1.87320 + 1.48695 * _np(w.log_alpha()))))
                            - 0.5 * np.log1p(np.exp(-_np(w.log_alpha()))) - 0.63576))
           for w in wrappers)
  np.testing.assert_allclose(float(sum(_np(l) for l in model.losses)), kl, rtol=1e-3)
  model.save(tmp_path / "vd.keras")
  loaded = keras.models.load_model(tmp_path / "vd.keras")
  for a, b in zip(model.weights, loaded.weights):
    np.testing.assert_array_equal(_np(a), _np(b))


def test_variational_dropout_training_sparsifies():
  rng = np.random.RandomState(0)
  x = rng.randn(256, 6).astype("float32")
  y = (x[:, 0] > 0).astype("int32")
  model = k3.variational.variational_dropout(_mlp(), strength=0.05, seed=0)
  model.compile(keras.optimizers.Adam(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, batch_size=64, epochs=15, verbose=0, callbacks=[k3.variational.KLWarmup(8)])
  wrappers = [l for l in model.layers if isinstance(l, k3.variational.VariationalDropout)]
  assert float(_np(wrappers[0].kl_scale)) == 1.0
  pruned = np.mean(np.concatenate([~_np(w.kept()).ravel() for w in wrappers]))
  assert pruned > 0.3  # the KL pushes unneeded weights to log alpha > 3
  plain = k3.variational.strip(model)
  assert np.mean(np.argmax(_np(plain(x)), 1) == y) > 0.8


def test_hoyer_square_penalty_and_threshold_prune():
  w = np.random.RandomState(0).randn(5, 4).astype("float32")
  np.testing.assert_allclose(float(_np(k3.hoyer.hoyer_square(w))),
                             np.abs(w).sum() ** 2 / (np.square(w).sum() + 1e-12), rtol=1e-5)
  model = ksf.prune_sign_flip(_mlp(), pruning_schedule=k3.schedules.ConstantSparsity(
      0.5, begin_step=2**30), criterion="magnitude", scope="global")
  assert k3.hoyer.add_hoyer_square(model, 1e-3) == 2
  model(_x())
  kernels = [_np(s.weight) for s in ksf.flip_states(model)]
  want = sum(1e-3 * np.abs(k).sum() ** 2 / np.square(k).sum() for k in kernels)
  np.testing.assert_allclose(float(sum(_np(l) for l in model.losses)), want, rtol=1e-5)
  model.compile(keras.optimizers.Adam(0.01), "mse")
  x = _x()
  model.fit(x, np.zeros((64, 3), "float32"), epochs=1, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  before = [_np(s.weight) for s in ksf.flip_states(model)]
  threshold = float(np.median(np.abs(np.concatenate([b.ravel() for b in before]))))
  report = k3.hoyer.threshold_prune(model, threshold)
  for s, b in zip(ksf.flip_states(model), before):
    keep = np.abs(b) >= threshold
    np.testing.assert_array_equal(_np(s.mask) > 0, keep)
    np.testing.assert_array_equal(_np(s.weight), np.where(keep, b, 0))
    for slot in k3.mask_update.optimizer_slots(model.optimizer, s.weight):
      assert not np.any(_np(slot)[~keep])
    assert report[s.weight.path] == pytest.approx(1 - keep.mean())
  with pytest.raises(ValueError, match="threshold"):
    k3.hoyer.threshold_prune(model, -1.0)


@pytest.mark.parametrize("method", ["targeted_dropout", "l0", "variational"])
def test_training_resumed_from_a_keras_file_equals_uninterrupted(method, tmp_path):
  """Keras does not save a SeedGenerator's state; the wrappers do, so the noise
  draws continue where they stopped."""
  wrap = {"targeted_dropout": lambda m: k3.targeted_dropout.targeted_dropout(m, seed=3),
          "l0": lambda m: k3.l0.l0_gates(m, strength=1e-3, seed=3),
          "variational": lambda m: k3.variational.variational_dropout(m, 1e-3, seed=3)}[method]
  x, y = _x(), np.random.RandomState(1).randint(0, 3, 64)

  def model():
    m = wrap(_mlp())
    m.compile(keras.optimizers.Adam(0.01),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m

  def fit(m):
    m.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)

  uninterrupted = model()
  fit(uninterrupted)
  fit(uninterrupted)
  first = model()
  fit(first)
  first.save(str(tmp_path / "m.keras"))
  first.save_weights(str(tmp_path / "m.weights.h5"))
  resumed = keras.models.load_model(str(tmp_path / "m.keras"))
  from_weights = model()
  from_weights.optimizer.build(from_weights.trainable_variables)
  from_weights.load_weights(str(tmp_path / "m.weights.h5"))
  for m in (resumed, from_weights):
    fit(m)
    for want, got in zip(uninterrupted.get_weights(), m.get_weights()):
      np.testing.assert_array_equal(_np(got), _np(want))
  # The saved state is what carries it: with it reset, step 1's noise comes back.
  again = keras.models.load_model(str(tmp_path / "m.keras"))
  for layer in again.layers:
    if isinstance(layer, k3.kernel_wrappers.KernelWrapper):
      layer.seed_generator.state.assign(keras.random.SeedGenerator(3).state)
  fit(again)
  assert not all(np.array_equal(_np(a), _np(b))
                 for a, b in zip(again.get_weights(), uninterrupted.get_weights()))


@pytest.mark.parametrize("train_clip", [False, True])
def test_variational_dropout_train_clip_drops_pruned_weights_from_the_training_mean(train_clip):
  layer = k3.variational.VariationalDropout(keras.layers.Dense(3, name="d"), seed=1,
                                            train_clip=train_clip)
  layer.build((None, 4))
  theta = np.ones((4, 3), "float32")
  theta[0] = 0.5
  log_sigma2 = np.full((4, 3), -20.0, "float32")
  log_sigma2[0] = np.log(0.25) + 4  # log alpha = 4 > 3: pruned at test time
  layer.layer.kernel.assign(theta)
  layer.layer.bias.assign(np.zeros(3, "float32"))
  layer.log_sigma2.assign(log_sigma2)
  x = np.ones((4000, 4), "float32")
  mean = _np(layer(x, training=True)).mean(0)  # sd of this mean: sqrt(0.25 e^4 / 4000) = 0.06
  np.testing.assert_allclose(mean, np.full(3, 3.0 if train_clip else 3.5), atol=0.25)
