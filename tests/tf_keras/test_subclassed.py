"""Subclassed tf_keras models: refused whole (Keras clones only Sequential and
Functional models), pruned by wrapping their layers in `__init__`, globally ranked
once the callback links them. Reference: TF-MOT's kept count over all the kernels."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tfmot
from tests import testing_utils as tu

L = keras.layers


def _schedule():
  return tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1)


class Plain(keras.Model):
  def __init__(self):
    super().__init__()
    self.a, self.b = L.Dense(8, activation="tanh"), L.Dense(3)

  def call(self, x):
    return self.b(self.a(x))


class WrappedInside(keras.Model):
  """TF-MOT's recommendation: the layers wrapped where the model makes them."""

  def __init__(self, scope):
    super().__init__()
    self.a = ksf.prune_sign_flip(L.Dense(8, activation="tanh"), pruning_schedule=_schedule(),
                                 scope=scope)
    self.b = ksf.prune_sign_flip(L.Dense(3), pruning_schedule=_schedule(), scope=scope)

  def call(self, x):
    return self.b(self.a(x))


def test_a_subclassed_model_is_refused_with_the_way_out():
  with pytest.raises(ValueError, match=r"subclassed model \(Plain\).*inside the model"):
    ksf.prune_sign_flip(Plain())


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_layers_wrapped_inside_prune_at_either_scope(scope):
  keras.utils.set_random_seed(0)
  x, y = tu.data(n=64, features=6)
  model = WrappedInside(scope)
  model(x[:1])
  tu.compile_sgd(model, lr=0.1)
  model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  masks = [m for m in ksf.masks(model).values()]
  assert len(masks) == 2
  if scope == "layer":
    assert [int(m.sum()) for m in masks] == [tu.reference_kept(m.size, 0.5) for m in masks]
  else:
    assert sum(int(m.sum()) for m in masks) == tu.reference_kept(sum(m.size for m in masks), 0.5)
  stripped_kernel = model.a.layer.kernel.numpy()
  assert not np.any(stripped_kernel[masks[0] == 0])
