"""MirroredStrategy on two logical CPUs and the mixed_float16 policy."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tf
from tests import testing_utils as tu


def _run(strategy, optimizer, scope):
  x, y = tu.data()
  with strategy.scope():
    model = ksf.prune_sign_flip(
        tu.mlp(), pruning_schedule=ksf.tf_keras.schedules.GeometricSparsity(0.4, 4),
        criterion="hybrid", scope=scope)
    model.compile(optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  return list(ksf.masks(model).values()), list(ksf.flip_counts(model).values())


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("optimizer", [lambda: keras.optimizers.SGD(1.0),
                                       lambda: keras.optimizers.legacy.SGD(1.0)],
                         ids=["sgd", "legacy_sgd"])
def test_mirrored_matches_single_device(scope, optimizer):
  assert len(tf.config.list_logical_devices("CPU")) >= 2
  single = _run(tf.distribute.get_strategy(), optimizer, scope)
  # ReductionToOneDevice: CPU collectives clash between strategies in one process.
  mirrored = _run(tf.distribute.MirroredStrategy(
      ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()),
      optimizer, scope)
  for a, b in zip(single[0] + single[1], mirrored[0] + mirrored[1]):
    np.testing.assert_array_equal(a, b)
  assert max(1 - m.mean() for m in single[0]) > 0.5


def test_mixed_float16_keeps_flip_state_exact():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    x, y = tu.data()
    model = tu.compile_sgd(ksf.prune_sign_flip(
        tu.mlp(), pruning_schedule=ksf.tf_keras.schedules.GeometricSparsity(0.4, 4),
        criterion="hybrid"), lr=1.0)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[ksf.UpdatePruningStep()])
    for w in ksf.collect_wrappers(model):
      for s in w.flip_states:
        assert s.reference is None and s.flips.dtype == tf.int32  # hybrid reads no reference
        assert s.prev_sign.dtype == tf.int8 and s.mask.dtype == tf.float32
        assert not np.any(s.weight.numpy()[s.mask.numpy() == 0])
    assert max(1 - m.mean() for m in ksf.masks(model).values()) > 0.5
  finally:
    keras.mixed_precision.set_global_policy("float32")
