"""mixed_float16 as the Keras guide teaches it: float16 compute, a float32 output layer.

Pruned weights stay exact zeros, flips match a NumPy recount of the float32
master weights, a step the loss scaler skips changes nothing, the wrapper
never rounds the master weights (unpruned weights follow the unwrapped
model's updates exactly), and the export reloads without keras_signflip.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tf, tfmot
from tests import testing_utils as tu

X, Y = tu.data(n=192)


@pytest.fixture(autouse=True)
def mixed_policy():
  keras.mixed_precision.set_global_policy("mixed_float16")
  yield
  keras.mixed_precision.set_global_policy("float32")


def _base(seed=3):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                           keras.layers.Dense(12, activation="tanh"),
                           keras.layers.Dense(3, dtype="float32")])


def _compile(model, lr):
  model.compile(keras.optimizers.SGD(lr),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def _master(state):
  return getattr(state.weight, "_variable", state.weight).numpy()  # float32 master values


class _Recorder(keras.callbacks.Callback):
  """Master weights and masks after every step, for a NumPy recount."""

  def __init__(self, states):
    super().__init__()
    self.states, self.steps = states, []

  def on_train_begin(self, logs=None):
    self.steps.append([(_master(s), s.mask.numpy()) for s in self.states])

  def on_train_batch_end(self, batch, logs=None):
    self.steps.append([(_master(s), s.mask.numpy()) for s in self.states])


def test_trains_prunes_and_counts_flips_like_numpy():
  model = _compile(ksf.prune_sign_flip(
      _base(), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.6, 0, frequency=3),
      criterion="hybrid"), lr=2.0)
  states = ksf.flip_states(model)
  assert all(s.weight.dtype == tf.float32 and s.mask.dtype == tf.float32 for s in states)
  recorder = _Recorder(states)
  model.fit(X, Y, batch_size=32, epochs=3, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), recorder])
  for i, s in enumerate(states):
    # Recount per tensor: a flip is sign(before) * sign(after) < 0 while kept.
    expected = np.zeros(s.flips.shape, np.int64)
    before = [np.sign(step[i][0]) for step in recorder.steps]
    masks = [step[i][1] for step in recorder.steps]
    for t in range(1, len(before)):
      expected = (expected + ((before[t - 1] * before[t]) < 0)) * (masks[t] > 0)
    np.testing.assert_array_equal(s.flips.numpy(), expected)
    assert not np.any(_master(s)[s.mask.numpy() == 0])
  assert abs(ksf.sparsity_report(model)["overall"] - 0.6) < 0.01
  assert sum(int(f.sum()) for f in ksf.flip_counts(model).values()) > 0


def test_a_step_the_loss_scaler_skips_changes_no_weight_and_counts_no_flip():
  model = _compile(ksf.prune_sign_flip(_base(), pruning_schedule=tu.never(),
                                       criterion="magnitude"), lr=0.5)
  model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  before = [(_master(s).copy(), s.flips.numpy().copy()) for s in ksf.flip_states(model)]
  scale_before = float(model.optimizer.loss_scale)
  bad = np.full((32, 8), np.nan, np.float32)  # non-finite gradients: the scaler skips the step
  model.fit(bad, Y[:32], batch_size=32, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  assert float(model.optimizer.loss_scale) < scale_before  # the step was skipped
  for s, (w, flips) in zip(ksf.flip_states(model), before):
    np.testing.assert_array_equal(_master(s), w)
    np.testing.assert_array_equal(s.flips.numpy(), flips)


def test_unpruned_weights_follow_the_unwrapped_model_exactly():
  plain = _compile(_base(), lr=2e-4)
  wrapped = _compile(ksf.prune_sign_flip(_base(), pruning_schedule=tu.never(),
                                         criterion="magnitude"), lr=2e-4)
  start = [v.numpy() for v in plain.trainable_weights]
  plain.fit(X, Y, batch_size=32, epochs=4, shuffle=False, verbose=0)
  wrapped.fit(X, Y, batch_size=32, epochs=4, shuffle=False, verbose=0,
              callbacks=[ksf.UpdatePruningStep()])
  kernels = {id(getattr(s.weight, "_variable", s.weight)) for s in ksf.flip_states(wrapped)}
  wrapped_kernels = [v for v in wrapped.trainable_weights
                     if id(getattr(v, "_variable", v)) in kernels]
  plain_kernels = [v for v in plain.trainable_weights if len(v.shape) == 2]
  moved = 0.0
  for p, w, s0 in zip(plain_kernels, wrapped_kernels, [a for a in start if a.ndim == 2]):
    np.testing.assert_allclose(w.numpy(), p.numpy(), rtol=0, atol=1e-7)
    moved += float(np.abs(p.numpy() - s0).max())
  assert moved > 1e-5  # the models did train


PRODUCTS = ("dense", "ell_coo")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """One model trained under mixed_float16, exported with each kind of products;
  {products: (what a fresh TensorFlow process without keras_signflip serves,
  what the stripped model predicts)}: one process loads every export."""
  tmp_path = tmp_path_factory.mktemp("export")
  keras.mixed_precision.set_global_policy("mixed_float16")  # before `mixed_policy` runs
  try:
    model = _compile(ksf.prune_sign_flip(
        _base(), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.7, 0, frequency=2),
        criterion="hybrid"), lr=0.5)
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
    first, second = [layer.name for layer in ksf.strip_pruning(model).layers][:2]
    for products in PRODUCTS:
      kernels = ("dense" if products == "dense" else  # ELL up to 4 rows, COO above; ELL always
                 {first: [("ell", 4), ("coo", None)], second: [("ell", None)]})
      ksf.export_saved_model(model, str(tmp_path / products), verbose=False, kernels=kernels)
    expected = ksf.strip_pruning(model).predict(X[:16], verbose=0)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  np.save(tmp_path / "x.npy", X[:16])
  code = ("import sys, numpy as np, tensorflow as tf\n"
          "for d in sys.argv[2:]:\n"
          "  m = tf.saved_model.load(d)\n"
          "  out = m.signatures['serving_default'](tf.constant(np.load(sys.argv[1])))\n"
          "  np.save(d + '.npy', list(out.values())[0].numpy())\n"
          "assert not any(k.startswith('keras_signflip') for k in sys.modules)\n")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"),
                           *(str(tmp_path / p) for p in PRODUCTS)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return {p: (np.load(tmp_path / f"{p}.npy"), expected) for p in PRODUCTS}


@pytest.mark.parametrize("products", PRODUCTS)
def test_export_reloads_without_keras_signflip_and_predicts_the_same(served, products):
  got, expected = served[products]
  np.testing.assert_allclose(got, expected, atol=1e-3)


def test_reference_weights_are_float32_copies_of_the_master_weights():
  model = _compile(ksf.prune_sign_flip(_base(), pruning_schedule=tu.never(),
                                       criterion="movement"), lr=0.5)
  model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  ksf.set_reference(model)
  for s in ksf.flip_states(model):
    assert s.reference.dtype == tf.float32
    np.testing.assert_array_equal(s.reference.numpy(), s.weight._variable.numpy()
                                  if hasattr(s.weight, "_variable") else s.weight.numpy())


def test_gradient_criteria_record_the_unscaled_gradients_through_the_loss_scaler():
  """compile wraps a recording optimizer in a LossScaleOptimizer under mixed_float16:
  saliency's sum of w * g still runs, and equals the float32 run's (a scaled gradient
  would be 2**15 times larger)."""
  def recorded(policy):
    keras.mixed_precision.set_global_policy(policy)
    model = ksf.prune_sign_flip(_base(), criterion="saliency", pruning_schedule=(
        tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=1000, frequency=1)))
    model.compile(ksf.record_gradients(keras.optimizers.SGD(0.05)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, batch_size=32, epochs=1, shuffle=False, verbose=0,
              callbacks=[ksf.UpdatePruningStep()])
    return model, [s.grad_product.numpy() for s in ksf.flip_states(model)]
  mixed, got = recorded("mixed_float16")
  assert isinstance(mixed.optimizer, keras.mixed_precision.LossScaleOptimizer)
  _, want = recorded("float32")
  for g, w in zip(got, want):
    assert np.abs(w).max() > 0
    np.testing.assert_allclose(g, w, rtol=0.05, atol=0.02 * np.abs(w).max())


@pytest.mark.parametrize("legacy", [False, True])
def test_a_loss_scale_optimizer_is_refused_outside_naming_the_order(legacy):
  """Wrapped outside the loss scaler, the recording would see the steps it skips."""
  inner = (keras.optimizers.legacy if legacy else keras.optimizers).SGD(0.1)
  scaled = keras.mixed_precision.LossScaleOptimizer(inner)
  for wrap in (ksf.record_gradients, lambda o: ksf.with_gradient_noise(o, 1.0)):
    with pytest.raises(ValueError, match=r"LossScaleOptimizer\(record_gradients\(inner\)\)"):
      wrap(scaled)
  assert ksf.tf_keras.gradient_noise.records_gradients(
      keras.mixed_precision.LossScaleOptimizer(ksf.record_gradients(inner)))
