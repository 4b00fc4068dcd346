"""Save mid-training, load, continue == an uninterrupted run, in every format."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tf
from tests import testing_utils as tu

X, Y = tu.data()


def _make(momentum=0.9, criterion=None, fraction=0.3):
  model = ksf.prune_sign_flip(
      tu.mlp(), pruning_schedule=ksf.tf_keras.schedules.GeometricSparsity(fraction, 6),
      criterion=criterion or ksf.criteria.Movement(), scope="global")
  return tu.compile_sgd(model, lr=0.5, momentum=momentum)


def _fit(model, epochs):
  model.fit(X, Y, batch_size=32, epochs=epochs, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])


def _state(model):
  return [v.numpy() for v in model.weights]


def _assert_same(a, b):
  assert len(a) == len(b)
  for p, q in zip(a, b):
    np.testing.assert_array_equal(p, q)


@pytest.fixture(scope="module")
def uninterrupted():
  out = {}
  for momentum in (0.0, 0.9):
    m = _make(momentum)
    _fit(m, 2)
    _fit(m, 2)
    out[momentum] = _state(m)
  return out


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_whole_model_formats_continue_identically(tmp_path, uninterrupted, suffix):
  m = _make()
  _fit(m, 2)
  path = str(tmp_path / f"model{suffix}")
  m.save(path)
  with ksf.prune_scope():
    loaded = keras.models.load_model(path)
  assert isinstance(loaded.layers[0], ksf.PruneSignFlip)
  assert loaded.layers[0].criterion == ksf.criteria.Movement()
  assert loaded.layers[0].scope == "global"
  _assert_same(_state(m), _state(loaded))
  _fit(loaded, 2)
  _assert_same(uninterrupted[0.9], _state(loaded))


def test_recent_flips_window_resumes_exactly(tmp_path):
  """RecentFlips' extra count (flips_at_update) is saved and restored with the rest."""
  whole = _make(criterion="recent_flips", fraction=0.02)  # flippers outlast an update
  _fit(whole, 4)
  m = _make(criterion="recent_flips", fraction=0.02)
  _fit(m, 2)
  names = [v.name for v in m.weights if "flips_at_update" in v.name]
  assert len(names) == len(ksf.flip_states(m))
  assert any(v.numpy().any() for v in m.weights if v.name in names)
  m.save(str(tmp_path / "m.keras"))
  with ksf.prune_scope():
    loaded = keras.models.load_model(str(tmp_path / "m.keras"))
  _fit(loaded, 2)
  _assert_same(_state(whole), _state(loaded))


def test_savedmodel_format_restores_pruning_state(tmp_path, uninterrupted):
  # tf_keras' SavedModel format does not restore the optimizer's slots (also
  # for unpruned models), so continuation is compared with plain SGD.
  m = _make(momentum=0.0)
  _fit(m, 2)
  m.save(str(tmp_path / "saved"), save_format="tf")
  with ksf.prune_scope():
    loaded = keras.models.load_model(str(tmp_path / "saved"))
  _assert_same(_state(m), _state(loaded))
  _fit(loaded, 2)
  _assert_same(uninterrupted[0.0], _state(loaded))


def test_tf_checkpoint_continues_identically(tmp_path, uninterrupted):
  m = _make()
  _fit(m, 2)
  path = tf.train.Checkpoint(model=m, optimizer=m.optimizer).save(str(tmp_path / "ckpt"))
  fresh = _make()
  fresh.optimizer.build(fresh.trainable_variables)
  tf.train.Checkpoint(model=fresh, optimizer=fresh.optimizer).restore(path).assert_consumed()
  _fit(fresh, 2)
  _assert_same(uninterrupted[0.9], _state(fresh))


def test_checkpoints_hold_zero_pruned_weights_mid_epoch(tmp_path):
  m = _make()

  class SaveEveryStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      m.save_weights(str(tmp_path / "w.h5"))
      saved = keras.models.clone_model(m)
      saved.load_weights(str(tmp_path / "w.h5"))
      for w in ksf.collect_wrappers(saved):
        for s in w.flip_states:
          assert not np.any(s.weight.numpy()[s.mask.numpy() == 0])

  m.fit(X, Y, batch_size=32, epochs=2, verbose=0,
        callbacks=[ksf.UpdatePruningStep(), SaveEveryStep()])
  assert max(1 - mk.mean() for mk in ksf.masks(m).values()) > 0.3


def test_wrapper_config_round_trip():
  layer = ksf.prune_sign_flip(keras.layers.Dense(4), criterion=ksf.criteria.Hybrid(3),
                              pruning_schedule=ksf.tf_keras.schedules.GeometricSparsity(0.2, 5),
                              min_flips=2)
  rebuilt = ksf.PruneSignFlip.from_config(layer.get_config())
  assert rebuilt.get_config() == layer.get_config()
  assert rebuilt.criterion == ksf.criteria.Hybrid(3) and rebuilt.min_flips == 2


def test_tf_saved_model_of_a_freshly_wrapped_untrained_model(tmp_path):
  """tf.saved_model.save traces call(training=True); that is no training without the callback."""
  model = ksf.prune_sign_flip(tu.mlp(), criterion="magnitude")
  tf.saved_model.save(model, str(tmp_path / "sm"))
  loaded = tf.saved_model.load(str(tmp_path / "sm"))
  np.testing.assert_allclose(loaded(tf.constant(X[:4])), model(X[:4]), atol=1e-6)
  model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  with pytest.raises(ValueError, match="UpdatePruningStep"):  # fit still says what is missing
    model.fit(X, Y, epochs=1, verbose=0)


def test_reference_weights_only_where_the_criterion_reads_them_and_old_files_load(tmp_path):
  hybrid = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(), criterion="hybrid")
  movement = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(), criterion="movement")
  assert all(s.reference is None for s in ksf.flip_states(hybrid))
  assert all(s.reference is not None for s in ksf.flip_states(movement))
  # 5 bytes per weight for Hybrid (int8 sign + int32 count) beyond TF-MOT's mask;
  # a reference adds 4.
  extra = lambda m: sum(v.dtype.size * int(np.prod(v.shape))  # noqa: E731
                        for s in ksf.flip_states(m) for v in (s.prev_sign, s.flips, s.reference)
                        if v is not None)
  n = sum(int(np.prod(s.weight.shape)) for s in ksf.flip_states(hybrid))
  assert extra(hybrid) == 5 * n and extra(movement) == 9 * n
  # A config of 0.3.0 (no keep_reference) held reference weights: it gets them back.
  config = ksf.collect_wrappers(hybrid)[0].get_config()
  del config["keep_reference"]
  old = ksf.PruneSignFlip.from_config(config)
  old.build((None, 8))
  assert all(s.reference is not None for s in old.flip_states)
  with pytest.raises(ValueError, match="reads the reference"):
    ksf.prune_sign_flip(tu.mlp(), criterion="movement", keep_reference=False)


def test_score_normalization_round_trips_and_needs_global_scope(tmp_path):
  model = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(), scope="global",
                              score_normalization="l2")
  tu.compile_sgd(model)
  path = str(tmp_path / "n.keras")
  model.save(path)
  with ksf.prune_scope():
    loaded = keras.models.load_model(path)
  assert all(w.score_normalization == "l2" for w in ksf.collect_wrappers(loaded))
  with pytest.raises(ValueError, match="scope='global'"):
    ksf.prune_sign_flip(tu.mlp(), score_normalization="l2", scope="layer")
  with pytest.raises(ValueError, match="score_normalization"):
    ksf.prune_sign_flip(tu.mlp(), scope="global", score_normalization="max")
