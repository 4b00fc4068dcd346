"""Behaviour during training: TF-MOT equality, flip recounts, zero pruned weights."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tf, tfmot
from tests import testing_utils as tu


def _poly():
  return tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=12, frequency=3)


def _conv(seed=1):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.layers.Conv2D(4, 3, activation="relu", input_shape=(6, 6, 2)),
      keras.layers.Flatten(), keras.layers.Dense(3)])


@pytest.mark.parametrize("make,shape", [(tu.mlp, (8,)), (_conv, (6, 6, 2))])
def test_magnitude_layer_scope_equals_tfmot(make, shape):
  x = np.random.RandomState(0).randn(96, *shape).astype("float32")
  y = np.random.RandomState(1).randint(0, 3, 96)
  ours = tu.compile_sgd(ksf.prune_sign_flip(make(), pruning_schedule=_poly(),
                                            criterion="magnitude"), lr=0.1)
  theirs = tu.compile_sgd(tfmot.sparsity.keras.prune_low_magnitude(
      make(), pruning_schedule=_poly()), lr=0.1)
  for m, cb in ((ours, ksf.UpdatePruningStep()),
                (theirs, tfmot.sparsity.keras.UpdatePruningStep())):
    m.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[cb])
  a = [v.numpy() for v in ours.weights if "/mask" in v.name]
  b = [v.numpy() for v in theirs.weights if "/mask" in v.name]
  assert len(a) == len(b) >= 2
  for p, q in zip(a, b):
    np.testing.assert_array_equal(p, q)
    assert int(p.sum()) == tu.reference_kept(p.size, 0.8)


class _Snapshots(keras.callbacks.Callback):
  """Records every wrapped weight and mask around every training step."""

  def on_train_begin(self, logs=None):
    self.states = [s for w in ksf.collect_wrappers(self.model) for s in w.flip_states]
    self.flips = [np.zeros(s.weight.shape, np.int64) for s in self.states]
    self.masks = [[s.mask.numpy()] for s in self.states]
    self.pruned_nonzero = 0

  def on_train_batch_begin(self, batch, logs=None):
    self.before = [s.weight.numpy() * s.mask.numpy() for s in self.states]

  def on_train_batch_end(self, batch, logs=None):
    for i, s in enumerate(self.states):
      after, mask = s.weight.numpy(), s.mask.numpy() > 0
      self.flips[i] += (np.sign(self.before[i]) * np.sign(after) < 0) & mask
      self.flips[i][~mask] = 0
      self.pruned_nonzero += int(np.count_nonzero(after[~mask]))
      self.masks[i].append(s.mask.numpy())


def _once():
  return tfmot.sparsity.keras.ConstantSparsity(0.3, begin_step=12, end_step=12)


@pytest.mark.parametrize("schedule", [tu.never, _once], ids=["no_pruning", "pruning"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "legacy_adam"])
def test_fit_flip_counts_equal_numpy_recount(schedule, optimizer):
  x, y = tu.data()
  model = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=schedule(), criterion="hybrid")
  opt = {"sgd": lambda: keras.optimizers.SGD(1.0),
         "adam": lambda: keras.optimizers.Adam(0.05),
         "legacy_adam": lambda: keras.optimizers.legacy.Adam(0.05)}[optimizer]()
  model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  snap = _Snapshots()
  model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), snap])
  counts = ksf.flip_counts(model)
  assert sum(int(f.sum()) for f in snap.flips) > 0, "the run should flip signs"
  for s, want in zip(snap.states, snap.flips):
    np.testing.assert_array_equal(counts[s.weight.name], want)
  assert snap.pruned_nonzero == 0, "pruned weights must be zero after every step"
  for history in snap.masks:
    for older, newer in zip(history, history[1:]):
      assert np.all(newer <= older), "masks must be monotone"


class _Windows(keras.callbacks.Callback):
  """NumPy: flips since the last mask update (RecentFlips' window), from
  snapshots around every step; an update runs in the forward pass of a step
  whose pruning_step the schedule names."""

  def __init__(self, schedule):
    super().__init__()
    self.schedule = schedule

  def on_train_begin(self, logs=None):
    self.wrapper = ksf.collect_wrappers(self.model)[0]
    self.states = [s for w in ksf.collect_wrappers(self.model) for s in w.flip_states]
    self.flips = [np.zeros(s.weight.shape, np.int64) for s in self.states]
    self.starts = [np.zeros_like(f) for f in self.flips]
    self.pruned_recent = []  # window counts of the weights each update pruned

  def on_train_batch_begin(self, batch, logs=None):
    self.before = [(s.weight.numpy() * s.mask.numpy(), s.mask.numpy() > 0) for s in self.states]

  def on_train_batch_end(self, batch, logs=None):
    # The step's pruning_step, read after it (Keras may call this callback's
    # batch-begin hook before UpdatePruningStep's).
    update = bool(self.schedule(int(self.wrapper.pruning_step.numpy()))[0])
    for i, s in enumerate(self.states):
      (w0, m0), w1, m1 = self.before[i], s.weight.numpy(), s.mask.numpy() > 0
      if update:
        self.pruned_recent.append((self.flips[i] - self.starts[i])[m0 & ~m1])
        self.starts[i] = self.flips[i] * m1
      self.flips[i] = self.flips[i] * m1 + ((np.sign(w0) * np.sign(w1) < 0) & m1)


@pytest.mark.parametrize("min_flips", [None, 1])
def test_recent_flips_window_restarts_at_every_update(min_flips):
  x, y = tu.data()
  schedule = tfmot.sparsity.keras.PolynomialDecay(0.02, 0.3, begin_step=2, end_step=20,
                                                  frequency=3)
  model = tu.compile_sgd(ksf.prune_sign_flip(
      tu.mlp(), pruning_schedule=schedule, criterion="recent_flips", scope="global",
      min_flips=min_flips), lr=1.0, momentum=0.9)
  windows = _Windows(schedule)
  model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), windows])
  assert len(windows.pruned_recent) >= 3 * len(windows.states)
  for s, start, total in zip(windows.states, windows.starts, windows.flips):
    np.testing.assert_array_equal(s.flips_at_update.numpy(), start)
    np.testing.assert_array_equal(s.flips.numpy(), total)
  if min_flips:  # flip-triggered: every pruned weight flipped in its window
    pruned = np.concatenate(windows.pruned_recent)
    assert pruned.size > 0 and np.all(pruned >= 1)
  else:
    assert sum(int(s.sum()) for s in windows.starts) > 0, "vacuous: no flips before an update"


def test_custom_loop_flip_counts_equal_numpy_recount():
  x, y = tu.data()
  model = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=_once(), criterion="sign_flip",
                              scope="global")
  opt = keras.optimizers.SGD(1.0)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  for w in ksf.collect_wrappers(model):
    w.pruning_step.assign(0)
  states = [s for w in ksf.collect_wrappers(model) for s in w.flip_states]
  recount = [np.zeros(s.weight.shape, np.int64) for s in states]

  @tf.function
  def step(xb, yb):
    with tf.GradientTape() as tape:
      loss = loss_fn(yb, model(xb, training=True))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables))

  for i in range(24):
    before = [s.weight.numpy() for s in states]
    step(x[i % 8 * 16:(i % 8 + 1) * 16], y[i % 8 * 16:(i % 8 + 1) * 16])
    for j, s in enumerate(states):
      after, mask = s.weight.numpy(), s.mask.numpy() > 0
      recount[j] += (np.sign(before[j]) * np.sign(after) < 0) & mask
      recount[j][~mask] = 0
      assert not np.any(after[~mask])
  counts = ksf.flip_counts(model)
  assert sum(int(r.sum()) for r in recount) > 0
  for s, want in zip(states, recount):
    np.testing.assert_array_equal(counts[s.weight.name], want)


def test_training_begins_with_pruned_weights_zero_after_outside_change():
  """The forward pass writes nothing; train begin re-masks weights set from outside."""
  model = tu.compile_sgd(ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(),
                                             criterion="magnitude"))
  state = ksf.collect_wrappers(model)[0].flip_states[0]
  mask = np.ones(state.mask.shape, np.float32)
  mask[0] = 0
  state.mask.assign(mask)
  state.weight.assign(np.ones(state.weight.shape, np.float32))  # pruned row non-zero
  x, y = tu.data(32)
  model(x, training=False)
  assert np.all(state.weight.numpy()[0] == 1)  # inference does not write weights
  callback = ksf.UpdatePruningStep()  # a custom loop's protocol
  callback.set_model(model)
  callback.on_train_begin()
  assert not np.any(state.weight.numpy()[0])
  state.weight.assign(np.ones(state.weight.shape, np.float32))
  model.fit(x, y, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  assert not np.any(state.weight.numpy()[0]) and np.all(state.weight.numpy()[1:] != 0)


def test_set_reference_moves_reference_and_resyncs_signs():
  x, y = tu.data()
  model = tu.compile_sgd(ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(),
                                             criterion="movement"))
  model.fit(x, y, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  ksf.set_reference(model)
  for w in ksf.collect_wrappers(model):
    for s in w.flip_states:
      np.testing.assert_array_equal(s.reference.numpy(), s.weight.numpy())
      np.testing.assert_array_equal(s.prev_sign.numpy(), np.sign(s.weight.numpy()))


def test_strip_pruning_gives_plain_sparse_layers():
  x, y = tu.data()
  model = tu.compile_sgd(ksf.prune_sign_flip(tu.mlp(), pruning_schedule=_poly(),
                                             criterion="hybrid", scope="global"))
  model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  want = model.predict(x, verbose=0)
  masks = list(ksf.masks(model).values())
  for strip in (ksf.strip_pruning, tfmot.sparsity.keras.strip_pruning):
    plain = strip(model)
    assert not ksf.collect_wrappers(plain)
    kernels = [l.kernel.numpy() for l in plain.layers]
    for k, m in zip(kernels, masks):
      assert np.all(k[m == 0] == 0)
    np.testing.assert_allclose(plain.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
  assert all(l.kernel.constraint is None for l in ksf.strip_pruning(model).layers)


def test_tfmot_callbacks_work_on_our_wrappers(tmp_path):
  x, y = tu.data()
  model = tu.compile_sgd(ksf.prune_sign_flip(tu.mlp(), pruning_schedule=_poly(),
                                             criterion="hybrid"))
  model.fit(x, y, batch_size=16, epochs=2, verbose=0,
            callbacks=[tfmot.sparsity.keras.UpdatePruningStep(),
                       tfmot.sparsity.keras.PruningSummaries(str(tmp_path))])
  assert all(0.75 < 1 - m.mean() for m in ksf.masks(model).values())
  assert list(tmp_path.rglob("events.out.tfevents*"))


def test_signflip_summaries_write_expected_tags(tmp_path):
  x, y = tu.data()
  model = tu.compile_sgd(ksf.prune_sign_flip(tu.mlp(), pruning_schedule=_poly(),
                                             criterion="hybrid"), lr=1.0)
  model.fit(x, y, batch_size=16, epochs=2, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), ksf.SignFlipSummaries(str(tmp_path))])
  tags = set()
  for f in tmp_path.rglob("events.out.tfevents*"):
    for e in tf.compat.v1.train.summary_iterator(str(f)):
      tags |= {v.tag for v in e.summary.value}
  names = [s.weight.name.split(":")[0] for w in ksf.collect_wrappers(model) for s in w.flip_states]
  for n in names:
    assert {f"flips/{n}", f"flip_rate/{n}", f"sparsity/{n}", f"flip_counts/{n}"} <= tags
  assert "sparsity/overall" in tags


def test_gradient_noise_masked_and_scaled():
  x, y = tu.data()
  model = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(), criterion="hybrid")
  state = ksf.collect_wrappers(model)[0].flip_states[0]
  mask = (np.random.RandomState(0).rand(*state.mask.shape) > 0.5).astype(np.float32)
  state.mask.assign(mask)
  opt = ksf.with_gradient_noise(keras.optimizers.SGD(1.0), factor=0.5, seed=1)
  model.build((None, 8))
  opt.build(model.trainable_variables)
  grads = [tf.ones_like(v) * 2.0 for v in model.trainable_variables]
  noisy = ksf.tf_keras.noise._add_noise(opt, list(zip(grads, model.trainable_variables)))  # pylint: disable=protected-access
  g_kernel = noisy[0][0].numpy()
  assert np.all(g_kernel[mask == 0] == 0)
  dev = (g_kernel - 2.0)[mask > 0]
  sigma = 0.5 * np.sqrt(np.mean((2.0 * mask) ** 2))  # factor * rms(g * m)
  assert abs(dev.std() - sigma) < 0.15 * sigma
  np.testing.assert_array_equal(noisy[1][0].numpy(), grads[1].numpy())  # bias untouched
  model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  assert not np.any(state.weight.numpy()[mask == 0])


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_jit_compiled_training_prunes_exactly(scope):
  x, y = tu.data()
  model = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=_poly(), criterion="hybrid", scope=scope)
  model.compile(keras.optimizers.SGD(0.5),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
  model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  masks = list(ksf.masks(model).values())
  if scope == "layer":
    assert [int(m.sum()) for m in masks] == [tu.reference_kept(m.size, 0.8) for m in masks]
  else:
    assert sum(int(m.sum()) for m in masks) == tu.reference_kept(sum(m.size for m in masks), 0.8)
  for s in ksf.flip_states(model):
    assert not np.any(s.weight.numpy()[s.mask.numpy() == 0])


def test_strip_and_export_mid_training_leave_the_wrapped_model_counting(tmp_path):
  x, y = tu.data()
  model = tu.compile_sgd(ksf.prune_sign_flip(
      tu.mlp(), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.6, 0, frequency=3),
      criterion="hybrid", scope="global"), lr=1.0, momentum=0.9)
  model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  ksf.export_saved_model(model, str(tmp_path / "export"), verbose=False)
  stripped = ksf.strip_pruning(model)
  before = [v.numpy() for v in model.weights]
  tu.compile_sgd(stripped, lr=1.0)  # training the plain copy touches nothing of the model
  stripped.fit(x, y, epochs=1, verbose=0)
  for a, b in zip(before, model.weights):
    np.testing.assert_array_equal(a, b.numpy())
  tu.compile_sgd(model, lr=1.0, momentum=0.9)  # recompiled after the export
  snaps = _Snapshots()
  start = {n: f.copy() for n, f in ksf.flip_counts(model).items()}
  model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), snaps])
  assert sum(int(f.sum()) for f in snaps.flips) > 0, "no flips: the test would be vacuous"
  for s, want in zip(snaps.states, snaps.flips):
    got = ksf.flip_counts(model)[s.weight.name] - start[s.weight.name] * (s.mask.numpy() > 0)
    np.testing.assert_array_equal(got, want)
  assert snaps.pruned_nonzero == 0


@pytest.mark.parametrize("make_optimizer,rows_only", [
    (lambda: keras.optimizers.legacy.SGD(1.0, momentum=0.9), True),   # lazy, per-row momentum
    (lambda: keras.optimizers.legacy.Adam(0.05), False),            # moments move every row
    (lambda: keras.optimizers.SGD(1.0), True),
    (lambda: keras.optimizers.SGD(1.0, momentum=0.9), False),
], ids=["legacy_sgd_momentum", "legacy_adam", "sgd", "sgd_momentum"])
def test_embedding_tables_count_flips_with_any_optimizer(make_optimizer, rows_only):
  """Sparse gradients: no constraint on the table (legacy optimizers refuse one);
  flips still equal a NumPy recount, and reads see pruned entries at zero --
  counting only touched rows where the optimizer changes only those."""
  rng = np.random.RandomState(0)
  x, y = rng.randint(0, 40, size=(192, 5)), rng.randint(0, 2, 192)
  keras.utils.set_random_seed(1)
  base = keras.Sequential([keras.Input((5,), dtype="int32"),
                           keras.layers.Embedding(40, 4, name="emb"),
                           keras.layers.Flatten(), keras.layers.Dense(2, name="out")])
  model = ksf.prune_sign_flip(base, criterion="random", scope="global",
                              pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
                                  0.1, 0.5, begin_step=0, end_step=18, frequency=4))
  model.compile(make_optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  table = ksf.flip_states(model)[0]
  assert table.touched is not None and table.weight.constraint is None
  snaps = _Snapshots()
  model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
            callbacks=[ksf.UpdatePruningStep(), snaps])
  assert ksf.collect_wrappers(model)[0].table_rows_only is rows_only
  counts = ksf.flip_counts(model)  # counts the last step's rows too
  assert sum(int(f.sum()) for f in snaps.flips) > 0, "no flips: the test would be vacuous"
  for s, want in zip(snaps.states, snaps.flips):
    np.testing.assert_array_equal(counts[s.weight.name], want)
    assert not np.any(s.weight.numpy()[s.mask.numpy() == 0])
  assert abs(ksf.sparsity_report(model)["overall"] - 0.5) < 0.01
  plain = ksf.strip_pruning(model)
  np.testing.assert_allclose(plain.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0),
                             atol=1e-6)


def test_signflip_summaries_flip_rate_per_epoch_across_one_epoch_fits(tmp_path):
  """One fit per epoch (as the binaries do): every epoch's flip_rate is that epoch's."""
  x, y = tu.data()
  model = tu.compile_sgd(ksf.prune_sign_flip(tu.mlp(), pruning_schedule=_poly(),
                                             criterion="random"), lr=1.0)
  snaps, summaries = _Snapshots(), ksf.SignFlipSummaries(str(tmp_path))
  per_epoch, alive_at_end = [], []
  for epoch in range(3):
    model.fit(x, y, batch_size=16, epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
              verbose=0, callbacks=[ksf.UpdatePruningStep(), summaries, snaps])
    per_epoch.append([f.copy() for f in snaps.flips])  # NumPy recount within this fit
    alive_at_end.append([s.mask.numpy() > 0 for s in snaps.states])
  rates = {}
  for f in tmp_path.rglob("events.out.tfevents*"):
    for e in tf.compat.v1.train.summary_iterator(str(f)):
      for v in e.summary.value:
        if v.tag.startswith("flip_rate/"):
          rates.setdefault(v.tag, {})[e.step] = float(tf.make_ndarray(v.tensor))
  steps_per_epoch = len(x) // 16
  assert sum(int(f.sum()) for e in per_epoch for f in e) > 0, "no flips: vacuous"
  for i, s in enumerate(snaps.states):
    tag = f"flip_rate/{s.weight.name.split(':')[0]}"
    got = [rates[tag][steps_per_epoch * (e + 1)] for e in range(3)]
    want = [per_epoch[e][i][alive_at_end[e][i]].sum() / (alive_at_end[e][i].sum() * steps_per_epoch)
            for e in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_gradient_noise_is_flipouts_formula():
  """FlipOut's code (models/master_model.py, inject_noise): the gradient is masked,
  std = lambda * ||g||_2 / sqrt(numel) per layer, noise added, the result masked again."""
  model = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(), criterion="hybrid")
  model.build((None, 8))
  state = ksf.collect_wrappers(model)[0].flip_states[0]
  mask = (np.random.RandomState(0).rand(*state.mask.shape) > 0.4).astype(np.float32)
  state.mask.assign(mask)
  opt = ksf.with_gradient_noise(keras.optimizers.SGD(1.0), factor=1.0, seed=3)
  opt.build(model.trainable_variables)
  rng = np.random.RandomState(1)
  grads = [rng.randn(*v.shape).astype(np.float32) for v in model.trainable_variables]
  noisy = ksf.tf_keras.noise._add_noise(  # pylint: disable=protected-access
      opt, [(tf.constant(g), v) for g, v in zip(grads, model.trainable_variables)])
  draw = tf.random.stateless_normal(mask.shape, seed=[3 * 1000003 + 0, 0]).numpy()  # its RNG
  g = grads[0] * mask
  std = 1.0 * np.linalg.norm(g) / np.sqrt(g.size)  # FlipOut: lambda * ||g * m||_2 / sqrt(n)
  np.testing.assert_allclose(noisy[0][0].numpy(), (g + std * draw) * mask, rtol=1e-5, atol=1e-6)


def test_noise_on_all_adds_flipouts_noise_to_every_variable():
  """noise_on="all", FlipOut's published runs (`--noise_only_prunable` off): every
  trainable variable's gradient gets lambda * ||g||_2 / sqrt(n) * N(0, 1), unmasked where
  no mask covers it; `record_gradients` keeps the setting."""
  model = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(), criterion="hybrid")
  model.build((None, 8))
  state = ksf.collect_wrappers(model)[0].flip_states[0]
  mask = (np.random.RandomState(0).rand(*state.mask.shape) > 0.4).astype(np.float32)
  state.mask.assign(mask)
  opt = ksf.with_gradient_noise(keras.optimizers.SGD(1.0), factor=0.5, seed=3, noise_on="all")
  assert ksf.record_gradients(opt).noise_on == "all"
  opt.build(model.trainable_variables)
  rng = np.random.RandomState(1)
  variables = model.trainable_variables
  grads = [rng.randn(*v.shape).astype(np.float32) for v in variables]
  noisy = ksf.tf_keras.noise._add_noise(  # pylint: disable=protected-access
      opt, [(tf.constant(g), v) for g, v in zip(grads, variables)])
  assert len(variables) > 2
  for i, (v, g, (out, _)) in enumerate(zip(variables, grads, noisy)):
    m = mask if v is state.weight else np.ones_like(g)
    draw = tf.random.stateless_normal(g.shape, seed=[3 * 1000003 + i, 0]).numpy()
    std = 0.5 * np.linalg.norm(g * m) / np.sqrt(g.size)
    np.testing.assert_allclose(out.numpy(), (g * m + std * draw) * m, rtol=1e-5, atol=1e-6,
                               err_msg=v.name)
