"""The Keras 3 family's old module and class names still import (this process's backend)."""
import importlib

import pytest

import keras

from keras_signflip import _old_names
from keras_signflip import families
from keras_signflip import keras3 as k3


@pytest.mark.parametrize("old", [o for o in _old_names.MOVED if o.startswith("keras3.")])
def test_old_module_names_are_the_new_modules(old):
  module = importlib.import_module(f"keras_signflip.{old}")
  assert module is importlib.import_module(_old_names.MOVED[old])


def test_old_names_and_the_family():
  from keras_signflip.keras3.callbacks import UpdatePruningStep  # pylint: disable=g-import-not-at-top
  from keras_signflip.keras3.optimizers import record_gradients  # pylint: disable=g-import-not-at-top
  from keras_signflip.keras3._keras import ops  # pylint: disable=g-import-not-at-top
  assert UpdatePruningStep is k3.UpdatePruningStep is k3.Keras3PruningStep
  assert record_gradients is k3.gradient_noise.record_gradients
  assert k3.FlipState is k3.PruningState and ops is keras.ops
  assert k3.callbacks is k3.pruning_step and k3._keras is k3._framework  # pylint: disable=protected-access
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  family = families.of(model)
  assert family is families.keras3() is families.of_keras(keras)
  assert family.update_pruning_step is k3.Keras3PruningStep
  assert families.of(keras.optimizers.SGD(0.1)) is family
