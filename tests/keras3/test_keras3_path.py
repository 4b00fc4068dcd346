"""The Keras 3 path on the backend this process runs (KERAS_BACKEND).

Started once per backend by tests/test_keras3.py. References are NumPy
recounts and NumPy statements of the rules, never the code under test.
"""
import os

import numpy as np
import pytest

import keras
from keras import ops

import keras_signflip as ksf
from keras_signflip import criteria
from keras_signflip import keras3 as k3
from keras_signflip.keras3 import state as state_lib
from tests.keras3 import conformance

BACKEND = keras.backend.backend()


def _np(x):
  return np.asarray(ops.convert_to_numpy(x))


def _compute(arrays, name, scope, sparsity, min_flips, normalization=None):
  var = lambda value, dtype: keras.Variable(value, dtype=dtype, trainable=False)  # noqa: E731
  states = [state_lib.FlipState(
      weight=var(w, "float32"), mask=var(m, "float32"), threshold=var(0.0, "float32"),
      prev_sign=var(np.sign(w).astype(np.int8), "int8"), flips=var(f, "int32"),
      reference=var(r, "float32"), key=i, flips_at_update=var(a, "int32"))
      for i, (w, m, f, r, a) in enumerate(arrays)]
  groups = [states] if scope == "global" else [[s] for s in states]
  out = []
  for group in groups:
    masks, _ = k3.mask_update.compute_masks(group, sparsity, criteria.get(name), min_flips,
                                            normalization=normalization)
    out += [_np(m) for m in masks]
  return out


def test_conformance_masks_equal_numpy_reference():
  got = conformance.run(_compute)
  for case in conformance.cases():
    for g, e in zip(got[case[0]], conformance.reference_masks(case)):
      np.testing.assert_array_equal(g, e, err_msg=case[0])
  out = os.environ.get("KSF_CONFORMANCE_OUT")
  if out:
    np.savez(os.path.join(out, f"{BACKEND}.npz"),
             **{f"{k}|{i}": m for k, ms in got.items() for i, m in enumerate(ms)})


def _data(n=192, seed=0):
  rng = np.random.RandomState(seed)
  return rng.randn(n, 8).astype("float32"), rng.randint(0, 3, n)


def _base(seed=3):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="h1"),
                           keras.layers.Dense(12, activation="tanh", name="h2"),
                           keras.layers.Dense(3, name="out")])


def _model(schedule, criterion="hybrid", scope="global", min_flips=None, seed=3,
           optimizer=None):
  keras.utils.set_random_seed(seed)
  # Named layers: `Random` is keyed by weight name, so equal names, equal scores.
  base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="h1"),
                           keras.layers.Dense(12, activation="tanh", name="h2"),
                           keras.layers.Dense(3, name="out")])
  model = ksf.prune_sign_flip(base, pruning_schedule=schedule, criterion=criterion,
                              scope=scope, min_flips=min_flips)
  model.compile(optimizer or keras.optimizers.Adam(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


class _Snapshots(keras.callbacks.Callback):
  """(weights, masks) of every wrapped weight before training and after each step."""

  def on_train_begin(self, logs=None):
    self.states = k3.flip_states(self.model)
    self.seen = [self._take()]

  def _take(self):
    return [(_np(s.weight), _np(s.mask)) for s in self.states]

  def on_train_batch_end(self, batch, logs=None):
    self.model  # pylint: disable=pointless-statement  (syncs JAX's state)
    self.seen.append(self._take())


def _recount(seen):
  """NumPy: flips while unpruned, from the snapshots around every step."""
  flips = [np.zeros(w.shape, np.int32) for w, _ in seen[0]]
  for before, after in zip(seen, seen[1:]):
    for j, ((w0, _), (w1, m)) in enumerate(zip(before, after)):
      flips[j] = flips[j] * (m > 0) + ((np.sign(w0 * m) * np.sign(w1 * m)) < 0)
  return flips


def test_count_rule_equals_numpy_on_every_sign_pair_with_signed_zeros():
  # Every (previous sign, new value) pair, -0.0 included: moving to or from
  # zero is no flip, and the new sign of -0.0 is 0.
  values = np.array([-2.5, -0.0, 0.0, 3.0, -1e-30, 7e3], np.float32)
  prev = np.array([-1, 0, 1], np.int8)
  masked = np.tile(values, prev.size).reshape(prev.size, values.size)
  prev_sign = np.repeat(prev, values.size).reshape(prev.size, values.size)
  flips = np.arange(masked.size, dtype=np.int32).reshape(masked.shape)
  new_flips, new_sign = state_lib.counted(ops.convert_to_tensor(masked),
                                          ops.convert_to_tensor(prev_sign),
                                          ops.convert_to_tensor(flips))
  expected_sign = np.sign(masked).astype(np.int8)
  np.testing.assert_array_equal(_np(new_sign), expected_sign)
  assert _np(new_sign).dtype == np.int8
  np.testing.assert_array_equal(
      _np(new_flips), flips + (prev_sign.astype(np.int32) * expected_sign < 0))


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_fit_flips_equal_numpy_recount_and_pruned_weights_stay_zero(scope):
  schedule = k3.schedules.PolynomialDecay(0.1, 0.5, begin_step=6, end_step=30, frequency=4)
  # Momentum: pruned weights stay zero only if their slots are zeroed too.
  model = _model(schedule, scope=scope, optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
  snaps = _Snapshots()
  x, y = _data()
  model.fit(x, y, batch_size=32, epochs=6, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), snaps])
  counts = list(ksf.flip_counts(model).values())
  expected = _recount(snaps.seen)
  assert sum(int(c.sum()) for c in expected) > 0, "no flips: the test would be vacuous"
  for c, e in zip(counts, expected):
    np.testing.assert_array_equal(c, e)
  previous = None
  for step in snaps.seen[1:]:
    for w, m in step:
      assert np.all(w[m == 0] == 0)
    if previous is not None:  # monotone masks
      for (_, m0), (_, m1) in zip(previous, step):
        assert np.all(m1 <= m0)
    previous = step
  final = [m for _, m in snaps.seen[-1]]
  sparsity = float(schedule(30)[1])
  if scope == "global":
    total = sum(m.size for m in final)
    assert sum(int(m.sum()) for m in final) == k3.selection.kept_count(total, sparsity)
  else:
    for m in final:
      assert int(m.sum()) == k3.selection.kept_count(m.size, sparsity)


def test_flip_triggered_prunes_flippers():
  model = _model(k3.schedules.ConstantSparsity(0.9, 0, frequency=6), criterion="sign_flip",
                 scope="layer", min_flips=1)
  x, y = _data()
  model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  report = ksf.sparsity_report(model)
  assert 0.0 < report["overall"] <= 0.9
  for s in k3.flip_states(model):
    # Kept weights flipped fewer than min_flips times since the last update.
    assert np.all(_np(s.weight)[_np(s.mask) == 0] == 0)


def _fit(model, x, y, epochs=1):
  model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])


@pytest.mark.parametrize("criterion", ["hybrid", "recent_flips"])
def test_save_mid_training_load_continues_identically(tmp_path, criterion):
  model = _model(k3.schedules.GeometricSparsity(0.3, frequency=4), criterion=criterion)
  x, y = _data()
  _fit(model, x, y)
  path = str(tmp_path / "mid.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  assert [type(l).__name__ for l in loaded.layers] == ["PruneSignFlip"] * 3
  _fit(model, x, y)
  _fit(loaded, x, y)
  for a, b in zip(k3.flip_states(model), k3.flip_states(loaded)):
    for name in ("weight", "mask", "flips", "prev_sign", "reference", "threshold") + (
        ("flips_at_update",) if criterion == "recent_flips" else ()):
      np.testing.assert_array_equal(_np(getattr(a, name)), _np(getattr(b, name)), err_msg=name)
  assert loaded.layers[0].criterion == criteria.get(criterion)
  assert loaded.layers[0].pruning_schedule == k3.schedules.GeometricSparsity(0.3, frequency=4)


def test_strip_pruning_gives_plain_model_with_same_predictions(tmp_path):
  model = _model(k3.schedules.ConstantSparsity(0.7, 0, frequency=2))
  x, y = _data()
  _fit(model, x, y)
  stripped = ksf.strip_pruning(model)
  assert not any(isinstance(l, k3.PruneSignFlip) for l in stripped.layers)
  np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0),
                             rtol=1e-6, atol=1e-6)
  kernels = [_np(l.kernel) for l in stripped.layers]
  assert 0.65 < sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)
  path = str(tmp_path / "plain.keras")
  stripped.save(path)
  with keras.saving.custom_object_scope({}):
    plain = keras.saving.load_model(path)
  np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="model.export SavedModel: TF backend")
def test_export_saved_model_serves_the_pruned_model(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = _model(k3.schedules.ConstantSparsity(0.8, 0, frequency=2))
  x, y = _data()
  _fit(model, x, y)
  out = str(tmp_path / "export")
  report = k3.export.export_saved_model(model, out, verbose=False)
  assert report["overall"] > 0.75
  served = tf.saved_model.load(out)
  np.testing.assert_allclose(served.serve(x).numpy(), model.predict(x, verbose=0),
                             rtol=1e-5, atol=1e-5)


def test_schedules_need_no_tfmot_and_accept_tfmot_configs():
  s = k3.schedules.get({"class_name": "PolynomialDecay", "config": dict(
      initial_sparsity=0.1, final_sparsity=0.9, begin_step=0, end_step=100, power=3,
      frequency=10)})
  assert s(10)[0] and not s(11)[0]
  assert s(100)[1] == np.float32(0.9)
  with pytest.raises(ValueError, match="pruning_schedule"):
    k3.schedules.get("constant")


def test_bad_input_errors_before_any_change():
  x, y = _data()
  model = _model(k3.schedules.ConstantSparsity(0.5, 0, frequency=1))
  kernel = k3.flip_states(model)[0].weight
  bad = _np(kernel).copy()
  bad[0, 0] = np.nan
  kernel.assign(bad)
  with pytest.raises(ValueError, match="NaN"):
    _fit(model, x, y)
  assert np.all(_np(k3.flip_states(model)[0].mask) == 1)
  with pytest.raises(ValueError, match="scope"):
    ksf.prune_sign_flip(keras.layers.Dense(2), scope="model")
  with pytest.raises(ValueError, match="cannot be pruned"):
    ksf.prune_sign_flip(keras.layers.Dropout(0.5))
  with pytest.raises(ValueError, match="block_size"):
    ksf.prune_sign_flip(keras.layers.Dense(2), block_size=(2, 2))

  class Sub(keras.Model):  # subclassed models are wrapped in place, but not their own weights
    def build(self, input_shape):
      self.scale = self.add_weight(shape=())

    def call(self, x):
      return x * self.scale

  sub = Sub()
  sub(np.zeros((1, 2), "float32"))
  with pytest.raises(ValueError, match="outside any layer"):
    ksf.prune_sign_flip(sub)


def test_lottery_loop_rewinds_and_reinitialises(tmp_path):
  tf = pytest.importorskip("tensorflow")
  from keras_signflip import lottery  # pylint: disable=g-import-not-at-top
  x, y = _data(256)

  def make_model():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3)])

  def compile_model(m):
    m.compile(keras.optimizers.Adam(0.01),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])

  data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
  config = lottery.LotteryConfig(rounds=2, epochs=1, prune_rate=0.5, prune_rate_output=0.5,
                                 criterion="magnitude", modes=("rewind", "random"),
                                 rewind_step=2)
  results = lottery.run(make_model, compile_model, lambda r, e: data, data, data,
                        config, str(tmp_path), log=lambda *a: None)
  remaining = [r["weights_remaining_pct"] for r in results if r["mode"] == "rewind"]
  np.testing.assert_allclose(remaining, [100.0, 50.0, 25.0], atol=0.5)
  masks2 = lottery.load_masks(lottery.RunFiles(str(tmp_path)).masks(2))
  assert [int(m.sum()) for m in masks2] == [32, 12]
  assert {r["mode"] for r in results} == {"rewind", "random"}


def test_strip_and_export_mid_training_leave_the_wrapped_model_counting(tmp_path):
  model = _model(k3.schedules.ConstantSparsity(0.6, 0, frequency=3),
                 optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
  x, y = _data()
  _fit(model, x, y)
  stripped = ksf.strip_pruning(model)
  if BACKEND == "tensorflow":
    ksf.export_saved_model(model, str(tmp_path / "export"), verbose=False)
  before = [_np(w) for w in model.weights]
  stripped.compile(keras.optimizers.SGD(0.5), "mse")  # training the copy touches nothing
  stripped.fit(x, np.zeros((len(x), 3), "float32"), epochs=1, verbose=0)
  for a, b in zip(before, model.weights):
    np.testing.assert_array_equal(a, _np(b))
  model.compile(keras.optimizers.SGD(0.5, momentum=0.9),  # recompiled, as after an export
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  start = [_np(f) for f in ksf.flip_counts(model).values()]
  snaps = _Snapshots()
  model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), snaps])
  grown = [_np(f) - s for f, s in zip(ksf.flip_counts(model).values(), start)]
  expected = _recount(snaps.seen)
  assert sum(int(e.sum()) for e in expected) > 0, "no flips: the test would be vacuous"
  for g, e, (_, m) in zip(grown, expected, snaps.seen[-1]):
    np.testing.assert_array_equal(g * (m > 0), e)
  for step in snaps.seen[1:]:
    for w, m in step:
      assert np.all(w[m == 0] == 0)


@pytest.mark.parametrize("checkpoint_first", [True, False])
def test_resume_from_checkpoint_is_exact_whatever_the_callback_order(tmp_path, checkpoint_first):
  x, y = _data()

  def callbacks(path):
    checkpoint = keras.callbacks.ModelCheckpoint(str(path))
    pruning = ksf.UpdatePruningStep()
    return [checkpoint, pruning] if checkpoint_first else [pruning, checkpoint]

  def fit(model, path, epochs, initial_epoch=0):
    model.fit(x, y, batch_size=32, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=callbacks(path))

  # Random keeps weights that flip (magnitude criteria prune them, zeroing their counts).
  schedule = k3.schedules.PolynomialDecay(0.1, 0.3, begin_step=2, end_step=30, frequency=3)
  whole = _model(schedule, criterion="random")
  fit(whole, tmp_path / "whole.keras", epochs=4)
  first = _model(schedule, criterion="random")
  fit(first, tmp_path / "cut.keras", epochs=2)
  resumed = keras.saving.load_model(str(tmp_path / "cut.keras"))
  fit(resumed, tmp_path / "cut.keras", epochs=4, initial_epoch=2)
  want, got = ksf.flip_counts(whole), ksf.flip_counts(resumed)
  assert sum(int(v.sum()) for v in want.values()) > 0
  for a, b in zip(want.values(), got.values()):
    np.testing.assert_array_equal(b, a)
  for a, b in zip(k3.flip_states(whole), k3.flip_states(resumed)):
    np.testing.assert_array_equal(_np(a.weight), _np(b.weight))
    np.testing.assert_array_equal(_np(a.mask), _np(b.mask))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="JAX: tests/test_keras3_data_parallel.py; "
                    "PyTorch: Keras cannot make a DataParallel distribution there")
def test_multi_device_training_where_the_backend_cannot_is_a_clear_error():
  x, y = _data()
  model = _model(k3.schedules.ConstantSparsity(0.5, 0, frequency=2))
  before = [_np(s.mask) for s in k3.flip_states(model)]
  keras.distribution.set_distribution(keras.distribution.DataParallel())
  try:
    with pytest.raises(ValueError, match="JAX backend only"):
      _fit(model, x, y)
  finally:
    keras.distribution.set_distribution(None)
  for s, m in zip(k3.flip_states(model), before):
    np.testing.assert_array_equal(_np(s.mask), m)  # nothing changed
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
    model = _model(k3.schedules.ConstantSparsity(0.5, 0, frequency=2))
  with pytest.raises(ValueError, match="tf.distribute"):
    _fit(model, x, y)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_sign_flip_with_no_flips_equals_magnitude(scope):
  arrays = [(w, m, np.zeros_like(f), r, a) for w, m, f, r, a in conformance.arrays(4)]
  np.testing.assert_equal(_compute(arrays, "sign_flip", scope, 0.6, None),
                          _compute(arrays, "magnitude", scope, 0.6, None))


@pytest.mark.parametrize("criterion", [None, "sign_flip"])
def test_masks_of_iid_weights_do_not_follow_position(criterion):
  """LeNet-300-100's first layer at 80% before any flip: every quarter keeps ~20%."""
  keras.utils.set_random_seed(0)
  layer = keras.layers.Dense(300, name="fc1")
  kwargs = {} if criterion is None else {"criterion": criterion}  # None: the default
  model = keras.Sequential([keras.Input((784,)), ksf.prune_sign_flip(
      layer, k3.schedules.ConstantSparsity(0.8, 0, frequency=1), **kwargs)])
  model.compile(keras.optimizers.SGD(0.0), "mse")
  x = np.random.RandomState(0).randn(4, 784).astype("float32")
  model.fit(x, np.zeros((4, 300), "float32"), epochs=1, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  mask = list(ksf.masks(model).values())[0]
  quarters = [float(q.mean()) for q in np.array_split(mask, 4, axis=0)]
  np.testing.assert_allclose(quarters, 0.2, atol=0.02)  # > 10 sigma for 58,800 weights


def _windows(seen, schedule):
  """NumPy, from the snapshots: each tensor's flip count at the last mask update
  (`flips_at_update`), the final counts, and per update [(flips in the window
  before it, weights it pruned)]. Updates run before the steps the schedule
  names (an update may leave every mask as it was)."""
  flips = [np.zeros(w.shape, np.int32) for w, _ in seen[0]]
  starts = [np.zeros_like(f) for f in flips]
  updates = []
  for step, (before, after) in enumerate(zip(seen, seen[1:]), start=1):
    if schedule(step)[0]:
      # The update ran before this step: it saw the window so far, then restarted it.
      updates.append([(f - s, (m0 > 0) & (m1 == 0))
                      for f, s, (_, m0), (_, m1) in zip(flips, starts, before, after)])
      starts = [f * (m > 0) for f, (_, m) in zip(flips, after)]
    for j, ((w0, _), (w1, m)) in enumerate(zip(before, after)):
      flips[j] = flips[j] * (m > 0) + ((np.sign(w0 * m) * np.sign(w1 * m)) < 0)
  return starts, flips, updates


@pytest.mark.parametrize("min_flips", [None, 1])
def test_recent_flips_window_restarts_at_every_update(min_flips):
  # Few weights pruned per update, many flipping: survivors keep flips.
  schedule = k3.schedules.PolynomialDecay(0.02, 0.2, begin_step=4, end_step=28, frequency=4)
  model = _model(schedule, criterion="recent_flips", scope="global", min_flips=min_flips,
                 optimizer=keras.optimizers.SGD(1.0, momentum=0.9))
  snaps = _Snapshots()
  x, y = _data()
  model.fit(x, y, batch_size=32, epochs=6, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), snaps])
  starts, flips, updates = _windows(snaps.seen, schedule)
  assert len(updates) >= 3
  for s, start, total in zip(k3.flip_states(model), starts, flips):
    np.testing.assert_array_equal(_np(s.flips_at_update), start)
    np.testing.assert_array_equal(_np(s.flips), total)
  if min_flips:  # flip-triggered: only weights with >= 1 flip in their window are pruned
    pruned = [recent[gone] for update in updates for recent, gone in update]
    assert sum(p.size for p in pruned) > 0 and all(np.all(p >= 1) for p in pruned)
  else:
    assert sum(int(s.sum()) for s in starts) > 0, "vacuous: no flips before the last update"


def test_erk_distribution_at_layer_scope_and_dense_layers():
  from keras_signflip import distributions  # pylint: disable=g-import-not-at-top
  schedule = k3.schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=12, frequency=3)
  keras.utils.set_random_seed(3)
  base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="h1"),
                           keras.layers.Dense(12, activation="tanh", name="h2"),
                           keras.layers.Dense(3, name="out")])
  model = ksf.prune_sign_flip(base, pruning_schedule=schedule, criterion="magnitude",
                              sparsity_distribution="erk", dense_layers=["first"])
  assert [type(l).__name__ for l in model.layers] == ["Dense", "PruneSignFlip", "PruneSignFlip"]
  want = distributions.layer_sparsities({"h1": (8, 16), "h2": (16, 12), "out": (12, 3)}, 0.8,
                                        "erk", dense_layers=["first"])
  model.compile(keras.optimizers.SGD(0.1),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = _data()
  model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  for s, name in zip(k3.flip_states(model), ["h2", "out"]):
    mask = _np(s.mask)
    assert int(mask.sum()) == k3.selection.kept_count(mask.size, want[name]), name
  with pytest.raises(ValueError, match="layer scope"):
    ksf.prune_sign_flip(base, pruning_schedule=schedule, scope="global", sparsity_distribution="er")


def test_reference_weights_only_for_criteria_that_read_them():
  schedule = k3.schedules.ConstantSparsity(0.5, 0)
  assert all(s.reference is None for s in k3.flip_states(_model(schedule, criterion="hybrid")))
  movement = _model(schedule, criterion="movement")
  assert all(s.reference is not None for s in k3.flip_states(movement))
  config = k3.collect_wrappers(_model(schedule))[0].get_config()
  del config["keep_reference"]  # a file of 0.3.0: it held reference weights
  old = k3.PruneSignFlip.from_config(config)
  old.build((None, 8))
  assert all(s.reference is not None for s in old.flip_states)


@pytest.mark.parametrize("name", ["magnitude", "hybrid", "movement"])
def test_l2_normalised_global_masks_equal_numpy_reference(name):
  case = (f"{name}-global-0.75", name, "global", 0.75, None, 3)
  got = _compute(conformance.arrays(3), name, "global", 0.75, None, normalization="l2")
  for g, e in zip(got, conformance.reference_masks(case, normalization="l2")):
    np.testing.assert_array_equal(g, e)


def test_score_normalization_trains_saves_and_refuses_layer_scope(tmp_path):
  model = ksf.prune_sign_flip(_base(),
                              pruning_schedule=k3.schedules.ConstantSparsity(0.7, 0, frequency=3),
                              scope="global", score_normalization="l2")
  model.compile(keras.optimizers.SGD(0.1),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = _data()
  model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  assert ksf.sparsity_report(model)["overall"] == pytest.approx(0.7, abs=0.01)
  path = str(tmp_path / "n.keras")
  model.save(path)
  assert keras.saving.load_model(path).layers[0].score_normalization == "l2"
  with pytest.raises(ValueError, match="scope='global'"):
    ksf.prune_sign_flip(_base(), score_normalization="l2")


def test_secondary_key_is_built_only_when_ties_overflow():
  from keras_signflip.keras3 import selection  # pylint: disable=g-import-not-at-top
  calls = []

  def second():
    calls.append(1)
    return [ops.convert_to_tensor(np.array([0.0, 9.0, 1.0, 2.0], np.float32))]
  distinct = ops.convert_to_tensor(np.array([4.0, 1.0, 3.0, 2.0], np.float32))
  np.testing.assert_array_equal(_np(selection.select_top_k([distinct], 2, second)[0]),
                                [True, False, True, False])
  assert not calls
  tied = ops.convert_to_tensor(np.array([1.0, 1.0, 1.0, 5.0], np.float32))
  # Three scores tie for one place: the key keeps the 9.0.
  np.testing.assert_array_equal(_np(selection.select_top_k([tied], 2, second)[0]),
                                [False, True, False, True])
  assert calls == [1]


@pytest.mark.parametrize("distinct", [True, False])
def test_top_k_and_kth_score_equal_numpy_ranking(distinct):
  """Masks and the k-th score against a NumPy ranking by (score desc, position)."""
  from keras_signflip.keras3 import selection  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(3)
  shapes = [(7, 5), (4,), (3, 2, 2)]
  raw = [rng.randn(*s).astype(np.float32) for s in shapes]
  if not distinct:  # few values: ties at the k-th score overflow for most k
    raw = [np.round(r).astype(np.float32) for r in raw]
  raw[0][0, :3] = -np.inf  # pruned weights' scores
  flat = np.concatenate([r.ravel() for r in raw])
  for k in (1, 5, 20, flat.size - 2, flat.size):
    order = np.lexsort((np.arange(flat.size), -flat))  # score desc, then position
    want = np.zeros(flat.size, bool)
    want[order[:k]] = True
    keep, kth = selection.select_top_k([ops.convert_to_tensor(r) for r in raw], k,
                                       with_kth=True)
    got = np.concatenate([_np(m).ravel() for m in keep])
    np.testing.assert_array_equal(got, want, err_msg=f"k={k}")
    assert kth == np.sort(flat)[::-1][k - 1]


class _HostMagnitude(criteria.Criterion):
  """|w| through NumPy on the host: not traceable by jax.jit or tf.function."""

  def score(self, weight, state, xp=None):
    return ops.convert_to_tensor(np.abs(np.asarray(ops.convert_to_numpy(weight))))


def test_untraceable_custom_criterion_is_not_compiled():
  rng = np.random.RandomState(0)
  w = rng.randn(6, 5).astype(np.float32)
  mask = np.ones_like(w)
  mask[0] = 0
  arrays = [(w * mask, mask, np.zeros(w.shape, np.int32), w, np.zeros(w.shape, np.int32))]
  var = lambda value, dtype: keras.Variable(value, dtype=dtype, trainable=False)  # noqa: E731
  (wv, mv, fv, rv, av), = arrays
  state = state_lib.FlipState(
      weight=var(wv, "float32"), mask=var(mv, "float32"), threshold=var(0.0, "float32"),
      prev_sign=var(np.sign(wv).astype(np.int8), "int8"), flips=var(fv, "int32"),
      reference=var(rv, "float32"), key=0, flips_at_update=var(av, "int32"))
  masks, threshold = k3.mask_update.compute_masks([state], 0.5, _HostMagnitude())
  # 15 kept of 30: the 15 largest |w| among the 25 unpruned (NumPy reference).
  alive = np.abs(wv).ravel()
  alive[:5] = -np.inf
  want = np.zeros(30, bool)
  want[np.argsort(-alive, kind="stable")[:15]] = True
  np.testing.assert_array_equal(_np(masks[0]).ravel(), want)
  assert float(_np(threshold)) == pytest.approx(np.sort(alive)[::-1][14])


@pytest.mark.skipif(BACKEND == "tensorflow", reason="Keras 3 dispatches batch hooks on a "
                    "thread only on thread-safe backends (JAX, PyTorch)")
def test_generic_callbacks_keep_keras_asynchronous_batch_hooks():
  """A generic keras_signflip callback that leaves the batch-end hooks alone
  lets Keras 3 run them on its thread; one that overrides them does not."""
  import threading  # pylint: disable=g-import-not-at-top
  from keras_signflip import callback as generic  # pylint: disable=g-import-not-at-top

  class Threads(keras.callbacks.Callback):
    async_safe = True

    def __init__(self):
      super().__init__()
      self.threads = set()

    def on_train_batch_end(self, batch, logs=None):
      self.threads.add(threading.get_ident())

  class EpochOnly(generic.Callback):
    def on_epoch_end(self, epoch, logs=None):
      pass

  class BatchEnd(generic.Callback):
    def on_train_batch_end(self, batch, logs=None):
      pass

  x, y = _data()
  main = threading.get_ident()
  for other, asynchronous in ((EpochOnly(), True), (BatchEnd(), False)):
    model = _base()
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    threads = Threads()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[other, threads])
    assert (main not in threads.threads) == asynchronous, type(other).__name__


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_fit_counts_like_float32_recount(policy):
  """Under a mixed policy the variables stay float32: flips, masks and the
  zeroed pruned weights are those of the float32 values (NumPy recount)."""
  keras.mixed_precision.set_global_policy(policy)
  try:
    schedule = k3.schedules.PolynomialDecay(0.1, 0.5, begin_step=6, end_step=30, frequency=4)
    model = _model(schedule, scope="global", optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    snaps = _Snapshots()
    x, y = _data()
    model.fit(x, y, batch_size=32, epochs=6, shuffle=False, verbose=0,
              callbacks=[ksf.UpdatePruningStep(), snaps])
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert all(s.weight.dtype == "float32" for s in snaps.states)
  expected = _recount(snaps.seen)
  assert sum(int(c.sum()) for c in expected) > 0, "no flips: the test would be vacuous"
  for c, e in zip(ksf.flip_counts(model).values(), expected):
    np.testing.assert_array_equal(c, e)
  final = snaps.seen[-1]
  for w, m in final:
    assert np.all(w[m == 0] == 0)
  total = sum(m.size for _, m in final)
  assert sum(int(m.sum()) for _, m in final) == k3.selection.kept_count(
      total, float(schedule(30)[1]))


def test_files_with_float_masks_load_into_int8_masks(tmp_path):
  """Files written before masks were int8 hold them in the weight's float dtype."""
  import zipfile  # pylint: disable=g-import-not-at-top
  import h5py  # pylint: disable=g-import-not-at-top
  model = _model(k3.schedules.GeometricSparsity(0.3, frequency=4))
  x, y = _data()
  _fit(model, x, y)
  new_path, old_path = str(tmp_path / "new.keras"), str(tmp_path / "old.keras")
  model.save(new_path)
  converted = 0
  with zipfile.ZipFile(new_path) as src, zipfile.ZipFile(old_path, "w") as dst:
    for item in src.infolist():
      data = src.read(item.filename)
      if item.filename.endswith(".h5"):
        h5_path = str(tmp_path / "weights.h5")
        with open(h5_path, "wb") as f:
          f.write(data)
        with h5py.File(h5_path, "r+") as h5:
          masks = []
          h5.visititems(lambda name, obj: masks.append(name) if (
              isinstance(obj, h5py.Dataset) and obj.dtype == np.int8 and obj.ndim == 2
              and obj[()].min() >= 0) else None)
          for name in masks:  # the masks (prev_sign holds -1 too), as float32
            value = h5[name][()].astype(np.float32)
            del h5[name]
            h5[name] = value
          converted = len(masks)
        with open(h5_path, "rb") as f:
          data = f.read()
      dst.writestr(item, data)
  assert converted == 3
  loaded = keras.saving.load_model(old_path)
  for a, b in zip(k3.flip_states(model), k3.flip_states(loaded)):
    assert b.mask.dtype == "int8"
    np.testing.assert_array_equal(_np(a.mask), _np(b.mask))
  _fit(model, x, y)
  _fit(loaded, x, y)
  for a, b in zip(k3.flip_states(model), k3.flip_states(loaded)):
    for name in ("weight", "mask", "flips", "prev_sign"):
      np.testing.assert_array_equal(_np(getattr(a, name)), _np(getattr(b, name)), err_msg=name)


def test_benchmark_counts_extra_bytes_per_weight_of_each_criterion():
  from benchmarks import keras3_overhead  # pylint: disable=g-import-not-at-top
  extra = keras3_overhead._extra_bytes_per_weight()  # pylint: disable=protected-access
  # int8 mask + int8 previous sign + int32 flips = 6 bytes a weight (plus a
  # few scalars per wrapper: under 0.001 a weight for LeNet-300-100's 266k).
  for name in ("magnitude", "sign_flip", "hybrid", "random"):
    assert abs(extra[name] - 6.0) < 1e-3, (name, extra[name])
  # + 4 bytes: float32 reference, int32 flips at the last update, or the
  # optimizer's float32 sum of w * g.
  for name in ("large_final_same_sign", "movement", "recent_flips", "saliency",
               "movement_score"):
    assert abs(extra[name] - 10.0) < 1e-3, (name, extra[name])
