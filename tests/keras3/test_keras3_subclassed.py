"""Subclassed and nested Keras 3 models, on the backend this process runs (issue 30, goal 1).

A subclassed model is wrapped in place (keras3/sublayers.py): layers it holds in
attributes, lists, dicts and custom blocks. References: TF-MOT's kept count, the
plain model's own predictions, the weights saved before a resume.
"""
import numpy as np
import pytest

import keras
from keras import ops

import keras_signflip as ksf
from keras_signflip import criteria
from keras_signflip import keras3 as k3

L = keras.layers
BACKEND = keras.backend.backend()


def _np(x):
  return np.asarray(ops.convert_to_numpy(x))


def _kept(n, sparsity):
  return int(max(np.round(np.float32(n) * (np.float32(1) - np.float32(sparsity))), 1))


class Block(L.Layer):
  """A residual block of two Dense layers: not prunable itself, it holds prunable layers."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.a, self.b = L.Dense(8, activation="tanh"), L.Dense(8)

  def call(self, x):
    return x + self.b(self.a(x))


class Net(keras.Model):
  """Layers in an attribute, a list of blocks and a dict."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.stem = L.Dense(8)
    self.blocks = [Block(), Block()]
    self.heads = {"out": L.Dense(3)}

  def call(self, x):
    x = self.stem(x)
    for block in self.blocks:
      x = block(x)
    return self.heads["out"](x)


X = np.random.RandomState(0).randn(64, 6).astype("float32")
Y = np.random.RandomState(1).randint(0, 3, 64)
KERNELS = 6  # stem, two blocks of two, the head


def _net(cls=Net):
  keras.utils.set_random_seed(0)
  model = cls()
  model(X[:1])
  return model


def _pruned(criterion="hybrid", scope="layer", begin=0):
  model = ksf.prune_sign_flip(_net(), criterion=criterion, scope=scope,
                              pruning_schedule=k3.schedules.ConstantSparsity(0.5, begin,
                                                                              frequency=1))
  optimizer = keras.optimizers.SGD(0.1)
  if criteria.get(criterion).uses_gradients:
    optimizer = ksf.record_gradients(optimizer)
  # A few steps: on TensorFlow's backend, tracing them would take longer than running them.
  model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=BACKEND == "tensorflow")
  return model


def _fit(model, steps=3):
  model.fit(X[:16 * steps], Y[:16 * steps], batch_size=16, epochs=1, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])


# Every criterion at layer scope on TensorFlow's backend; elsewhere, and at global scope (whose
# selection the conformance cases check on every backend), four of them: no state, flips,
# a reference and recorded gradients. Global Random is the layer case (each tensor apart).
_FOUR = ["magnitude", "hybrid", "movement", "saliency"]
_CASES = [(criterion, scope) for scope in ("layer", "global")
          for criterion in (sorted(criteria.CRITERIA)
                            if (BACKEND, scope) == ("tensorflow", "layer") else _FOUR)]


@pytest.mark.parametrize("criterion,scope", _CASES)
def test_every_layer_it_holds_is_wrapped_in_place_and_pruned(criterion, scope):
  gradients = criteria.get(criterion).uses_gradients
  model = _pruned(criterion, scope, begin=2 if gradients else 0)
  wrappers = k3.collect_wrappers(model)
  assert len(wrappers) == KERNELS
  assert isinstance(model.stem, k3.PruneSignFlip)
  assert all(isinstance(b.a, k3.PruneSignFlip) for b in model.blocks)
  assert isinstance(model.heads["out"], k3.PruneSignFlip)
  _fit(model)
  masks = [_np(s.mask) for s in k3.flip_states(model)]
  if scope == "layer":
    assert [int(m.sum()) for m in masks] == [_kept(m.size, 0.5) for m in masks]
  else:
    assert sum(int(m.sum()) for m in masks) == _kept(sum(m.size for m in masks), 0.5)
  for s in k3.flip_states(model):
    assert not np.any(_np(s.weight)[_np(s.mask) == 0])


def test_resumes_from_saved_weights_into_a_model_wrapped_the_same_way(tmp_path):
  model = _pruned()
  _fit(model)
  path = str(tmp_path / "run.weights.h5")
  model.save_weights(path)
  resumed = _pruned()
  resumed.load_weights(path)
  for a, b in zip(k3.flip_states(resumed), k3.flip_states(model)):
    for name in ("weight", "mask", "flips", "prev_sign"):
      np.testing.assert_array_equal(_np(getattr(a, name)), _np(getattr(b, name)))
  before = [_np(s.weight) for s in k3.flip_states(resumed)]
  _fit(resumed)  # trains on, still pruned
  for s, w in zip(k3.flip_states(resumed), before):
    assert not np.array_equal(_np(s.weight), w)
    assert int(_np(s.mask).sum()) == _kept(w.size, 0.5)


def test_strip_gives_back_the_plain_model_with_the_pruned_weights():
  model = _pruned()
  plain_weights = len(_net().weights)
  _fit(model)
  want = model.predict(X, verbose=0)
  stripped = ksf.strip_pruning(model)
  assert stripped is model  # Keras cannot copy a subclassed model: stripped in place
  assert not k3.collect_wrappers(stripped) and isinstance(stripped.stem, L.Dense)
  assert len(stripped.weights) == plain_weights
  np.testing.assert_allclose(stripped.predict(X, verbose=0), want, rtol=1e-6, atol=1e-6)
  kernels = [stripped.stem.kernel] + [l.kernel for b in stripped.blocks for l in (b.a, b.b)]
  assert all(np.mean(_np(k) == 0) >= 0.5 for k in kernels)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="model.export SavedModel: TF backend")
def test_exports_and_serves_in_tensorflow(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = _pruned()
  _fit(model)
  want = model.predict(X, verbose=0)
  ksf.export_saved_model(model, str(tmp_path / "export"), verbose=False)
  served = tf.saved_model.load(str(tmp_path / "export"))
  np.testing.assert_allclose(served.serve(X).numpy(), want, rtol=1e-5, atol=1e-5)


class WithTemperature(Net):
  def build(self, input_shape):
    self.temperature = self.add_weight(shape=(), name="temperature")


def test_a_weight_created_outside_a_layer_is_refused_by_name_before_any_change():
  model = _net(WithTemperature)
  with pytest.raises(ValueError, match=r"temperature.*outside any layer.*get_prunable_weights"):
    ksf.prune_sign_flip(model)
  assert not k3.collect_wrappers(model) and isinstance(model.stem, L.Dense)


def test_a_functional_model_inside_a_sequential_is_wrapped():
  keras.utils.set_random_seed(0)
  inputs = keras.Input((6,))
  inner = keras.Model(inputs, L.Dense(4, name="inner_fc")(inputs), name="inner")
  model = keras.Sequential([keras.Input((6,)), inner, L.Dense(3, name="out")])
  pruned = ksf.prune_sign_flip(model, pruning_schedule=k3.schedules.ConstantSparsity(
      0.5, 0, frequency=1))
  assert [w.layer.name for w in k3.collect_wrappers(pruned)] == ["inner_fc", "out"]
  pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  _fit(pruned, steps=1)
  stripped = ksf.strip_pruning(pruned)
  np.testing.assert_allclose(stripped.predict(X, verbose=0), pruned.predict(X, verbose=0),
                             rtol=1e-6, atol=1e-6)


def test_a_block_inside_a_functional_model_is_wrapped_and_stripped_to_a_copy():
  keras.utils.set_random_seed(0)
  inputs = keras.Input((6,))
  x = L.Dense(8, name="stem")(inputs)
  x = Block(name="block")(x)
  model = keras.Model(inputs, L.Dense(3, name="out")(x))
  pruned = ksf.prune_sign_flip(model, scope="global", pruning_schedule=k3.schedules.
                               ConstantSparsity(0.5, 0, frequency=1))
  block = pruned.get_layer("block")
  assert isinstance(block.a, k3.PruneSignFlip) and isinstance(block.b, k3.PruneSignFlip)
  assert len(k3.collect_wrappers(pruned)) == 4
  pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  _fit(pruned, steps=2)
  masks = [_np(s.mask) for s in k3.flip_states(pruned)]
  assert sum(int(m.sum()) for m in masks) == _kept(sum(m.size for m in masks), 0.5)
  want = pruned.predict(X, verbose=0)
  stripped = ksf.strip_pruning(pruned)
  assert not k3.collect_wrappers(stripped) and isinstance(stripped.get_layer("block").a, L.Dense)
  assert isinstance(block.a, k3.PruneSignFlip)  # the pruned model keeps its wrappers
  np.testing.assert_allclose(stripped.predict(X, verbose=0), want, rtol=1e-6, atol=1e-6)
