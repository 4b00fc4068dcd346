"""Saliency and MovementScore: the recorded sum of w * g against a NumPy recount from
the gradients of a custom loop, and the masks they rank."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras._framework import keras, tf, tfmot
from tests import testing_utils as tu


def _loop(criterion, schedule, steps=9):
  """A custom loop with recorded gradients; returns (model, NumPy sums per update window)."""
  x, y = tu.data()
  model = ksf.prune_sign_flip(tu.mlp(), pruning_schedule=schedule, criterion=criterion,
                              scope="global")
  opt = ksf.record_gradients(keras.optimizers.SGD(0.3))
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  callback = ksf.UpdatePruningStep()
  callback.set_model(model)
  model.optimizer = opt
  callback.on_train_begin()
  states = ksf.flip_states(model)
  sums = [np.zeros(s.weight.shape, np.float64) for s in states]
  history = []
  for i in range(steps):
    callback.on_train_batch_begin(i)
    xb, yb = x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]
    masks_before = [s.mask.numpy() for s in states]
    with tf.GradientTape() as tape:
      loss = loss_fn(yb, model(xb, training=True))
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    if any(np.any(s.mask.numpy() != m) for s, m in zip(states, masks_before)):
      history.append([s.copy() for s in sums])  # an update ran in this forward pass
      if criterion.resets_gradients:
        sums = [np.zeros_like(s) for s in sums]
      sums = [s * (st.mask.numpy() > 0) for s, st in zip(sums, states)]
    by_var = {id(v): g for v, g in zip(variables, grads)}
    for j, s in enumerate(states):
      sums[j] += s.weight.numpy().astype(np.float64) * by_var[id(s.weight)].numpy()
    opt.apply_gradients(zip(grads, variables))
    callback.on_train_batch_end(i)
  return model, sums, history


@pytest.mark.parametrize("criterion", [ksf.criteria.Saliency(), ksf.criteria.MovementScore()])
def test_recorded_sums_equal_numpy_recount(criterion):
  schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=4, end_step=4, frequency=1)
  model, sums, history = _loop(criterion, schedule)
  assert len(history) == 1
  for s, want in zip(ksf.flip_states(model), sums):
    np.testing.assert_allclose(s.grad_product.numpy(), want, rtol=1e-4, atol=1e-6)
  # The update kept the top half of the scores the sums gave at that step.
  before = history[0]
  scores = np.concatenate([(np.abs(b) if criterion.name == "saliency" else -b).ravel()
                           for b in before])
  kept = np.concatenate([s.mask.numpy().ravel() > 0 for s in ksf.flip_states(model)])
  assert kept.sum() == round(scores.size * 0.5)
  assert scores[kept].min() >= scores[~kept].max() - 1e-6


def test_gradient_criteria_need_a_recording_optimizer():
  x, y = tu.data()
  model = tu.compile_sgd(ksf.prune_sign_flip(tu.mlp(), pruning_schedule=tu.never(),
                                             criterion="saliency"))
  with pytest.raises(ValueError, match="record_gradients"):
    model.fit(x, y, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])


def test_fit_with_a_recording_optimizer_prunes_by_saliency():
  x, y = tu.data()
  model = ksf.prune_sign_flip(tu.mlp(), criterion="saliency", scope="global",
                              pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                                  0.6, begin_step=0, frequency=4))
  model.compile(ksf.record_gradients(keras.optimizers.Adam(0.01)),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  assert ksf.sparsity_report(model)["overall"] == pytest.approx(0.6, abs=0.01)
  for s in ksf.flip_states(model):
    assert np.all(np.isfinite(s.grad_product.numpy())) and np.any(s.grad_product.numpy())
