"""Bad input raises a clear error before anything is wrapped or changed."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tf, tfmot
from tests import testing_utils as tu


def _unchanged(model):
  return all(l.kernel.constraint is None for l in model.layers)


@pytest.mark.parametrize("kwargs,match", [
    (dict(criterion="nope"), "criterion.*Received: criterion='nope'"),
    (dict(scope="model"), "scope.*Received: scope='model'"),
    (dict(min_flips=0), "min_flips.*Received: min_flips=0"),
    (dict(min_flips=1.5), "min_flips"),
    (dict(pruning_schedule=0.5), "pruning_schedule"),
    (dict(scope="global", block_size=(2, 2)), "block_size"),
    (dict(min_flips=2, sparsity_m_by_n=(2, 4)), "min_flips"),
])
def test_bad_arguments(kwargs, match):
  model = tu.mlp()
  with pytest.raises(ValueError, match=match):
    ksf.prune_sign_flip(model, **kwargs)
  assert _unchanged(model)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval(sparsity):
  with pytest.raises(ValueError):
    ksf.prune_sign_flip(tu.mlp(),
                        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(sparsity, 0))
  with pytest.raises(ValueError, match="max_sparsity"):
    ksf.tf_keras.schedules.GeometricSparsity(0.5, 1, max_sparsity=sparsity)


def test_keras3_model_goes_to_the_keras3_path_not_tfmot():
  import keras as keras3  # pylint: disable=g-import-not-at-top
  if not keras3.__version__.startswith("3"):
    pytest.skip("Keras 3 is not installed")
  from keras_signflip.tf_keras import prune as tf_keras_path  # pylint: disable=g-import-not-at-top
  model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
  with pytest.raises(ValueError, match="Keras 3.*keras_signflip.keras3"):
    tf_keras_path.prune_sign_flip(model)
  wrapped = ksf.prune_sign_flip(model)
  assert type(wrapped.layers[0]).__module__ == "keras_signflip.keras3.wrapper"
  assert (type(ksf.prune_sign_flip(keras3.layers.Dense(2))).__module__
          == "keras_signflip.keras3.wrapper")


def test_unsupported_layer_fails_before_wrapping():
  class Custom(keras.layers.Layer):
    def build(self, shape):
      self.w = self.add_weight("w", shape=(shape[-1], 2))

    def call(self, x):
      return x @ self.w
  inputs = keras.Input((8,))
  first = keras.layers.Dense(4)
  model = keras.Model(inputs, Custom()(first(inputs)))
  with pytest.raises(ValueError, match="cannot be pruned.*PrunableLayer"):
    ksf.prune_sign_flip(model)
  assert first.kernel.constraint is None


def test_global_scope_needs_built_model():
  model = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(2)])
  with pytest.raises(ValueError, match="built"):
    ksf.prune_sign_flip(model, scope="global")


def test_training_without_update_pruning_step():
  x, y = tu.data()
  model = tu.compile_sgd(ksf.prune_sign_flip(tu.mlp()))
  with pytest.raises(ValueError, match="UpdatePruningStep"):
    model.fit(x, y, epochs=1, verbose=0)


def test_nan_weights_refused_before_training():
  x, y = tu.data()
  model = tu.compile_sgd(ksf.prune_sign_flip(tu.mlp(), criterion="magnitude"))
  state = ksf.collect_wrappers(model)[0].flip_states[0]
  w = state.weight.numpy()
  w[0, 0] = np.nan
  state.weight.assign(w)
  masks_before = [m.copy() for m in ksf.masks(model).values()]
  with pytest.raises(ValueError, match="NaN"):
    model.fit(x, y, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  for a, b in zip(masks_before, ksf.masks(model).values()):
    np.testing.assert_array_equal(a, b)


def test_nan_weights_at_mask_update_stop_without_changing_masks():
  model = ksf.prune_sign_flip(
      tu.mlp(), criterion="magnitude",
      pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1))
  state = ksf.collect_wrappers(model)[0].flip_states[0]
  w = state.weight.numpy()
  w[1, 1] = np.inf
  state.weight.assign(w)
  ksf.collect_wrappers(model)[0].pruning_step.assign(1)
  with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
    ksf.collect_wrappers(model)[0].pruning_obj.conditional_mask_update()
  assert state.mask.numpy().min() == 1.0


def test_unlinked_global_wrapper_says_how_to_link():
  layer = ksf.PruneSignFlip(keras.layers.Dense(2), scope="global")
  with pytest.raises(ValueError, match="link_global"):
    layer.global_group()
