"""Lottery tickets: rewinding, re-initialisation, exact counts, early-bird, resume."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.lottery import early_bird, reinit, rewind
from keras_signflip import lottery
from keras_signflip.tf_keras._framework import keras, tf
from tests import testing_utils as tu

X, Y = tu.data(n=192)


def _make():
  keras.utils.set_random_seed(5)
  inputs = keras.Input((8,))
  h = keras.layers.Dense(20, name="hidden")(inputs)
  h = keras.layers.BatchNormalization(name="bn")(h)
  h = keras.layers.Activation("relu")(h)
  return keras.Model(inputs, keras.layers.Dense(3, name="out")(h))


def _compile(model):
  # Eager: the loop compiles the model again every round, and tracing it would be
  # most of these tests' time; tests/lottery/test_lottery_binary.py runs the loop compiled.
  model.compile(keras.optimizers.Adam(0.02),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                run_eagerly=True)


def _train_data(r, epoch):
  return tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(
      192, seed=100 * r + epoch, reshuffle_each_iteration=False).batch(32)


VAL = tf.data.Dataset.from_tensor_slices((X[:64], Y[:64])).batch(64)
TEST = tf.data.Dataset.from_tensor_slices((X[64:], Y[64:])).batch(64)


def _run(tmp_path, **kwargs):
  config = lottery.LotteryConfig(**{**dict(rounds=3, epochs=2, seed=1), **kwargs})
  return lottery.run(_make, _compile, _train_data, VAL, TEST, config, str(tmp_path),
                     log=lambda *a: None)


def test_rewind_restores_every_variable_exactly_at_step_k():
  model = ksf.prune_sign_flip(_make(), pruning_schedule=tu.never(), criterion="magnitude")
  _compile(model)
  point = rewind.RewindPoint("3it")
  model.fit(X, Y, batch_size=32, epochs=2, verbose=0, callbacks=[ksf.UpdatePruningStep(), point])
  snap = point.snapshot
  assert snap.step == 3
  names = {n.split(":")[0] for n in snap.names}
  assert {"bn/moving_mean", "bn/moving_variance", "hidden/bias", "bn/gamma"} <= names
  mask = (np.random.RandomState(0).rand(8, 20) > 0.5).astype(np.float32)
  state = ksf.collect_wrappers(model)[0].flip_states[0]
  state.mask.assign(mask)
  reinit.reinitialize(model, "rewind", snap)
  variables = rewind.variables(model)  # pylint: disable=protected-access
  for v, want in zip(variables, snap.values):
    got = v.numpy()
    if v is state.weight:
      np.testing.assert_array_equal(got, want * mask)
    else:
      np.testing.assert_array_equal(got, want)
  # The mask stays fixed through training, pruned weights stay zero.
  model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  np.testing.assert_array_equal(state.mask.numpy(), mask)
  assert not np.any(state.weight.numpy()[mask == 0])


def test_rewind_point_after_training_is_too_late_reported(tmp_path):
  with pytest.raises(ValueError, match="beyond"):
    _run(tmp_path, rounds=1, epochs=1, rewind_step="500it")


@pytest.mark.parametrize("duration,expected",
                         [(0, 0), (7, 7), ("12it", 12), ("2ep", 20), (" 3 ep", 30)])
def test_durations(duration, expected):
  assert rewind.steps(duration, steps_per_epoch=10) == expected


@pytest.mark.parametrize("bad", ["2 epochs", "x", -1, "3ep_"])
def test_bad_durations(bad):
  with pytest.raises(ValueError, match="duration"):
    rewind.steps(bad, steps_per_epoch=10)


def test_signed_constant_and_shuffle():
  model = ksf.prune_sign_flip(_make(), pruning_schedule=tu.never(), criterion="magnitude")
  init = rewind.snapshot(model)
  _compile(model)
  model.fit(X, Y, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  late = rewind.snapshot(model, step=6)
  states = [s for w in ksf.collect_wrappers(model) for s in w.flip_states]
  masks = [(np.random.RandomState(i).rand(*s.mask.shape) > 0.3).astype(np.float32)
           for i, s in enumerate(states)]
  for s, m in zip(states, masks):
    s.mask.assign(m)
  by_name = lambda snap, n: snap.values[snap.names.index(n)]  # noqa: E731
  reinit.reinitialize(model, "signed_constant", late, init)
  for s, m in zip(states, masks):
    w, w_rewind, w_init = (s.weight.numpy(), by_name(late, s.weight.name),
                           by_name(init, s.weight.name))
    std = np.std(w_init)
    np.testing.assert_allclose(w[m > 0], np.sign(w_rewind[m > 0]) * std, rtol=1e-6)
    assert not np.any(w[m == 0])
  reinit.reinitialize(model, "shuffle", late, init, seed=3)
  for s, m in zip(states, masks):
    w, w_rewind = s.weight.numpy(), by_name(late, s.weight.name)
    np.testing.assert_array_equal(np.sort(w[m > 0]), np.sort(w_rewind[m > 0]))
    assert not np.array_equal(w[m > 0], w_rewind[m > 0])
    assert not np.any(w[m == 0])
  reinit.reinitialize(model, "random", late, init, seed=3)
  for s, m in zip(states, masks):
    w = s.weight.numpy()
    assert not np.any(w[m == 0]) and np.all(w[m > 0] != by_name(late, s.weight.name)[m > 0])
  with pytest.raises(ValueError, match="mode"):
    reinit.reinitialize(model, "lucky", late)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_exact_counts_after_n_rounds_and_resume_reproduces(tmp_path, scope):
  results = _run(tmp_path / "full", scope=scope,
                 prune_rate_output=0.1 if scope == "layer" else None)
  sizes = [8 * 20, 20 * 3]
  for r in range(4):
    masks = lottery.load_masks(str(tmp_path / "full" / f"masks_{r}.npz"))
    if scope == "layer":
      assert [int(m.sum()) for m in masks] == [round(sizes[0] * 0.8 ** r),
                                               round(sizes[1] * 0.9 ** r)]
    else:
      assert sum(int(m.sum()) for m in masks) == round(sum(sizes) * 0.8 ** r)
    if r:
      previous = lottery.load_masks(str(tmp_path / "full" / f"masks_{r - 1}.npz"))
      assert all(np.all(m <= p) for m, p in zip(masks, previous))
  assert [row["round"] for row in results] == [0, 1, 2, 3]

  # Kill mid-round 2, resume: same results file (wall time aside).
  class Kill(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      raise KeyboardInterrupt
  config = lottery.LotteryConfig(rounds=3, epochs=2, seed=1, scope=scope,
                                 prune_rate_output=0.1 if scope == "layer" else None)
  with pytest.raises(KeyboardInterrupt):
    lottery.run(_make, _compile, _train_data, VAL, TEST, config, str(tmp_path / "cut"),
                log=lambda *a: None, extra_callbacks=lambda r: [Kill()] if r == 2 else [])
  assert [row["round"] for row in lottery.load_results(
      str(tmp_path / "cut" / "results.json"))] == [0, 1]
  lottery.run(_make, _compile, _train_data, VAL, TEST, config, str(tmp_path / "cut"),
              log=lambda *a: None)
  strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]  # noqa: E731
  assert strip(lottery.load_results(str(tmp_path / "cut" / "results.json"))) == strip(
      lottery.load_results(str(tmp_path / "full" / "results.json")))


def test_controls_use_the_primary_masks_and_files_are_written(tmp_path):
  results = _run(tmp_path, rounds=2, modes=("rewind", "random", "signed_constant"))
  assert [(r["mode"], r["round"]) for r in results] == [
      ("rewind", 0), ("rewind", 1), ("rewind", 2), ("random", 1), ("random", 2),
      ("signed_constant", 1), ("signed_constant", 2)]
  by = {(r["mode"], r["round"]): r for r in results}
  for r in (1, 2):
    assert by[("random", r)]["weights_remaining_pct"] == by[("rewind", r)]["weights_remaining_pct"]
  for row in results:
    assert row["early_stop_step"] is not None and 0 <= row["supermask_accuracy"] <= 1
  csv_text = (tmp_path / "results.csv").read_text().splitlines()
  assert len(csv_text) == len(results) + 1 and "early_stop_test_accuracy" in csv_text[0]
  lottery.plot(results, lottery.RunFiles(str(tmp_path)))
  for png in ("accuracy_vs_remaining.png", "early_stop_vs_remaining.png"):
    assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_start_from_a_saved_mask(tmp_path):
  _run(tmp_path / "a", rounds=1)  # masks_1.npz: 20% pruned
  mask = lottery.load_masks(str(tmp_path / "a" / "masks_1.npz"))
  config = lottery.LotteryConfig(rounds=0, epochs=1, seed=1)
  lottery.run(_make, _compile, _train_data, VAL, TEST, config, str(tmp_path / "b"),
              init_mask=mask, log=lambda *a: None)
  for got, want in zip(lottery.load_masks(str(tmp_path / "b" / "masks_0.npz")), mask):
    np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match="does not fit"):
    lottery.run(_make, _compile, _train_data, VAL, TEST, config, str(tmp_path / "c"),
                init_mask=[m[:2] for m in mask], log=lambda *a: None)


def _mask(bits):
  return [np.array(bits, np.float32)]


def test_early_bird_rule_on_hand_built_masks():
  a = _mask([1] * 10 + [0] * 10)
  b = _mask([1] * 9 + [0, 1] + [0] * 9)        # distance 0.1 from a
  c = _mask([0] * 10 + [1] * 10)              # distance 1.0 from a
  assert early_bird.hamming(a[0:1], b[0:1]) == pytest.approx(0.1)
  seq = [c, a, a, b, a, a]
  reached = [early_bird.early_bird_reached(seq[:i + 1], epsilon=0.1, window=5)
             for i in range(len(seq))]
  # Window full at index 4, but c is still in it; holds first at index 5.
  assert reached == [False, False, False, False, False, True]
  assert not early_bird.early_bird_reached([a, a, a, a], 0.1, 5)  # window not full
  assert not early_bird.early_bird_reached([a, a, a, a, c], 0.1, 5)


def test_early_bird_callback_stops_training_and_keeps_the_mask():
  model = ksf.prune_sign_flip(_make(), pruning_schedule=tu.never(), criterion="magnitude")
  _compile(model)
  bird = early_bird.EarlyBird(0.5, "magnitude", epsilon=1.0, window=3)
  history = model.fit(X, Y, epochs=10, verbose=0, callbacks=[ksf.UpdatePruningStep(), bird])
  assert bird.epoch == 2 and len(history.history["loss"]) == 3
  total = sum(m.size for m in bird.mask.values())
  assert sum(int(m.sum()) for m in bird.mask.values()) == tu.reference_kept(total, 0.5)
  assert all(m.min() == 1 for m in ksf.masks(model).values())  # model's masks untouched
  with pytest.raises(ValueError, match="target_sparsity"):
    early_bird.EarlyBird(1.0)


def test_config_validation():
  with pytest.raises(ValueError, match="prune_rate"):
    lottery.LotteryConfig(prune_rate=1.0)
  with pytest.raises(ValueError, match="modes"):
    lottery.LotteryConfig(modes=("rewind", "lucky"))
  with pytest.raises(ValueError, match="duration"):
    lottery.LotteryConfig(rewind_step="soon")


class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
  """0.01 * (1 + step): every step's rate differs, so the step is visible in it."""

  def __call__(self, step):
    return 0.01 * (1.0 + tf.cast(step, tf.float32))

  def get_config(self):
    return {}


class _Probe(keras.callbacks.Callback):
  """The optimizer's step, learning rate and momentum slots when a round starts."""

  rounds = []

  def on_train_begin(self, logs=None):
    if self.rounds and self.rounds[-1]["id"] == id(self.model.optimizer):
      return  # a later epoch of the same round
    opt = self.model.optimizer
    self.rounds.append({"id": id(opt), "step": int(opt.iterations.numpy()),
                        "slots": [v.numpy().copy() for v in opt.variables[1:]]})

  def on_train_batch_end(self, batch, logs=None):
    if "lr" not in self.rounds[-1]:  # the rate the round's first step used
      self.rounds[-1]["lr"] = float(self.model.optimizer.learning_rate.numpy())

  def on_train_end(self, logs=None):
    self.rounds[-1]["end"] = int(self.model.optimizer.iterations.numpy())


def test_late_rewinding_continues_the_optimizer_and_schedule_from_step_k(tmp_path):
  def compile_sgd(model):
    model.compile(keras.optimizers.SGD(_Schedule(), momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

  _Probe.rounds = []
  k = 8  # 6 steps an epoch: epoch 1, batch 2
  config = lottery.LotteryConfig(rounds=2, epochs=2, seed=1, rewind_step=f"{k}it")
  lottery.run(_make, compile_sgd, _train_data, VAL, TEST, config, str(tmp_path),
              log=lambda *a: None, extra_callbacks=lambda r: [_Probe()])
  snap = rewind.Snapshot.load(str(tmp_path / "rewind.npz"))
  assert snap.step == k and int(snap.optimizer[0]) == k
  first, *later = _Probe.rounds
  assert first["step"] == 0 and first["end"] == 12
  np.testing.assert_allclose(first["lr"], 0.01, rtol=1e-6)  # the schedule at step 0
  for round_ in later:
    assert round_["step"] == k and round_["end"] == 12  # steps k..T: T - k of them
    np.testing.assert_allclose(round_["lr"], 0.01 * (1 + k), rtol=1e-6)
    for got, want in zip(round_["slots"], snap.optimizer[1:]):
      np.testing.assert_array_equal(got, want)  # momentum as it was at step k
  assert any(np.any(s != 0) for s in snap.optimizer[1:])
  results = lottery.load_results(str(tmp_path / "results.json"))
  assert [r["steps"] for r in results] == [12, 12, 12]


def test_restoring_a_snapshot_of_another_architecture_says_so():
  model = ksf.prune_sign_flip(_make(), pruning_schedule=tu.never(), criterion="magnitude")
  snap = rewind.snapshot(model)
  other = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(), criterion="magnitude")
  with pytest.raises(ValueError, match=r"holds \d+ variables but the model has \d+"):
    rewind.restore(other, snap)


class _RoundStart(keras.callbacks.Callback):
  """Records each round's weights and optimizer step when its training begins,
  and its weights when it ends."""

  def __init__(self, log, r):
    super().__init__()
    self.log, self.r = log, r

  def on_train_begin(self, logs=None):
    if (self.r, "start") not in self.log:
      self.log[(self.r, "start")] = ([v.numpy() for v in rewind.variables(self.model)],
                                     int(self.model.optimizer.iterations.numpy()))

  def on_train_end(self, logs=None):
    self.log[(self.r, "end")] = [v.numpy() for v in rewind.variables(self.model)]


def test_lr_rewinding_keeps_trained_weights_and_restarts_the_schedule(tmp_path):
  """Renda et al. 2020: round r starts from round r - 1's trained weights under
  round r's mask, with a fresh optimizer (step 0); plus sign-change telemetry."""
  log = {}
  config = lottery.LotteryConfig(rounds=2, epochs=1, seed=1, modes=("lr_rewind",),
                                 scope="global", prune_rate=0.5)
  rows = lottery.run(_make, _compile, _train_data, VAL, TEST, config, str(tmp_path),
                     log=lambda *a: None, extra_callbacks=lambda r: [_RoundStart(log, r)])
  files = lottery.RunFiles(str(tmp_path))
  model = ksf.prune_sign_flip(_make(), pruning_schedule=tu.never())
  weights = [id(s.weight) for s in ksf.flip_states(model)]
  prunable = [i for i, v in enumerate(rewind.variables(model)) if id(v) in weights]
  rewind_point = rewind.Snapshot.load(files.rewind)
  for r in (1, 2):
    start, step = log[(r, "start")]
    assert step == 0  # the learning-rate schedule starts again
    masks = lottery.load_masks(files.masks(r))
    for i, got in enumerate(start):
      want = log[(r - 1, "end")][i]
      if i in prunable:
        want = want * masks[prunable.index(i)]
      np.testing.assert_allclose(got, want, rtol=0, atol=0)
  for row in rows:  # survivors whose sign differs from the rewind point's, by NumPy
    end, masks = log[(row["round"], "end")], lottery.load_masks(files.masks(row["round"]))
    changed = sum(int(((np.sign(end[i]) * np.sign(rewind_point.values[i]) < 0) & (m > 0)).sum())
                  for i, m in zip(prunable, masks))
    assert row["sign_changed_since_rewind"] == changed
  assert any(row["sign_changed_since_rewind"] > 0 for row in rows)


def test_lr_rewinding_as_a_control_starts_from_the_dense_round(tmp_path):
  config = lottery.LotteryConfig(rounds=1, epochs=1, seed=1, modes=("rewind", "lr_rewind"))
  rows = lottery.run(_make, _compile, _train_data, VAL, TEST, config, str(tmp_path),
                     log=lambda *a: None)
  assert [(r["mode"], r["round"]) for r in rows] == [("rewind", 0), ("rewind", 1),
                                                     ("lr_rewind", 1)]
  with pytest.raises(ValueError, match="trained_snapshot"):
    reinit.reinitialize(ksf.prune_sign_flip(_make(), pruning_schedule=tu.never()), "lr_rewind",
                        rewind.Snapshot.load(lottery.RunFiles(str(tmp_path)).rewind))
