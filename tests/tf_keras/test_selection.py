"""Exact top-k selection against a NumPy stable-sort reference."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from keras_signflip.tf_keras import selection
from keras_signflip.tf_keras._framework import tf
from tests import testing_utils as tu

_floats = st.one_of(
    st.floats(-1e6, 1e6, width=32),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), 1e-40]))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 40), elements=_floats), st.data())
def test_single_tensor_matches_stable_sort(scores, data):
  k = data.draw(st.integers(1, scores.size))
  mask = selection.select_top_k(tf.constant(scores), k).numpy()
  assert mask.sum() == k
  np.testing.assert_array_equal(mask, tu.reference_topk([scores], k)[0])


# Lists of small tensors of few distinct values: many ties, across tensors.
_tied_tensor_lists = st.lists(hnp.arrays(np.float32, st.integers(1, 20),
                                         elements=st.integers(-3, 3).map(float)),
                              min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(_tied_tensor_lists, st.data())
def test_global_ranking_matches_concatenated_sort(tensors, data):
  total = sum(t.size for t in tensors)
  k = data.draw(st.integers(1, total))
  masks = [m.numpy() for m in selection.select_top_k([tf.constant(t) for t in tensors], k)]
  assert sum(int(m.sum()) for m in masks) == k
  for got, want in zip(masks, tu.reference_topk(tensors, k)):
    np.testing.assert_array_equal(got, want)


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, 30, elements=_floats))
def test_sortable_keys_preserve_order(scores):
  keys = selection.sortable_keys(tf.constant(scores)).numpy().astype(np.int64)
  # TensorFlow flushes subnormals to zero; compare as it does.
  scores = np.where(np.abs(scores) < np.finfo(np.float32).tiny, 0, scores)
  for i in range(len(scores) - 1):
    a, b = scores[i], scores[i + 1]
    if a < b:
      assert keys[i] < keys[i + 1]
    elif a > b:
      assert keys[i] > keys[i + 1]


def test_threshold_separates_kept_from_pruned():
  scores = np.random.RandomState(0).randn(50, 20).astype(np.float32)
  mask = selection.select_top_k(tf.constant(scores), 137).numpy()
  assert scores[mask].min() > scores[~mask].max()


def test_large_tensor_exact_count_and_matches_reference():
  scores = np.random.RandomState(1).rand(300_000).astype(np.float32)
  scores[::7] = 0.5  # many ties straddling the threshold
  for k in (1, 12345, 150_000, 299_999):
    mask = selection.select_top_k(tf.constant(scores), k).numpy()
    np.testing.assert_array_equal(mask, tu.reference_topk([scores], k)[0])


@pytest.mark.parametrize("n", [1, 7, 10, 100, 1001, 4096 * 4096])
@pytest.mark.parametrize("sparsity", [0.0, 0.05, 0.5, 0.8, 0.95, 0.999])
def test_kept_count_is_tfmots(n, sparsity):
  assert int(selection.kept_count(n, sparsity)) == tu.reference_kept(n, sparsity)


@settings(max_examples=20, deadline=None)
@given(_tied_tensor_lists, st.data())
def test_selection_inside_xla_matches_reference(tensors, data):
  total = sum(t.size for t in tensors)
  k = data.draw(st.integers(1, total))
  run = tf.function(lambda: selection.select_top_k([tf.constant(t) for t in tensors], k),
                    jit_compile=True)
  for got, want in zip(run(), tu.reference_topk(tensors, k)):
    np.testing.assert_array_equal(got.numpy(), want)


# Pairs of tensor lists of few distinct values: ties in the score and in the secondary key.
_tied_pairs = st.integers(1, 4).flatmap(lambda n: st.lists(
    st.integers(1, 20).flatmap(lambda size: st.tuples(
        hnp.arrays(np.float32, size, elements=st.integers(-2, 2).map(float)),
        hnp.arrays(np.float32, size, elements=st.sampled_from(
            [0.0, -0.0, 0.5, 1.0, -1e6, float("-inf")])))),
    min_size=n, max_size=n))


@settings(max_examples=40, deadline=None)
@given(_tied_pairs, st.data(), st.booleans())
def test_secondary_key_ranks_ties_before_position(pairs, data, xla):
  scores, second = [p[0] for p in pairs], [p[1] for p in pairs]
  k = data.draw(st.integers(1, sum(s.size for s in scores)))

  def select():
    return selection.select_top_k([tf.constant(s) for s in scores], k,
                                  [tf.constant(s) for s in second])
  masks = tf.function(select, jit_compile=True)() if xla else select()
  assert sum(int(m.numpy().sum()) for m in masks) == k
  for got, want in zip(masks, tu.reference_topk(scores, k, second)):
    np.testing.assert_array_equal(got.numpy(), want)


def test_secondary_key_is_computed_only_when_ties_overflow():
  calls = []

  def second():
    calls.append(1)
    return [tf.constant([0.0, 9.0, 1.0, 2.0])]
  distinct = tf.constant([4.0, 1.0, 3.0, 2.0])
  mask = selection.select_top_k([distinct], 2, second)[0].numpy()
  np.testing.assert_array_equal(mask, [True, False, True, False])
  assert not calls  # no tie at the threshold: the key is never built
  tied = tf.constant([1.0, 1.0, 1.0, 5.0])
  mask = selection.select_top_k([tied], 2, second)[0].numpy()
  assert calls == [1]  # three scores tie for one place: ranked by the key
  np.testing.assert_array_equal(
      mask, tu.reference_topk([tied.numpy()], 2, [np.array([0.0, 9.0, 1.0, 2.0], np.float32)])[0])


def test_without_xla_the_fused_passes_run_as_plain_functions(monkeypatch):
  """Apple silicon and pluggable devices (tensorflow-metal) have no XLA: the
  same selection then runs in plain tf.functions (the fused helpers decide
  at their first call, so fresh ones are made here)."""
  from keras_signflip.tf_keras import _framework as _compat  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(_compat, "xla_available", lambda: False)
  for name in ("_hi_digits", "_lo_digits_in", "_at_least"):
    monkeypatch.setattr(selection, name, _compat.fused(getattr(selection, name).__wrapped__))
  scores = np.random.RandomState(2).rand(3000).astype(np.float32)
  scores[::5] = 0.25
  for k in (1, 1500, 2999):
    mask = selection.select_top_k(tf.constant(scores), k).numpy()
    np.testing.assert_array_equal(mask, tu.reference_topk([scores], k)[0])
  assert selection._at_least.jit_compile is False  # pylint: disable=protected-access
  assert _compat.fused(lambda x: x).jit_compile is None  # decided at the first call


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 40), elements=_floats), st.data(), st.booleans())
def test_kth_score_is_the_lowest_kept(scores, data, xla):
  k = data.draw(st.integers(1, scores.size))

  def select():
    return selection.select_top_k(tf.constant(scores), k, with_kth=True)
  mask, kth = tf.function(select, jit_compile=True)() if xla else select()
  kept = scores[mask.numpy()]
  kept = np.where(np.abs(kept) < np.finfo(np.float32).tiny, 0, kept)  # flushed subnormals
  assert kth.numpy() == kept.min()


def test_score_of_key_inverts_sortable_keys():
  scores = np.array([-np.inf, -3.5, -1e-30, 0.0, 2.0, 7e30, np.inf], np.float32)
  back = selection.score_of_key(selection.sortable_keys(tf.constant(scores))).numpy()
  np.testing.assert_array_equal(back, scores)
