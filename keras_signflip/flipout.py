"""FlipOut's training recipe (Apostol, Stol & Forré 2020) in one place.

FlipOut prunes 50% of the remaining weights at m evenly spaced events, with
m the halvings that reach the target:

    m         = ceil(log2(1 / (1 - target)))     # 99.9% -> 10, 98.4% -> 6
    every     = round(epochs / (m + 1)) epochs   # 350 epochs, m = 10 -> 32
    events    = every, 2 * every, ..., m * every # then epochs - m * every to recover
    kept      = round(n * 0.5 ** m)              # capped at the target (ours)

ranking all kernels together (biases and normalisation excluded) by
|w|^2 / (flips + 1), flips counted every step and never reset; per-layer
gradient noise N(0, 1) * lambda * ||g||_2 / sqrt(n), lambda = 1 (on the prunable
kernels by default; FlipOut's published runs put it on every parameter:
`noise_on="all"`); SGD, lr 0.1,
momentum 0.9, PyTorch's (coupled) weight decay 5e-4, learning rate x0.1 at
3/7 and 5/7 of training (epochs 150 and 250 of 350).

When whole epochs cannot leave a recovery tail (a run shorter than m + 1
epochs, or one whose rounding puts the m-th event at its end) the events are
spaced in steps instead (round(total_steps / (m + 1))), so every target keeps
its recovery tail. See docs/flipout_differences.md for where ours differs.

    kwargs = ksf.flipout.prune_kwargs(0.999, epochs=350, steps_per_epoch=391)
    model = ksf.prune_sign_flip(base, **kwargs)
    model.compile(ksf.flipout.optimizer(350, 391), loss, metrics)

For a Keras 3 model pass its module: `prune_kwargs(..., keras=keras)` and
`optimizer(..., keras=keras)`.
"""
import math

from keras_signflip import arguments
from keras_signflip import families

__all__ = ["events", "event_steps", "kept", "prune_kwargs", "optimizer", "check_noise",
           "noise_settings", "NOISE_ON", "LEARNING_RATE", "MOMENTUM", "WEIGHT_DECAY", "NOISE",
           "DECAY_AT"]

LEARNING_RATE = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
NOISE = 1.0
DECAY_AT = (150 / 350, 250 / 350)  # fractions of training; x0.1 at each


def _check_target(target):
  if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
    raise ValueError("Received an invalid value for `target`, expected a sparsity in "
                     f"(0, 1), e.g. 0.999. Received: target={target!r}")


def events(target):
  """m = ceil(log2(1 / (1 - target))): the 50% events that reach `target`."""
  _check_target(target)
  return max(math.ceil(math.log2(1.0 / (1.0 - target)) - 1e-9), 1)


def _check_run(epochs, steps_per_epoch):
  for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"Received an invalid value for `{name}`, expected a positive "
                       f"integer. Received: {name}={value!r}")


def _frequency(target, epochs, steps_per_epoch):
  """Steps between events: FlipOut's round(epochs / (m + 1)) epochs, else
  round(steps / (m + 1)) steps, else floor(steps / (m + 1)): the first that
  leaves a recovery tail after the m-th event (whole epochs do not in runs
  shorter than m + 1 epochs, nor where rounding up puts the m-th event at the
  end: 30 epochs at 99.9% would prune every 3 epochs, the 10th at epoch 30)."""
  m = events(target)
  total = epochs * steps_per_epoch
  for frequency in (round(epochs / (m + 1)) * steps_per_epoch, round(total / (m + 1)),
                    total // (m + 1)):
    if frequency >= 1 and m * frequency < total:
      return frequency
  raise ValueError(f"A {epochs}-epoch run of {steps_per_epoch} steps is too short for "
                   f"{m} pruning events; give it at least {m + 1} steps.")


def event_steps(target, epochs, steps_per_epoch):
  """The training steps (counted from 1, TF-MOT's `pruning_step`) of the events."""
  _check_run(epochs, steps_per_epoch)
  frequency = _frequency(target, epochs, steps_per_epoch)
  return [k * frequency for k in range(1, events(target) + 1)]


def kept(n, m):
  """round(n * 0.5 ** m): weights left of n after m events (FlipOut's halving)."""
  return round(n * 0.5 ** m)


def prune_kwargs(target, epochs, steps_per_epoch, keras=None):
  """`prune_sign_flip` arguments for FlipOut: global Hybrid(2), 50% events.

  Args:
    target: final sparsity in (0, 1); the last event is capped at it.
    epochs, steps_per_epoch: the length of the run, positive integers.
    keras: the Keras module of the model (tf_keras or keras); None: tf_keras.
  """
  from keras_signflip import criteria  # pylint: disable=g-import-not-at-top
  steps = event_steps(target, epochs, steps_per_epoch)
  schedule = families.of_keras(keras).schedules.GeometricSparsity(
      0.5, frequency=steps[0], begin_step=0, end_step=steps[-1], max_sparsity=float(target))
  return {"pruning_schedule": schedule, "criterion": criteria.Hybrid(power=2),
          "scope": "global"}


def optimizer(epochs, steps_per_epoch, keras=None, noise=NOISE, seed=0,
              learning_rate=LEARNING_RATE, noise_on="prunable"):
  """FlipOut's SGD: momentum 0.9, coupled weight decay 5e-4, x0.1 decays, noise.

  Keras' `SGD(weight_decay=...)` is decoupled (w -= lr * wd * w, outside the
  momentum); FlipOut's PyTorch SGD adds wd * w to the gradient, inside it, so
  the weight decay is added to the gradients here, after the noise, as
  PyTorch does. Keras' SGD keeps its velocity as v = 0.9 v - lr * g, PyTorch's
  buffer as b = 0.9 b + g (the step lr * b): the same while the rate is
  constant, the old rate fading out over ~10 steps after each decay.

  Args:
    epochs, steps_per_epoch: the length of the run (for the decay steps).
    keras: the Keras module of the model: None or tf_keras (a tf_keras SGD
      with `keras_signflip.tf_keras.gradient_noise`'s hook), or Keras 3 (a Keras 3 SGD
      with `keras_signflip.keras3.optimizers.with_gradient_noise`'s).
    noise: FlipOut's lambda (0 for none).
    seed: the noise's seed.
    learning_rate: the initial rate. Defaults to FlipOut's 0.1.
    noise_on: "prunable" (the pruned layers' kernels; the default) or "all"
      (every trainable variable, as FlipOut's published runs).
  """
  _check_run(epochs, steps_per_epoch)
  total = epochs * steps_per_epoch
  # PiecewiseConstantDecay (the same in tf_keras and Keras 3) keeps a rate
  # while iterations <= boundary, and iterations count from 0: the decay at
  # step round(f * total) (FlipOut's epoch 150 of 350) starts the
  # (round(f * total) + 1)-th step.
  boundaries = [max(round(f * total), 1) - 1 for f in DECAY_AT]
  lr = [learning_rate, learning_rate * 0.1, learning_rate * 0.01]
  family = families.of_keras(keras)
  sgd = family.keras.optimizers.SGD(
      family.keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, lr),
      momentum=MOMENTUM)
  return family.with_gradient_noise(sgd, noise, seed=seed, weight_decay=WEIGHT_DECAY,
                                    noise_on=noise_on)


NOISE_ON = ("prunable", "all")


def check_noise(factor, seed, weight_decay, noise_on="prunable"):
  """`with_gradient_noise`'s (factor, seed, weight_decay, noise_on) as (float >= 0, int,
  float >= 0, one of NOISE_ON), or a ValueError naming the bad one (both families check
  through this)."""
  if noise_on not in NOISE_ON:
    raise ValueError(f"noise_on={noise_on!r} must be 'prunable' (the pruned layers' kernels) "
                     "or 'all' (every trainable variable, as FlipOut's published runs).")
  return (arguments.check_nonnegative("factor", factor), arguments.check_integer("seed", seed),
          arguments.check_nonnegative("weight_decay", weight_decay), noise_on)


def noise_settings(optimizer):
  """(factor, seed, weight_decay, noise_on) of an optimizer made by either family's
  `with_gradient_noise` or `record_gradients`, else (0.0, 0, 0.0, "prunable"): what
  `record_gradients` keeps when it copies an optimizer that already adds noise."""
  if getattr(optimizer, "noise_factor", None) is None:
    return 0.0, 0, 0.0, "prunable"
  return (optimizer.noise_factor, optimizer.noise_seed, optimizer.coupled_weight_decay,
          optimizer.noise_on)
