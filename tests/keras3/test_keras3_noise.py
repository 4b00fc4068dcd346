"""FlipOut's gradient noise and coupled weight decay on the Keras 3 path (this
process's backend): `with_gradient_noise` and `flipout.optimizer(keras=keras)`.

References: FlipOut's formula (std = lambda * ||g * m||_2 / sqrt(n) per layer,
the result masked) through its sampling distribution, NumPy statements of
PyTorch's SGD(momentum, weight_decay) and of Keras' SGD, closed-form gradients
of a linear model, an uninterrupted run.
"""
import numpy as np
import pytest

import keras
from keras import ops

import keras_signflip as ksf
from keras_signflip import flipout
from keras_signflip import keras3 as k3
from keras_signflip.keras3 import gradient_noise as k3_noise

Z = 4.5  # two-sided normal bound: a correct draw fails it with p < 1e-5


def _np(x):
  return np.asarray(ops.convert_to_numpy(x))


def _never():
  return k3.schedules.ConstantSparsity(0.5, begin_step=2**30)


def _set_mask(state, mask):
  """What a mask update leaves: the mask, the weight zero where pruned."""
  state.mask.assign(mask.astype("int8"))
  state.weight.assign(_np(state.weight) * mask)
  k3.state.sync_signs(state)


def _chi2_z(q, dof):
  """Wilson-Hilferty: (chi2(dof) / dof)^(1/3) is normal, mean 1 - 2/(9 dof), var 2/(9 dof)."""
  return ((q / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / np.sqrt(2 / (9 * dof))


def test_noise_std_is_flipouts_formula_per_tensor():
  """The noise is N(0, sigma^2), sigma = ||g * m||_2 / sqrt(n) for each wrapped
  tensor (n counts pruned entries), zero where pruned and on unwrapped weights;
  draws differ between steps and tensors, and repeat for a (seed, step)."""
  keras.utils.set_random_seed(0)
  base = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, name="a"),
                           keras.layers.Dense(3, name="b")])
  model = ksf.prune_sign_flip(base, pruning_schedule=_never(), criterion="hybrid")
  states = ksf.flip_states(model)
  rng = np.random.RandomState(0)
  mask = (rng.rand(16, 64) > 0.4).astype("float32")
  _set_mask(states[0], mask)
  variables = model.trainable_variables
  masks = {id(states[0].weight): mask, id(states[1].weight): np.ones((64, 3), "float32")}
  grads = [rng.randn(*v.shape).astype("float32") * masks.get(id(v), 1.0) * (5.0 if i == 2 else 1.0)
           for i, v in enumerate(variables)]  # the wrapper's gradient is masked
  opt = k3.with_gradient_noise(keras.optimizers.SGD(1.0), factor=1.0, seed=3)
  opt.build(variables)
  draws = 20
  noise, first = {id(s.weight): [] for s in states}, []
  for t in range(draws):
    opt.iterations.assign(t)
    out = [_np(g) for g in k3_noise._transform(opt, grads, variables)]  # pylint: disable=protected-access
    first.append(out[0])
    for v, g, o in zip(variables, grads, out):
      if id(v) in noise:
        m = masks[id(v)]
        assert np.all(o[m == 0] == 0)  # masked again
        noise[id(v)].append((o - g)[m > 0])
      else:
        np.testing.assert_array_equal(o, g)  # a bias: no noise
  for s, g in zip(states, (grads[0], grads[2])):
    e = np.asarray(noise[id(s.weight)], np.float64)  # (draws, live entries)
    sigma = np.linalg.norm(g) / np.sqrt(g.size)  # FlipOut: lambda * ||g * m||_2 / sqrt(n)
    z_var = _chi2_z(np.sum(e**2) / sigma**2, e.size)  # sum e^2 / sigma^2 ~ chi2(N)
    z_mean = e.sum() / (sigma * np.sqrt(e.size))
    z_steps = np.corrcoef(e[:-1].ravel(), e[1:].ravel())[0, 1] * np.sqrt(e[:-1].size)
    print(f"{s.weight.path}: sigma {sigma:.4f}, sample std {np.sqrt(np.mean(e**2)):.4f} "
          f"(N={e.size}), z of the chi2 {z_var:+.2f}, of the mean {z_mean:+.2f}, of the "
          f"step-to-step correlation {z_steps:+.2f}")
    assert abs(z_var) < Z and abs(z_mean) < Z and abs(z_steps) < Z
  a, b = (np.asarray(noise[id(s.weight)]) for s in states)
  n = min(a.shape[1], b.shape[1])  # two tensors' draws at the same steps are independent
  assert abs(np.corrcoef(a[:, :n].ravel(), b[:, :n].ravel())[0, 1]) * np.sqrt(a[:, :n].size) < Z
  opt.iterations.assign(7)
  again = _np(k3_noise._transform(opt, grads, variables)[0])  # pylint: disable=protected-access
  np.testing.assert_array_equal(again, first[7])
  other = k3.with_gradient_noise(keras.optimizers.SGD(1.0), factor=1.0, seed=4)
  other.build(variables)
  other.iterations.assign(7)
  assert not np.array_equal(_np(k3_noise._transform(other, grads, variables)[0]), again)  # pylint: disable=protected-access
  if keras.backend.backend() == "tensorflow":  # the tf_keras hook's draws
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    draw = tf.random.stateless_normal(mask.shape, seed=[3 * 1000003 + 0, 7]).numpy()
    sigma = np.linalg.norm(grads[0]) / np.sqrt(mask.size)
    np.testing.assert_allclose(again, (grads[0] + sigma * draw) * mask, rtol=1e-5, atol=1e-6)


def test_noise_on_all_reaches_every_trainable_variable_at_flipouts_scale():
  """noise_on="all" (FlipOut's published runs): the biases and batch norm's scale and
  shift get N(0, sigma^2), sigma = ||g||_2 / sqrt(n) per tensor, unmasked; the kernel
  is still masked; the setting survives the optimizer's config."""
  keras.utils.set_random_seed(0)
  base = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, name="a"),
                           keras.layers.BatchNormalization(name="bn"),
                           keras.layers.Dense(3, name="b")])
  model = ksf.prune_sign_flip(base, pruning_schedule=_never(), criterion="hybrid")
  state = ksf.flip_states(model)[0]
  rng = np.random.RandomState(0)
  mask = (rng.rand(16, 64) > 0.4).astype("float32")
  _set_mask(state, mask)
  variables = model.trainable_variables
  grads = [rng.randn(*v.shape).astype("float32") * (mask if v is state.weight else 1.0)
           for v in variables]
  opt = k3.with_gradient_noise(keras.optimizers.SGD(1.0), factor=1.0, seed=3, noise_on="all")
  opt.build(variables)
  noise = [[] for _ in variables]
  for t in range(60):
    opt.iterations.assign(t)
    out = [_np(g) for g in k3_noise._transform(opt, grads, variables)]  # pylint: disable=protected-access
    for i, (v, g, o) in enumerate(zip(variables, grads, out)):
      live = mask > 0 if v is state.weight else np.ones(g.shape, bool)
      assert np.all(o[~live] == 0)
      noise[i].append((o - g)[live])
  assert len(variables) == 6  # a's kernel and bias, bn's gamma and beta, b's kernel and bias
  for v, g, e in zip(variables, grads, noise):
    e = np.asarray(e, np.float64)
    sigma = np.linalg.norm(g) / np.sqrt(g.size)
    z_var, z_mean = _chi2_z(np.sum(e**2) / sigma**2, e.size), e.sum() / (sigma * np.sqrt(e.size))
    assert abs(z_var) < Z and abs(z_mean) < Z, (v.path, z_var, z_mean)
  again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
  assert (again.noise_on, again.noise_factor, again.noise_seed) == ("all", 1.0, 3)
  with pytest.raises(ValueError, match=r"noise_on='some' must be 'prunable'"):
    k3.with_gradient_noise(keras.optimizers.SGD(1.0), factor=1.0, noise_on="some")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="sparse (IndexedSlices) gradients: TensorFlow backend")
def test_noise_on_all_scales_a_sparse_gradient_by_its_dense_norm():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  v = keras.Variable(np.ones((10, 4), "float32"), name="embeddings")
  opt = k3.with_gradient_noise(keras.optimizers.SGD(0.1), 1.0, seed=2, noise_on="all")
  opt.build([v])
  g = tf.IndexedSlices(tf.fill((3, 4), 2.0), tf.constant([1, 1, 5]), tf.constant([10, 4]))
  out = _np(k3_noise._transform(opt, [g], [v])[0])  # pylint: disable=protected-access
  dense = tf.convert_to_tensor(g).numpy()  # row 1 holds 4.0: repeated rows sum
  sigma = np.linalg.norm(dense) / np.sqrt(dense.size)
  draw = tf.random.stateless_normal((10, 4), seed=[2 * 1000003, 0]).numpy()
  np.testing.assert_allclose(out, dense + sigma * draw, rtol=1e-5, atol=1e-6)


class _Before(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.weights = []

  def on_train_batch_begin(self, batch, logs=None):
    self.weights.append([_np(v).astype(np.float64) for v in self.model.trainable_variables])

  def on_train_end(self, logs=None):
    self.weights.append([_np(v).astype(np.float64) for v in self.model.trainable_variables])


def test_fit_steps_equal_the_formula_at_each_step():
  """Inside `fit` (compiled and stateless on JAX): each step's update is
  lr * ((g + sigma_t * N_t) * m + wd * w) on the kernel, N_t the draw for
  (seed, step t, index 0), and lr * (g + wd * b) on the bias."""
  keras.utils.set_random_seed(1)
  base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="lin")])
  model = ksf.prune_sign_flip(base, pruning_schedule=_never(), criterion="magnitude")
  state = ksf.flip_states(model)[0]
  mask = (np.random.RandomState(2).rand(6, 3) > 0.3).astype("float32")
  _set_mask(state, mask)
  lr, wd = 0.5, 0.01
  model.compile(k3.with_gradient_noise(keras.optimizers.SGD(lr), 1.0, seed=5, weight_decay=wd),
                "mse")
  rng = np.random.RandomState(3)
  x, y = rng.randn(32, 6).astype("float32"), rng.randn(32, 3).astype("float32")
  before = _Before()
  model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), before])
  assert model.trainable_variables[0] is state.weight  # index 0 in the key
  for t in range(4):
    (w, b), (w1, b1) = before.weights[t], before.weights[t + 1]
    xb, yb = x[8 * t:8 * t + 8].astype(np.float64), y[8 * t:8 * t + 8].astype(np.float64)
    d = 2 * (xb @ w + b - yb) / yb.size  # d mse / d output
    gw, gb = xb.T @ d * mask, d.sum(0)
    sigma = np.linalg.norm(gw) / np.sqrt(gw.size)
    draw = _np(k3_noise._normal((6, 3), 5 * 1000003 + 0, ops.convert_to_tensor(t)))  # pylint: disable=protected-access
    np.testing.assert_allclose(w1, w - lr * ((gw + sigma * draw) * mask + wd * w), atol=2e-5)
    np.testing.assert_allclose(b1, b - lr * (gb + wd * b), atol=2e-5)
    assert np.all(w1[mask == 0] == 0)


def test_flipout_optimizer_is_pytorch_sgd_with_coupled_decay_and_step_decays():
  """Keras 3's flipout.optimizer on an unwrapped variable (no noise although
  noise=1): PyTorch's SGD(momentum, weight_decay) in NumPy while the rate is
  constant; across a decay, Keras' momentum form (docs/flipout_differences.md)."""
  epochs, steps_per_epoch = 7, 1  # decays after steps 3 and 5
  w0 = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
  var = keras.Variable(w0)
  opt = flipout.optimizer(epochs, steps_per_epoch, keras=keras, noise=1.0)
  assert isinstance(opt, keras.optimizers.SGD) and k3_noise.records_gradients(opt)
  grads = [np.array([[0.1, -0.2], [0.3, 0.05]], np.float32) * (i + 1) for i in range(7)]
  w, buf = w0.astype(np.float64), np.zeros_like(w0, np.float64)
  w_keras, v = w.copy(), np.zeros_like(w)
  for i, g in enumerate(grads):
    opt.apply([ops.convert_to_tensor(g)], [var])
    lr = 0.1 if i < 3 else 0.01 if i < 5 else 0.001   # boundaries after steps 3 and 5
    d = g + flipout.WEIGHT_DECAY * w                  # torch: d_p = g + wd * p
    buf = flipout.MOMENTUM * buf + d if i else d      # buf = momentum * buf + d_p
    w = w - lr * buf
    v = flipout.MOMENTUM * v - lr * (g + flipout.WEIGHT_DECAY * w_keras)
    w_keras = w_keras + v
    np.testing.assert_allclose(_np(var), w_keras, rtol=1e-5, atol=1e-7)
    if i < 3:
      np.testing.assert_allclose(_np(var), w, rtol=1e-5, atol=1e-7)


def _flipout_model():
  keras.utils.set_random_seed(0)
  base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh", name="h"),
                           keras.layers.Dense(3, name="out")])
  model = ksf.prune_sign_flip(base, **flipout.prune_kwargs(0.75, 2, 4, keras=keras))
  model.compile(flipout.optimizer(2, 4, keras=keras),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def test_resumed_run_draws_the_noise_of_an_uninterrupted_one(tmp_path):
  rng = np.random.RandomState(0)
  x, y = rng.randn(32, 8).astype("float32"), rng.randint(0, 3, 32)

  def fit(model, epochs, initial_epoch=0):
    model.fit(x, y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=[ksf.UpdatePruningStep()])
  whole = _flipout_model()
  fit(whole, 2)
  first = _flipout_model()
  fit(first, 1)
  first.save(tmp_path / "m.keras")
  resumed = keras.models.load_model(tmp_path / "m.keras")
  opt = resumed.optimizer
  assert isinstance(opt, keras.optimizers.SGD) and (
      opt.noise_factor, opt.noise_seed, opt.coupled_weight_decay) == (1.0, 0, flipout.WEIGHT_DECAY)
  fit(resumed, 2, initial_epoch=1)
  for a, b in zip(whole.weights + whole.optimizer.variables,
                  resumed.weights + resumed.optimizer.variables):
    np.testing.assert_array_equal(_np(a), _np(b), err_msg=a.path)
  assert ksf.sparsity_report(whole)["overall"] == pytest.approx(0.75, abs=0.01)


def test_bad_arguments_are_clear_errors():
  sgd = keras.optimizers.SGD(0.1)
  for kwargs, match in [({"factor": -1.0}, "factor"), ({"factor": float("nan")}, "factor"),
                        ({"factor": 1.0, "weight_decay": -1e-4}, "weight_decay"),
                        ({"factor": 1.0, "seed": 0.5}, "seed")]:
    with pytest.raises(ValueError, match=match):
      k3.with_gradient_noise(sgd, **kwargs)
  with pytest.raises(ValueError, match="with_gradient_noise wraps the inner"):
    k3.with_gradient_noise(keras.optimizers.LossScaleOptimizer(sgd), 1.0)
  noisy = ksf.with_gradient_noise(sgd, 0.5, seed=2, weight_decay=1e-4)  # dispatches on the family
  kept = ksf.record_gradients(noisy)  # keeps the noise
  assert (kept.noise_factor, kept.noise_seed, kept.coupled_weight_decay) == (0.5, 2, 1e-4)
