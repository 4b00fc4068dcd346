"""FlipOut's recipe (keras_signflip.flipout) against the paper's numbers and NumPy."""
import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip import flipout
from keras_signflip.lottery import loop as lottery
from keras_signflip.tf_keras._framework import keras, tf


@pytest.mark.parametrize("target,m", [(0.75, 2), (0.9375, 4), (0.984375, 6), (0.99609375, 8),
                                      (0.999, 10), (0.9, 4), (0.98, 6), (0.995, 8), (0.998, 9)])
def test_events_are_the_halvings_that_reach_the_target(target, m):
  assert flipout.events(target) == m
  assert 0.5 ** m <= 1 - target + 1e-12 < 0.5 ** (m - 1)


def test_event_epochs_are_flipouts_published_frequencies():
  # FlipOut, 350 epochs: prune every 117 / 70 / 50 / 39 / 32 epochs for
  # 75 / 93.75 / 98.4 / 99.6 / 99.9 % (m = 2 / 4 / 6 / 8 / 10 events).
  for target, every in [(0.75, 117), (0.9375, 70), (0.984375, 50), (0.99609375, 39),
                        (0.999, 32)]:
    steps = flipout.event_steps(target, 350, 391)
    assert steps == [k * every * 391 for k in range(1, len(steps) + 1)]
    assert steps[-1] < 350 * 391  # recovery epochs are left after the last event


def test_short_runs_space_events_in_steps():
  steps = flipout.event_steps(0.999, 10, 100)  # 10 events in 1,000 steps
  assert steps == [91 * k for k in range(1, 11)] and steps[-1] < 1000


def test_every_run_length_keeps_a_recovery_tail():
  # 30 epochs at 99.9%: round(30 / 11) = 3 epochs would put event 10 at epoch 30.
  assert flipout.event_steps(0.999, 30, 430) == [round(30 * 430 / 11) * k for k in range(1, 11)]
  for target in (0.9, 0.98, 0.995, 0.998, 0.999):
    m = flipout.events(target)
    for epochs, steps_per_epoch in ([(e, 50) for e in range(1, 400)]
                                    + [(1, s) for s in range(m + 1, 200)]):
      steps = flipout.event_steps(target, epochs, steps_per_epoch)
      assert len(steps) == m and 0 < steps[0] and steps[-1] < epochs * steps_per_epoch


def test_bad_arguments_are_clear_errors():
  with pytest.raises(ValueError, match="target"):
    flipout.events(1.0)
  with pytest.raises(ValueError, match="epochs"):
    flipout.event_steps(0.9, 0, 10)
  with pytest.raises(ValueError, match="too short"):
    flipout.event_steps(0.999, 1, 5)


def _tiny(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, name="a"),
                           keras.layers.Dense(16, name="b"), keras.layers.Dense(4, name="c")])


def test_kept_counts_halve_at_each_event_then_hold():
  epochs, steps_per_epoch, target = 14, 5, 0.98  # m = 6 events, every 2 epochs
  model = ksf.prune_sign_flip(_tiny(), **flipout.prune_kwargs(target, epochs, steps_per_epoch))
  model.compile(flipout.optimizer(epochs, steps_per_epoch, noise=1.0), "mse")
  n = sum(int(np.prod(s.weight.shape)) for s in ksf.flip_states(model))
  kept = []

  class Record(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      kept.append(sum(int(s.mask.numpy().sum()) for s in ksf.flip_states(model)))

  x = np.random.RandomState(0).normal(size=(40, 8)).astype("float32")
  y = np.random.RandomState(1).normal(size=(40, 4)).astype("float32")
  model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
            callbacks=[ksf.UpdatePruningStep(), Record()])
  events = flipout.event_steps(target, epochs, steps_per_epoch)
  assert events == [10, 20, 30, 40, 50, 60]
  expected, m = [], 0
  for step in range(1, epochs * steps_per_epoch + 1):  # step t = batch t - 1
    m += step in events
    expected.append(max(flipout.kept(n, m), round(n * (1 - target))))
  assert kept == expected
  for s in ksf.flip_states(model):  # pruned weights are exactly zero
    assert not np.any(s.weight.numpy()[s.mask.numpy() == 0])


def test_optimizer_is_pytorch_sgd_with_coupled_decay_and_step_decays():
  """Without noise: PyTorch's SGD(momentum, weight_decay) in NumPy while the rate is
  constant; across a decay, Keras' momentum form (the buffer holds lr * d), as
  docs/flipout_differences.md says."""
  epochs, steps_per_epoch = 7, 1  # decays after steps 3 and 5
  w0 = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
  var = tf.Variable(w0)
  opt = flipout.optimizer(epochs, steps_per_epoch, noise=0)
  grads = [np.array([[0.1, -0.2], [0.3, 0.05]], np.float32) * (i + 1) for i in range(7)]
  w, buf = w0.astype(np.float64), np.zeros_like(w0, np.float64)
  w_keras, v = w.copy(), np.zeros_like(w)
  for i, g in enumerate(grads):
    opt.apply_gradients([(tf.constant(g), var)])
    lr = 0.1 if i < 3 else 0.01 if i < 5 else 0.001   # boundaries after steps 3 and 5
    d = g + flipout.WEIGHT_DECAY * w                  # torch: d_p = g + wd * p
    buf = flipout.MOMENTUM * buf + d if i else d      # buf = momentum * buf + d_p
    w = w - lr * buf
    v = flipout.MOMENTUM * v - lr * (g + flipout.WEIGHT_DECAY * w_keras)
    w_keras = w_keras + v
    np.testing.assert_allclose(var.numpy(), w_keras, rtol=1e-5, atol=1e-7)
    if i < 3:
      np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-7)


def test_optimizer_for_keras3_is_the_same_recipe():
  """keras=<Keras 3>: a Keras 3 SGD with the tf_keras one's decays, noise and decay
  (its steps are tested per backend in tests/keras3/test_keras3_noise.py)."""
  import keras as keras3  # pylint: disable=g-import-not-at-top
  ours, theirs = (flipout.optimizer(7, 10, keras=k, noise=0.5, seed=2) for k in (keras3, None))
  assert isinstance(ours, keras3.optimizers.SGD) and ours.momentum == theirs.momentum == 0.9
  assert (ours.noise_factor, ours.noise_seed, ours.coupled_weight_decay) == (
      theirs.noise_factor, theirs.noise_seed, theirs.coupled_weight_decay) == (
          0.5, 2, flipout.WEIGHT_DECAY)
  schedules = [o._learning_rate.get_config() for o in (ours, theirs)]  # pylint: disable=protected-access
  for key in ("boundaries", "values"):
    assert schedules[0][key] == schedules[1][key], key
  assert schedules[0]["boundaries"] == [29, 49]  # the decays start steps 31 and 51 of 70


def test_lottery_round_sparsities_give_exact_kept_counts():
  config = lottery.LotteryConfig(round_sparsities=[0.5, 0.9, 0.999], scope="global")
  assert config.rounds == 3
  assert [lottery.kept_counts([600, 400], config, r) for r in range(4)] == \
      [[1000], [500], [100], [1]]
  layer = lottery.LotteryConfig(round_sparsities=[0.9], scope="layer")
  assert lottery.kept_counts([600, 40], layer, 1) == [60, 4]
  for bad in ([0.9, 0.5], [], [1.0]):
    with pytest.raises(ValueError, match="round_sparsities"):
      lottery.LotteryConfig(round_sparsities=bad)
  with pytest.raises(ValueError, match="rounds"):
    lottery.LotteryConfig(rounds=2, round_sparsities=[0.5, 0.9, 0.99])
