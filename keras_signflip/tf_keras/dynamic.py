"""Dynamic sparse training: SET (Mocanu et al. 2018) and RigL (Evci et al. 2020).

A `prune_sign_flip` model whose masks are already sparse (a schedule that
prunes once at step 0, or `snip`) is trained with this callback. Every
`frequency` steps from `begin_step` to `end_step`, per wrapped weight tensor:

    n    = round(f(t) * active)    f(t) = fraction / 2 * (1 + cos(pi * t / end_step))  (RigL)
                                   f(t) = fraction                                     (SET)
    drop the n active weights of smallest |w|
    grow n weights among those inactive before the drop:
         SET:  uniformly at random;  RigL: the largest |g| of the loss gradient on one batch
    grown weights start at 0, with zero optimizer slots, flips and previous sign

so each tensor keeps its sparsity exactly. Masks grow as well as shrink here
(the wrappers' own schedules only ever shrink them); `regrown` counts every
regrown weight. Ties go by position (a stable ranking), as everywhere.
"""
import math

import numpy as np

from keras_signflip.tf_keras import prune as prune_lib
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras._compat import keras, tf

__all__ = ["DynamicSparsity", "optimizer_slots"]


def optimizer_slots(optimizer, weight):
  """The optimizer's slot variables of `weight` (current and legacy tf_keras optimizers)."""
  if optimizer is None:
    return []
  name = getattr(weight, "_shared_name", None) or weight.name.split(":")[0]
  variables = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
  return [v for v in variables if tuple(v.shape) == tuple(weight.shape)
          and (f"/{name}:" in v.name or f"/{name}/" in v.name)]


class DynamicSparsity(keras.callbacks.Callback):
  """SET or RigL mask updates during `fit` (see the module docstring).

  Args:
    method: "rigl" or "set".
    fraction: the update fraction at step 0 (RigL's alpha, SET's zeta), in (0, 1).
    frequency: steps between updates (RigL's delta T), >= 1.
    end_step: last update step (RigL stops at 3/4 of training), >= 1.
    begin_step: first update step. Defaults to `frequency`.
    data: RigL: an iterable of (x, y) batches for the gradient at each update.
    loss: RigL: the loss (a Keras loss name, function or instance).
    seed: SET's random regrowth.
  """

  def __init__(self, method="rigl", fraction=0.3, frequency=100, end_step=1000, begin_step=None,
               data=None, loss=None, seed=0):
    super().__init__()
    if method not in ("rigl", "set"):
      raise ValueError(f"Received an invalid value for `method`, expected 'rigl' or 'set'. "
                       f"Received: method={method!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
      raise ValueError("Received an invalid value for `fraction`, expected a number in (0, 1). "
                       f"Received: fraction={fraction!r}")
    for name, value in (("frequency", frequency), ("end_step", end_step)):
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Received an invalid value for `{name}`, expected an integer >= 1. "
                         f"Received: {name}={value!r}")
    if method == "rigl" and (data is None or loss is None):
      raise ValueError("RigL grows by the loss gradient: pass `data` (batches of (x, y)) and "
                       "`loss`.")
    self.method, self.fraction, self.frequency = method, float(fraction), frequency
    self.end_step = end_step
    self.begin_step = frequency if begin_step is None else int(begin_step)
    self.loss = None if loss is None else keras.losses.get(loss)
    self._data, self._batches = data, None
    self._rng = np.random.RandomState(seed)
    self.regrown, self.updates, self._step = 0, 0, 0

  def update_fraction(self, step):
    """f(step): RigL's cosine decay to 0 at `end_step`; SET's constant."""
    if self.method == "set":
      return self.fraction
    return self.fraction / 2 * (1 + math.cos(math.pi * step / self.end_step))

  def on_train_begin(self, logs=None):
    self._states = prune_lib.flip_states(self.model)
    if not self._states:
      raise ValueError("DynamicSparsity needs a model wrapped by prune_sign_flip.")
    self._step = int(self.model.optimizer.iterations.numpy())

  def on_train_batch_begin(self, batch, logs=None):
    self._step += 1
    t = self._step
    if self.begin_step <= t <= self.end_step and (t - self.begin_step) % self.frequency == 0:
      self.update(t)

  def _gradients(self):
    if self._batches is None:
      self._batches = iter(self._data)
    try:
      x, y = next(self._batches)
    except StopIteration:
      self._batches = iter(self._data)
      x, y = next(self._batches)
    weights = [s.weight for s in self._states]
    with tf.GradientTape() as tape:
      value = tf.reduce_mean(self.loss(y, self.model(x, training=True)))
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(value, weights)]

  def update(self, step):
    """One drop-and-grow update of every wrapped tensor at `step`."""
    fraction = self.update_fraction(step)
    grads = self._gradients() if self.method == "rigl" else [None] * len(self._states)
    optimizer = getattr(self.model, "optimizer", None)
    for s, g in zip(self._states, grads):
      mask = s.mask.numpy().ravel() > 0
      w = state_lib.float32_value(s.weight).numpy().ravel()
      n = min(int(round(fraction * mask.sum())), int((~mask).sum()))
      if n == 0:
        continue
      active, inactive = np.flatnonzero(mask), np.flatnonzero(~mask)
      drop = active[np.argsort(np.abs(w[active]), kind="stable")[:n]]
      if self.method == "set":
        grow = self._rng.choice(inactive, n, replace=False)
      else:
        grow = inactive[np.argsort(-np.abs(g.ravel()[inactive]), kind="stable")[:n]]
      new = mask.copy()
      new[drop], new[grow] = False, True
      reset = np.zeros(mask.shape, bool)
      reset[grow] = True
      new, reset = new.reshape(s.mask.shape), reset.reshape(s.mask.shape)
      s.mask.assign(new.astype(s.mask.dtype.as_numpy_dtype))
      for v in [state_lib.master_variable(s.weight)] + optimizer_slots(optimizer, s.weight):
        v.assign(np.where(reset, 0, v.numpy()).astype(v.dtype.as_numpy_dtype))
      s.flips.assign(np.where(new, s.flips.numpy(), 0).astype(np.int32))
      state_lib.apply_mask(s)
      state_lib.sync_signs(s)
      self.regrown += n
    self.updates += 1
