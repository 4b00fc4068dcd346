"""Every common layer on the Keras 3 family, on the backend this process runs: RNNs,
Bidirectional, TimeDistributed, MultiHeadAttention, EinsumDense, Conv1D/3D, depthwise
and separable convolutions, and the proof models (models.transformer_tiny, bilstm_tiny).

Started once per backend by tests/test_keras3.py. References: the weights each layer
holds, named by Keras; TF-MOT's kept count; flips recounted in NumPy around every step.
"""
import numpy as np
import pytest

import keras
from keras import ops

import keras_signflip as ksf
from keras_signflip import criteria
from keras_signflip import models
from keras_signflip import keras3 as k3

L = keras.layers
BACKEND = keras.backend.backend()


def _np(x):
  return np.asarray(ops.convert_to_numpy(x))


def _kept(n, sparsity):
  """TF-MOT's kept count, in float32 with round-half-to-even."""
  return int(max(np.round(np.float32(n) * (np.float32(1) - np.float32(sparsity))), 1))


def _every_layer():
  keras.utils.set_random_seed(0)
  x = inputs = keras.Input((12, 6))
  # Inner layers named: their auto-names would depend on what the process built before.
  x = L.Bidirectional(L.LSTM(4, return_sequences=True, name="lstm"), name="bi")(x)
  x = L.TimeDistributed(L.Dense(6, name="dense"), name="td")(x)
  x = L.MultiHeadAttention(2, 3, name="mha")(x, x)
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


# What each layer holds (Keras' own paths; Keras 3 calls the depthwise kernel `kernel`).
EVERY_LAYER_PRUNED = [
    "bi/forward_lstm/lstm_cell/kernel", "bi/forward_lstm/lstm_cell/recurrent_kernel",
    "bi/backward_lstm/lstm_cell/kernel", "bi/backward_lstm/lstm_cell/recurrent_kernel",
    "td/dense/kernel", "mha/query/kernel", "mha/key/kernel", "mha/value/kernel",
    "mha/attention_output/kernel", "ein/kernel", "c1/kernel", "sep1/depthwise_kernel",
    "sep1/pointwise_kernel", "dw1/kernel", "dw2/kernel", "sep2/depthwise_kernel",
    "sep2/pointwise_kernel", "c3/kernel", "gru/gru_cell/kernel", "gru/gru_cell/recurrent_kernel",
    "out/kernel"]


def test_every_layer_prunes_saves_and_strips(tmp_path):
  model = ksf.prune_sign_flip(_every_layer(), criterion="random",
                              pruning_schedule=k3.schedules.ConstantSparsity(0.5, 0, frequency=1))
  model.compile(keras.optimizers.SGD(0.1),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  rng = np.random.RandomState(1)
  x, y = rng.randn(32, 12, 6).astype("float32"), rng.randint(0, 3, 32)
  model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  states = k3.flip_states(model)
  assert [s.weight.path for s in states] == EVERY_LAYER_PRUNED
  for s in states:
    weight, mask = _np(s.weight), _np(s.mask)
    assert mask.sum() == _kept(mask.size, 0.5), s.weight.path
    assert not np.any(weight[mask == 0])
  keys = [s.key for s in states]
  assert len(set(keys)) == len(keys)  # Random scores each tensor apart
  want = model.predict(x, verbose=0)
  np.testing.assert_allclose(ksf.strip_pruning(model).predict(x, verbose=0), want,
                             rtol=1e-5, atol=1e-6)
  model.save(str(tmp_path / "m.keras"))
  loaded = keras.models.load_model(str(tmp_path / "m.keras"))
  np.testing.assert_allclose(loaded.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
  for a, b in zip(k3.flip_states(loaded), states):
    np.testing.assert_array_equal(_np(a.mask), _np(b.mask))


def test_an_unknown_layer_is_refused_by_name_with_the_way_out():
  class Custom(L.Layer):
    def build(self, input_shape):
      self.w = self.add_weight(shape=(input_shape[-1], 2))

    def call(self, x):
      return ops.matmul(x, self.w)

  model = keras.Sequential([keras.Input((3, 4)), L.TimeDistributed(Custom(), name="odd"),
                            L.Flatten(), L.Dense(2, name="fc")])
  # Left unwrapped, as every layer without known weights (Flatten, LayerNormalization).
  assert [w.layer.name for w in k3.collect_wrappers(ksf.prune_sign_flip(model))] == ["fc"]
  with pytest.raises(ValueError, match=r"Layer odd \(TimeDistributed\) cannot be pruned.*"
                                       r"get_prunable_weights"):
    ksf.prune_sign_flip(model.get_layer("odd"))


def _proof(name, criterion, steps=2, callbacks=(), begin=0, lr=0.01, sparsity=0.9):
  """`name` pruned to `sparsity` by `criterion` at every step from step `begin`,
  trained `steps` steps of 16 Fashion-MNIST-shaped rows (28 tokens of 28 features)."""
  keras.utils.set_random_seed(0)
  model = ksf.prune_sign_flip(models.get(name, keras)((28, 28), 10), criterion=criterion,
                              pruning_schedule=k3.schedules.ConstantSparsity(
                                  sparsity, begin, frequency=1))
  optimizer = keras.optimizers.Adam(lr)
  if criteria.get(criterion).uses_gradients:
    optimizer = ksf.record_gradients(optimizer)
  # A few steps: on TensorFlow's backend, tracing them would take longer than running them.
  model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=BACKEND == "tensorflow")
  rng = np.random.RandomState(0)
  x, y = rng.rand(16 * steps, 28, 28).astype("float32"), rng.randint(0, 10, 16 * steps)
  model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), *callbacks])
  return model, x


# Every criterion once, on PyTorch's backend (eager: the cheapest to run) and the
# transformer; everywhere else one reading flips and one reading recorded gradients (the
# two kinds of state a backend keeps between steps). Each criterion's masks are checked on
# every backend by the conformance cases (test_keras3_path.py); this sweep checks the
# layers train under each.
_ALL = sorted(criteria.CRITERIA)
_CASES = [(name, criterion) for name in ("transformer_tiny", "bilstm_tiny")
          for criterion in (_ALL if (BACKEND, name) == ("torch", "transformer_tiny")
                            else ["hybrid", "saliency"])]


@pytest.mark.parametrize("name,criterion", _CASES)
def test_proof_models_prune_to_90_percent(name, criterion):
  # Gradient criteria rank recorded gradients: their first update comes after two steps
  # (the update of pruning step 1 runs before the first optimizer step).
  gradients = criteria.get(criterion).uses_gradients
  model, _ = _proof(name, criterion, steps=3 if gradients else 2, begin=2 if gradients else 0)
  states = k3.flip_states(model)
  assert len(states) == {"transformer_tiny": 8, "bilstm_tiny": 6}[name]
  for s in states:
    mask = _np(s.mask)
    assert mask.sum() == _kept(mask.size, 0.9), s.weight.path
    assert not np.any(_np(s.weight)[mask == 0])


class _Weights(keras.callbacks.Callback):
  """The attention kernels and their masks before training and after every step."""

  def on_train_begin(self, logs=None):
    self.states = [s for s in k3.flip_states(self.model) if "attention/" in s.weight.path]
    self.steps = [self._take()]

  def _take(self):
    return [(_np(s.weight), _np(s.mask)) for s in self.states]

  def on_train_batch_end(self, batch, logs=None):
    self.model  # pylint: disable=pointless-statement  (syncs JAX's state)
    self.steps.append(self._take())


def test_attention_flips_equal_a_numpy_recount():
  recorder = _Weights()
  # Half pruned from step 3: flips before pruning, reset where pruned, then go on.
  model, _ = _proof("transformer_tiny", "hybrid", steps=6, callbacks=[recorder], begin=3,
                    lr=0.1, sparsity=0.5)
  assert len(recorder.states) == 4  # query, key, value, output
  flips = ksf.flip_counts(model)
  for i, s in enumerate(recorder.states):
    expected = np.zeros(s.flips.shape, np.int64)
    for before, after in zip(recorder.steps, recorder.steps[1:]):
      (w0, m0), (w1, m1) = before[i], after[i]
      expected = expected * (m1 > 0) + ((np.sign(w0 * m0) * np.sign(w1 * m1)) < 0)
    np.testing.assert_array_equal(flips[s.weight.path], expected)
  assert sum(int(flips[s.weight.path].sum()) for s in recorder.states) > 0, "vacuous"


@pytest.mark.skipif(BACKEND != "tensorflow", reason="model.export SavedModel: TF backend")
@pytest.mark.parametrize("name", ["transformer_tiny", "bilstm_tiny"])
def test_proof_model_exports_and_serves_in_tensorflow(name, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model, x = _proof(name, "hybrid")
  want = ksf.strip_pruning(model).predict(x, verbose=0)
  ksf.export_saved_model(model, str(tmp_path / "export"), verbose=False)
  served = tf.saved_model.load(str(tmp_path / "export"))
  np.testing.assert_allclose(served.serve(x).numpy(), want, rtol=1e-5, atol=1e-5)
