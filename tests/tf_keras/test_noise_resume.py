"""Targeted dropout, L0 and variational dropout (tf_keras) resume exactly from
every save format: the noise draws continue where they stopped."""
import numpy as np
import pytest

from keras_signflip.tf_keras import l0, targeted_dropout, variational
from keras_signflip.tf_keras._framework import keras
from tests import testing_utils as tu

WRAP = {
    "targeted_dropout": lambda m: targeted_dropout.targeted_dropout(m, rate=0.5, targeted=0.5,
                                                                    seed=3),
    "l0": lambda m: l0.l0_gates(m, strength=1e-3, seed=3),
    "variational": lambda m: variational.variational_dropout(m, strength=1e-3, seed=3),
}


def _model(method):
  model = WRAP[method](tu.mlp())
  model.compile(keras.optimizers.Adam(0.01),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def _fit(model, epochs=1):
  x, y = tu.data(n=64)
  model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False)


@pytest.mark.parametrize("fmt", ["keras", "h5", "checkpoint"])
@pytest.mark.parametrize("method", sorted(WRAP))
def test_training_resumed_from_a_file_equals_uninterrupted(method, fmt, tmp_path):
  uninterrupted = _model(method)
  _fit(uninterrupted, epochs=2)
  first = _model(method)
  _fit(first)
  if fmt == "checkpoint":
    first.save_weights(str(tmp_path / "ckpt"))
    resumed = _model(method)
    resumed.load_weights(str(tmp_path / "ckpt"))
  else:
    first.save(str(tmp_path / f"m.{fmt}"))
    resumed = keras.models.load_model(str(tmp_path / f"m.{fmt}"))
  _fit(resumed)
  for want, got in zip(uninterrupted.get_weights(), resumed.get_weights()):
    np.testing.assert_array_equal(got, want)
  if fmt == "keras":  # the draw count is what carries it: reset, step 1's noise comes back
    again = keras.models.load_model(str(tmp_path / "m.keras"))
    for layer in again.layers:
      if hasattr(layer, "noise_draws"):
        layer.noise_draws.assign(0)
    _fit(again)
    assert not all(np.array_equal(a, b) for a, b in zip(again.get_weights(),
                                                        uninterrupted.get_weights()))
