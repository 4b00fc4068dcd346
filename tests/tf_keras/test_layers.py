"""Every common layer on the tf_keras family: RNNs, Bidirectional, TimeDistributed,
EinsumDense, Conv1D/3D, depthwise and separable convolutions, and the proof models
(models.transformer_tiny, models.bilstm_tiny) on Fashion-MNIST-shaped sequences.

References: the weights each layer holds, named by Keras; TF-MOT's kept count
(testing_utils.reference_kept); flips recounted in NumPy from the weights around every step.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip import criteria
from keras_signflip import models
from keras_signflip.tf_keras._framework import keras, tfmot
from tests import testing_utils as tu

L = keras.layers
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(n=64, seed=0):
  """Fashion-MNIST-shaped data: images of 28 rows, read as 28 tokens of 28 features."""
  rng = np.random.RandomState(seed)
  return rng.rand(n, 28, 28).astype("float32"), rng.randint(0, 10, n)


def _every_layer():
  keras.utils.set_random_seed(0)
  x = inputs = keras.Input((12, 6))
  x = L.Bidirectional(L.LSTM(4, return_sequences=True), name="bi")(x)
  x = L.TimeDistributed(L.Dense(6), name="td")(x)
  x = L.EinsumDense("btc,cd->btd", output_shape=(None, 5), name="ein")(x)
  x = L.Conv1D(5, 1, name="c1")(x)
  x = L.SeparableConv1D(4, 3, name="sep1")(x)
  x = L.DepthwiseConv1D(3, name="dw1")(x)
  x = L.Reshape((8, 1, 4))(x)
  x = L.DepthwiseConv2D((3, 1), name="dw2")(x)
  x = L.SeparableConv2D(4, (3, 1), name="sep2")(x)
  x = L.Conv3D(3, 1, name="c3")(L.Reshape((4, 1, 1, 4))(x))
  x = L.Reshape((4, 3))(x)
  x = L.GRU(4, name="gru")(x)
  return keras.Model(inputs, L.Dense(3, name="out")(x))


# What each layer holds (Keras' own names); TF-MOT prunes none of dw*, only sep*'s
# pointwise kernel, and refuses bi, td and ein.
EVERY_LAYER_PRUNED = [
    "bi/forward_lstm/lstm_cell/kernel", "bi/forward_lstm/lstm_cell/recurrent_kernel",
    "bi/backward_lstm/lstm_cell/kernel", "bi/backward_lstm/lstm_cell/recurrent_kernel",
    "td/kernel", "ein/kernel", "c1/kernel", "sep1/depthwise_kernel", "sep1/pointwise_kernel",
    "dw1/depthwise_kernel", "dw2/depthwise_kernel", "sep2/depthwise_kernel",
    "sep2/pointwise_kernel", "c3/kernel", "gru/gru_cell/kernel", "gru/gru_cell/recurrent_kernel",
    "out/kernel"]


def test_every_layer_prunes_its_kernels_and_strips_to_the_same_predictions():
  model = ksf.prune_sign_flip(_every_layer(), pruning_schedule=tfmot.sparsity.keras.
                              ConstantSparsity(0.5, 0, frequency=1), criterion="hybrid")
  model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(
      from_logits=True), run_eagerly=True)  # two steps: cheaper than tracing one
  rng = np.random.RandomState(1)
  x, y = rng.randn(32, 12, 6).astype("float32"), rng.randint(0, 3, 32)
  model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  states = ksf.flip_states(model)
  assert [s.weight.name.split(":")[0] for s in states] == EVERY_LAYER_PRUNED
  for s in states:
    weight, mask = s.weight.numpy(), s.mask.numpy()
    assert mask.sum() == tu.reference_kept(mask.size, 0.5), s.weight.name
    assert not np.any(weight[mask == 0])
  stripped = ksf.strip_pruning(model)
  assert not ksf.collect_wrappers(stripped)
  np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0),
                             rtol=1e-5, atol=1e-6)


def test_every_layer_saves_and_loads_wrapped(tmp_path):
  model = ksf.prune_sign_flip(_every_layer(), pruning_schedule=tfmot.sparsity.keras.
                              ConstantSparsity(0.5, 0, frequency=1), criterion="random")
  model.build((None, 12, 6))
  x = np.random.RandomState(2).randn(4, 12, 6).astype("float32")
  path = str(tmp_path / "m.keras")  # h5 refuses TF-MOT's repeated "mask" names
  model.save(path)
  with ksf.prune_scope():
    loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                             rtol=1e-6)
  assert len(ksf.flip_states(loaded)) == len(EVERY_LAYER_PRUNED)
  # Random scores each tensor apart: the two directions' kernels get their own keys.
  keys = [s.key for s in ksf.flip_states(loaded)]
  assert keys == [s.key for s in ksf.flip_states(model)] and len(set(keys)) == len(keys)


class _Custom(L.Layer):
  def build(self, input_shape):
    self.w = self.add_weight("w", shape=(input_shape[-1], 2))

  def call(self, x):
    return x @ self.w


@pytest.mark.parametrize("wrap", [lambda: _Custom(name="odd"),
                                  lambda: L.Bidirectional(L.RNN(_CellWithoutKernels(2)),
                                                          name="odd")],
                         ids=["custom", "bidirectional_of_custom_cell"])
def test_an_unknown_layer_is_refused_by_name_with_the_way_out(wrap):
  model = keras.Sequential([keras.Input((3, 4)), wrap(), L.Flatten(), L.Dense(2)])
  with pytest.raises(ValueError, match=r"Layer odd \(.*\) cannot be pruned.*PrunableLayer"):
    ksf.prune_sign_flip(model)


class _CellWithoutKernels(L.Layer):
  def __init__(self, units, **kwargs):
    super().__init__(**kwargs)
    self.state_size = units

  def build(self, input_shape):
    self.w = self.add_weight("w", shape=(input_shape[-1], self.state_size))

  def call(self, x, states):
    return x @ self.w, [states[0]]


def _proof(name, criterion, scope="layer", steps=2, callbacks=(), eager=True, begin=0, lr=0.01,
           sparsity=0.9):
  """`name` pruned to `sparsity` by `criterion` at every step from step `begin`, trained
  `steps` steps of 16 rows by Adam(lr) (eagerly: a few steps cost less than tracing)."""
  keras.utils.set_random_seed(0)
  model = ksf.prune_sign_flip(models.get(name)((28, 28), 10), criterion=criterion, scope=scope,
                              pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                                  sparsity, begin, frequency=1))
  optimizer = keras.optimizers.Adam(lr)
  if criteria.get(criterion).uses_gradients:
    optimizer = ksf.record_gradients(optimizer)
  model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=eager)
  x, y = _rows(16 * steps)
  model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), *callbacks])
  return model, x


# Every criterion on the transformer; on the BiLSTM one of each kind of state a criterion
# keeps (flips, flips at the last update, reference weights, recorded gradients). Each
# criterion's masks are checked against NumPy by tests/test_conformance.py.
_CASES = ([("transformer_tiny", c) for c in sorted(criteria.CRITERIA)]
          + [("bilstm_tiny", c) for c in ("hybrid", "recent_flips", "large_final_same_sign",
                                          "saliency")])


@pytest.mark.parametrize("name,criterion", _CASES)
def test_proof_models_prune_to_90_percent_with_every_criterion(name, criterion):
  model, _ = _proof(name, criterion)
  states = ksf.flip_states(model)
  assert len(states) == {"transformer_tiny": 8, "bilstm_tiny": 6}[name]
  for s in states:
    mask = s.mask.numpy()
    assert mask.sum() == tu.reference_kept(mask.size, 0.9), s.weight.name
    assert not np.any(s.weight.numpy()[mask == 0])


def test_bilstm_at_global_scope_reaches_90_percent_overall():
  model, _ = _proof("bilstm_tiny", "hybrid", scope="global")
  sizes = [s.mask.numpy().size for s in ksf.flip_states(model)]
  kept = sum(int(s.mask.numpy().sum()) for s in ksf.flip_states(model))
  assert kept == tu.reference_kept(sum(sizes), 0.9)


class _Weights(keras.callbacks.Callback):
  """The attention kernels and their masks before training and after every step."""

  def on_train_begin(self, logs=None):
    self.states = [s for s in ksf.flip_states(self.model) if "attention" in s.weight.name]
    self.steps = [self._take()]

  def _take(self):
    return [(s.weight.numpy(), s.mask.numpy()) for s in self.states]

  def on_train_batch_end(self, batch, logs=None):
    self.steps.append(self._take())


def test_attention_flips_equal_a_numpy_recount():
  recorder = _Weights()
  # Half pruned from step 3: flips before pruning, reset where pruned, then go on.
  model, _ = _proof("transformer_tiny", "hybrid", steps=6, callbacks=[recorder], eager=False,
                    begin=3, lr=0.1, sparsity=0.5)
  assert len(recorder.states) == 4  # query, key, value, output
  for i, s in enumerate(recorder.states):
    expected = np.zeros(s.flips.shape, np.int64)
    for before, after in zip(recorder.steps, recorder.steps[1:]):
      (w0, _), (w1, m1) = before[i], after[i]
      expected = (expected + ((np.sign(w0) * np.sign(w1)) < 0)) * (m1 > 0)
    np.testing.assert_array_equal(ksf.flip_counts(model)[s.weight.name], expected)
  flips = ksf.flip_counts(model)
  assert sum(int(flips[s.weight.name].sum()) for s in recorder.states) > 0, "vacuous"


def test_proof_models_export_and_reload_in_plain_tensorflow(tmp_path):
  """Both proof models exported, then served by one process that never imports
  keras_signflip."""
  names, want = ["transformer_tiny", "bilstm_tiny"], {}
  for name in names:
    model, x = _proof(name, "hybrid", steps=2)
    want[name] = ksf.strip_pruning(model).predict(x[:4], verbose=0)
    ksf.export_saved_model(model, str(tmp_path / name), verbose=False)
  np.save(tmp_path / "x.npy", x[:4])
  code = ("import sys, numpy as np, tensorflow as tf\n"
          "x = tf.constant(np.load('x.npy'))\n"
          f"for name in {names!r}:\n"
          "  serve = tf.saved_model.load(name).signatures['serving_default']\n"
          "  np.save(name + '.npy', list(serve(x).values())[0].numpy())\n"
          "assert 'keras_signflip' not in sys.modules\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  for name in names:
    np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), want[name], rtol=1e-5,
                               atol=1e-5, err_msg=name)
