"""The criteria conformance suite on the tf_keras path (see tests/keras3/conformance.py)."""
import numpy as np
import pytest

from keras_signflip import criteria
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras import mask_update
from keras_signflip.tf_keras._framework import tf
from tests.keras3 import conformance


def compute_tf_keras(arrays, name, scope, sparsity, min_flips, normalization=None):
  states = [state_lib.FlipState(
      tf.Variable(w), tf.Variable(m), tf.Variable(0.0), tf.Variable(np.sign(w).astype(np.int8)),
      tf.Variable(f), tf.Variable(r), i, flips_at_update=tf.Variable(a))
      for i, (w, m, f, r, a) in enumerate(arrays)]
  groups = [states] if scope == "global" else [[s] for s in states]
  out = []
  for group in groups:
    masks, _ = mask_update.compute_masks(group, sparsity, criteria.get(name), min_flips,
                                         normalization=normalization)
    out += [m.numpy() for m in masks]
  return out


@pytest.mark.parametrize("case", conformance.cases(), ids=lambda c: c[0])
def test_tf_keras_masks_equal_numpy_reference(case):
  got = compute_tf_keras(conformance.arrays(case[5]), *case[1:5])
  for g, e in zip(got, conformance.reference_masks(case)):
    np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("name", ["magnitude", "hybrid", "movement"])
def test_l2_normalised_global_masks_equal_numpy_reference(name):
  case = (f"{name}-global-0.75", name, "global", 0.75, None, 3)
  got = compute_tf_keras(conformance.arrays(3), name, "global", 0.75, None, normalization="l2")
  want = conformance.reference_masks(case, normalization="l2")
  for g, e in zip(got, want):
    np.testing.assert_array_equal(g, e)
  plain = conformance.reference_masks(case)
  assert any(np.any(p != e) for p, e in zip(plain, want)), "normalisation changed nothing"
