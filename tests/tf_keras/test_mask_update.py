"""Masks at a mask update equal a NumPy statement of each criterion's formula."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip import criteria
from keras_signflip.tf_keras._framework import keras, tfmot
from tests import testing_utils as tu

# NumPy formulas, written independently of keras_signflip.criteria.
FORMULAS = {
    "magnitude": lambda w, f, r: np.abs(w),
    "sign_flip": lambda w, f, r: -f.astype(np.float32),
    "hybrid": lambda w, f, r: np.abs(w) ** 2 / (f + 1),
    "large_final_same_sign": lambda w, f, r: np.where(np.sign(w) == np.sign(r), np.abs(w), 0),
    "magnitude_increase": lambda w, f, r: np.abs(w) - np.abs(r),
    "movement": lambda w, f, r: np.abs(w - r),
}
# Their secondary keys among equal scores (None: position only).
TIEBREAKS = {"magnitude": None, "sign_flip": lambda w, f, r: np.abs(w),
             "hybrid": lambda w, f, r: -f.astype(np.float32),
             "large_final_same_sign": lambda w, f, r: np.abs(w),
             "magnitude_increase": lambda w, f, r: np.abs(w), "movement": lambda w, f, r: np.abs(w)}


def _model(name, scope, sparsity, min_flips=None):
  base = keras.Sequential([keras.layers.Dense(7, input_shape=(5,)),
                           keras.layers.Dense(6), keras.layers.Dense(3)])
  return ksf.prune_sign_flip(
      base, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(sparsity, 0, frequency=1),
      criterion=name, scope=scope, min_flips=min_flips)


def _set_random_state(model, seed):
  """Weights with ties, flip counts with ties, references, some prior pruning."""
  rng = np.random.RandomState(seed)
  for w in ksf.collect_wrappers(model):
    for s in w.flip_states:
      shape = s.weight.shape
      weight = rng.choice([-0.5, -0.25, 0.25, 0.5, 1.0], size=shape) + \
          (rng.rand(*shape) < 0.5) * rng.randn(*shape)
      mask = (rng.rand(*shape) > 0.2).astype(np.float32)
      s.weight.assign((weight * mask).astype(np.float32))
      s.mask.assign(mask)
      s.flips.assign((rng.randint(0, 4, size=shape) * mask).astype(np.int32))
      reference = rng.randn(*shape).astype(np.float32)  # drawn either way: same stream
      if s.reference is not None:
        s.reference.assign(reference)
    w.pruning_step.assign(1)


def _reference_masks(model, name, scope, sparsity, min_flips=None):
  states = [s for w in ksf.collect_wrappers(model) for s in w.flip_states]
  groups = [states] if scope == "global" else [[s] for s in states]
  out = []
  for group in groups:
    arrays = [(s.weight.numpy(), s.flips.numpy(),
               None if s.reference is None else s.reference.numpy(), s.mask.numpy() > 0)
              for s in group]
    scores, alive = [], []
    for w, f, r, a in arrays:
      scores.append(np.where(a, FORMULAS[name](w, f, r), -np.inf).astype(np.float32))
      alive.append(a)
    k = tu.reference_kept(sum(a.size for a in alive), sparsity)
    if min_flips:
      cand = [a & (f >= min_flips) for (w, f, r, a) in arrays]
      k = max(k, sum(int((a & ~c).sum()) for a, c in zip(alive, cand)))
      scores = [np.where(c, s, np.where(a, np.inf, -np.inf))
                for s, a, c in zip(scores, alive, cand)]
    second = (None if TIEBREAKS[name] is None
              else [TIEBREAKS[name](w, f, r) for w, f, r, _ in arrays])
    out += [m & a for m, a in zip(tu.reference_topk(scores, k, second), alive)]
  return out


def _update(model):
  for w in ksf.collect_wrappers(model):
    w.pruning_obj.conditional_mask_update()


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("sparsity", [0.3, 0.75, 0.95])
def test_masks_match_numpy_formula(name, scope, sparsity):
  model = _model(name, scope, sparsity)
  _set_random_state(model, seed=hash((name, scope, sparsity)) % 1000)
  want = _reference_masks(model, name, scope, sparsity)
  old = [s.mask.numpy() for w in ksf.collect_wrappers(model) for s in w.flip_states]
  _update(model)
  got = [s.mask.numpy() for w in ksf.collect_wrappers(model) for s in w.flip_states]
  for g, wnt, o in zip(got, want, old):
    np.testing.assert_array_equal(g > 0, wnt)
    assert np.all(g <= o), "masks must be monotone"
  flips = [s.flips.numpy() for w in ksf.collect_wrappers(model) for s in w.flip_states]
  assert all(np.all(f[g == 0] == 0) for f, g in zip(flips, got))


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_kept_count_is_exact(scope):
  model = _model("magnitude", scope, 0.6)
  for w in ksf.collect_wrappers(model):
    w.pruning_step.assign(1)
  _update(model)
  masks = [m for m in ksf.masks(model).values()]
  if scope == "layer":
    assert [int(m.sum()) for m in masks] == [tu.reference_kept(m.size, 0.6) for m in masks]
  else:
    assert sum(int(m.sum()) for m in masks) == tu.reference_kept(sum(m.size for m in masks), 0.6)


@pytest.mark.parametrize("min_flips", [1, 2, 3])
@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_flip_triggered_pruning(min_flips, sparsity, scope):
  model = _model("sign_flip", scope, sparsity, min_flips=min_flips)
  _set_random_state(model, seed=min_flips)
  want = _reference_masks(model, "sign_flip", scope, sparsity, min_flips)
  _update(model)
  for g, wnt in zip(ksf.masks(model).values(), want):
    np.testing.assert_array_equal(g > 0, wnt)


def test_flip_triggered_prunes_all_flippers_when_cap_allows():
  model = _model("sign_flip", "layer", 0.9, min_flips=2)
  _set_random_state(model, seed=0)
  before = {n: (ksf.flip_counts(model)[n], m) for n, m in ksf.masks(model).items()}
  _update(model)
  for n, m in ksf.masks(model).items():
    flips, old = before[n]
    expected = (old > 0) & (flips < 2)
    if expected.sum() >= tu.reference_kept(m.size, 0.9):
      np.testing.assert_array_equal(m > 0, expected)


def test_layer_and_global_differ_and_global_hits_overall_target():
  model = _model("magnitude", "global", 0.8)
  rng = np.random.RandomState(0)
  for i, w in enumerate(ksf.collect_wrappers(model)):
    w.flip_states[0].weight.assign(rng.randn(*w.flip_states[0].weight.shape) * (i + 1))
    w.pruning_step.assign(1)
  _update(model)
  masks = list(ksf.masks(model).values())
  per_layer = [1 - m.mean() for m in masks]
  total = sum(m.size for m in masks)
  assert sum(int(m.sum()) for m in masks) == tu.reference_kept(total, 0.8)
  assert max(per_layer) - min(per_layer) > 0.2  # larger-scale layers keep more


def test_random_criterion_exact_count_and_reproducible():
  def masks(seed):
    keras.backend.clear_session()  # the same layer names: Random is keyed by weight name
    keras.utils.set_random_seed(0)
    m = _model("magnitude", "layer", 0.5)
    for w in ksf.collect_wrappers(m):
      w.criterion = w.pruning_obj._criterion = criteria.Random(seed)
      w.pruning_step.assign(1)
    _update(m)
    return list(ksf.masks(m).values())
  a, b, c = masks(1), masks(1), masks(2)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not all(np.array_equal(x, y) for x, y in zip(a, c))
  assert [int(x.sum()) for x in a] == [tu.reference_kept(x.size, 0.5) for x in a]


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(FORMULAS)), st.sampled_from(["layer", "global"]),
       st.floats(0.0, 0.99), st.integers(0, 10_000))
def test_property_exact_counts_monotone_and_zero_flips(name, scope, sparsity, seed):
  model = _model(name, scope, sparsity)
  _set_random_state(model, seed)
  before = [m.copy() for m in ksf.masks(model).values()]
  _update(model)
  after = list(ksf.masks(model).values())
  alive = sum(int(b.sum()) for b in before)
  if scope == "layer":
    for b, a in zip(before, after):
      assert int(a.sum()) == min(tu.reference_kept(a.size, sparsity), int(b.sum()))
  else:
    total = sum(a.size for a in after)
    assert sum(int(a.sum()) for a in after) == min(tu.reference_kept(total, sparsity), alive)
  for b, a, f in zip(before, after, ksf.flip_counts(model).values()):
    assert np.all(a <= b) and np.all(f[a == 0] == 0)


def test_block_masks_equal_tfmot_for_magnitude():
  sched = lambda: tfmot.sparsity.keras.ConstantSparsity(0.6, 0, frequency=1)  # noqa: E731
  keras.utils.set_random_seed(0)
  ours = ksf.prune_sign_flip(keras.layers.Dense(12), pruning_schedule=sched(),
                             criterion="magnitude", block_size=(2, 3), block_pooling_type="MAX")
  theirs = tfmot.sparsity.keras.prune_low_magnitude(
      keras.layers.Dense(12), pruning_schedule=sched(), block_size=(2, 3),
      block_pooling_type="MAX")
  for layer in (ours, theirs):
    layer.build((None, 10))
  kernel = np.random.RandomState(1).randn(10, 12).astype(np.float32)
  for layer in (ours, theirs):
    layer.layer.kernel.assign(kernel)
    layer.pruning_step.assign(1)
    layer.pruning_obj.conditional_mask_update()
  a, b = ours.pruning_vars[0][1].numpy(), theirs.pruning_vars[0][1].numpy()
  np.testing.assert_array_equal(a, b)
  assert 0.4 < 1 - a.mean() < 0.8


def test_m_by_n_masks_keep_two_of_every_four():
  layer = ksf.prune_sign_flip(
      keras.layers.Dense(8), criterion="hybrid", sparsity_m_by_n=(2, 4),
      pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1))
  layer.build((None, 16))
  layer.pruning_step.assign(1)
  layer.pruning_obj.conditional_mask_update()
  mask = layer.pruning_vars[0][1].numpy()
  # TF-MOT's m-by-n groups 4 consecutive input weights of each output unit.
  groups = mask.T.reshape(8, 4, 4)
  assert np.all(groups.sum(axis=-1) == 2)


def test_random_masks_differ_for_layers_wrapped_one_at_a_time():
  """Random is keyed by the weight's name, not the wrapper's position (0 for each here)."""
  schedule = lambda: tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1)  # noqa: E731
  keras.utils.set_random_seed(0)
  first = ksf.prune_sign_flip(keras.layers.Dense(16, name="first"), schedule(),
                              criterion="random")
  second = ksf.prune_sign_flip(keras.layers.Dense(16, name="second"), schedule(),
                               criterion="random")
  model = keras.Sequential([keras.Input((16,)), first, second])
  model.compile("sgd", "mse")
  x = np.random.RandomState(0).randn(8, 16).astype("float32")
  model.fit(x, x, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  a, b = (w.flip_states[0].mask.numpy() for w in (first, second))
  assert a.mean() == b.mean() == 0.5
  assert np.mean(a != b) > 0.3  # independent halves differ in about half the places
  keys = [w.flip_states[0].key for w in (first, second)]
  assert keys == [criteria.tensor_key("first/kernel"), criteria.tensor_key("second/kernel")]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_sign_flip_with_no_flips_equals_magnitude(scope):
  """Equal flip counts fall back to |w| (then position), as Magnitude ranks."""
  got = {}
  for name in ("sign_flip", "magnitude"):
    model = _model(name, scope, 0.6)
    _set_random_state(model, 3)
    for s in ksf.flip_states(model):
      s.flips.assign(np.zeros(s.flips.shape, np.int32))
    _update(model)
    got[name] = list(ksf.masks(model).values())
  for a, b in zip(got["sign_flip"], got["magnitude"]):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("criterion", [None, "sign_flip"])
def test_masks_of_iid_weights_do_not_follow_position(criterion):
  """LeNet-300-100's first layer at 80%, before any flip: each quarter of the input
  rows keeps about 20% (ties by position kept rows 0-156 only: [0.8, 0, 0, 0])."""
  keras.utils.set_random_seed(0)
  layer = keras.layers.Dense(300, name="fc1")
  kwargs = {} if criterion is None else {"criterion": criterion}  # None: the default
  model = keras.Sequential([keras.Input((784,)), ksf.prune_sign_flip(
      layer, tfmot.sparsity.keras.ConstantSparsity(0.8, 0, frequency=1), **kwargs)])
  model.compile(keras.optimizers.SGD(0.0), "mse")  # lr 0: the weights stay i.i.d.
  x = np.random.RandomState(0).randn(4, 784).astype("float32")
  model.fit(x, np.zeros((4, 300), "float32"), epochs=1, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  mask = ksf.masks(model)[layer.kernel.name]
  quarters = [float(q.mean()) for q in np.array_split(mask, 4, axis=0)]
  # 58,800 weights a quarter: a fair 20% has std 0.0016, so 0.02 is > 10 sigma.
  np.testing.assert_allclose(quarters, 0.2, atol=0.02)
  assert abs(mask.mean() - 0.2) < 1e-3


class _HostScored(criteria.Criterion):
  """|w| computed through a host call, which XLA cannot compile."""

  def score(self, weight, state, xp=None):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.numpy_function(lambda w: np.abs(w).astype(np.float32), [weight], tf.float32,
                             stateful=False)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_criterion_without_xla_scores_with_plain_ops(scope):
  assert not _HostScored.xla_compatible and criteria.Hybrid.xla_compatible
  model = _model("magnitude", scope, 0.75)
  _set_random_state(model, seed=3)
  want = _reference_masks(model, "magnitude", scope, 0.75)
  for w in ksf.collect_wrappers(model):
    w.criterion = w.pruning_obj._criterion = _HostScored()  # pylint: disable=protected-access
  _update(model)
  got = [s.mask.numpy() > 0 for w in ksf.collect_wrappers(model) for s in w.flip_states]
  for g, wnt in zip(got, want):
    np.testing.assert_array_equal(g, wnt)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_threshold_is_the_lowest_kept_score(scope):
  model = _model("hybrid", scope, 0.5)
  _set_random_state(model, seed=5)
  _update(model)
  states = [s for w in ksf.collect_wrappers(model) for s in w.flip_states]
  groups = [states] if scope == "global" else [[s] for s in states]
  for group in groups:
    kept = np.concatenate([FORMULAS["hybrid"](s.weight.numpy(), s.flips.numpy(), None)[
        s.mask.numpy() > 0] for s in group])
    for s in group:
      np.testing.assert_allclose(s.threshold.numpy(), kept.min(), rtol=1e-6)


def test_one_layer_with_weights_of_many_shapes_prunes_each_in_a_fit():
  """An RNN of LSTM, GRU and SimpleRNN cells: six kernels of five shapes in one
  wrapper, their mask updates traced in one train step (TF-MOT's RNN-cell test)."""
  layer = keras.layers.RNN([keras.layers.LSTMCell(10), keras.layers.GRUCell(10),
                            keras.layers.SimpleRNNCell(10)])
  model = keras.Sequential([ksf.prune_sign_flip(
      layer, input_shape=(3, 4), criterion="magnitude",
      pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1))])
  model.compile(loss="mse", optimizer="sgd")
  rng = np.random.RandomState(0)
  model.fit(rng.randn(32, 3, 4), rng.randn(32, 10), batch_size=32, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  states = [s for w in ksf.collect_wrappers(model) for s in w.flip_states]
  assert len({tuple(s.weight.shape) for s in states}) >= 4
  for s in states:
    mask = s.mask.numpy() > 0
    assert mask.sum() == tu.reference_kept(mask.size, 0.5)
    assert np.all(s.weight.numpy()[~mask] == 0)
