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
regrown weight and goes into each epoch's logs (History, TensorBoard). Ties go by
position (a stable ranking), as everywhere.

The rule is NumPy and serves both families; the model's family
(`keras_signflip.families.Family`) supplies the gradient (`rigl_gradients`)
and the assignment (`set_masks`).
"""
import math

import numpy as np

from keras_signflip import arguments
from keras_signflip import families
from keras_signflip.callback_base import Callback

__all__ = ["DynamicSparsity", "drop_and_grow"]


def drop_and_grow(mask, weight, n, grow_scores=None, rng=None):
  """(new mask, grown) for one tensor: drop the n smallest |w| of the active
  weights, grow the n largest `grow_scores` (RigL) or n random (SET, `rng`)
  of those inactive before the drop. All arrays flat; masks bool."""
  active, inactive = np.flatnonzero(mask), np.flatnonzero(~mask)
  drop = active[np.argsort(np.abs(weight[active]), kind="stable")[:n]]
  if grow_scores is None:
    grow = rng.choice(inactive, n, replace=False)
  else:
    grow = inactive[np.argsort(-grow_scores[inactive], kind="stable")[:n]]
  new, grown = mask.copy(), np.zeros(mask.shape, bool)
  new[drop], new[grow], grown[grow] = False, True, True
  return new, grown


class DynamicSparsity(Callback):
  """SET or RigL mask updates during `fit`, for models of either family.

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
    arguments.check_count("frequency", frequency)
    arguments.check_count("end_step", end_step)
    if method == "rigl" and (data is None or loss is None):
      raise ValueError("RigL grows by the loss gradient: pass `data` (batches of (x, y)) and "
                       "`loss`.")
    self.method, self.fraction, self.frequency = method, float(fraction), frequency
    self.end_step = end_step
    self.begin_step = frequency if begin_step is None else int(begin_step)
    self.loss = loss
    self._data, self._batches = data, None
    self._rng = np.random.RandomState(seed)
    self.regrown, self.updates, self._step = 0, 0, 0
    self._family = None

  def update_fraction(self, step):
    """f(step): RigL's cosine decay to 0 at `end_step`; SET's constant."""
    if self.method == "set":
      return self.fraction
    return self.fraction / 2 * (1 + math.cos(math.pi * step / self.end_step))

  def on_train_begin(self, logs=None):
    model = families.synced(self.model)
    self._family = families.of(model)
    self._states = self._family.flip_states(model)
    if not self._states:
      raise ValueError("DynamicSparsity needs a model wrapped by prune_sign_flip.")
    self._step = int(self._family.to_numpy(model.optimizer.iterations))

  def on_train_batch_begin(self, batch, logs=None):
    self._step += 1
    t = self._step
    if self.begin_step <= t <= self.end_step and (t - self.begin_step) % self.frequency == 0:
      self.update(t)

  def on_epoch_end(self, epoch, logs=None):
    """Puts `regrown` (total so far) in the epoch logs: History, CSVLogger and
    TensorBoard record it beside the loss."""
    if logs is not None:
      logs["regrown"] = self.regrown

  def _next_batch(self):
    if self._batches is None:
      self._batches = iter(self._data)
    try:
      return next(self._batches)
    except StopIteration:
      self._batches = iter(self._data)
      return next(self._batches)

  def update(self, step):
    """One drop-and-grow update of every wrapped tensor at `step`."""
    model = families.synced(self.model)
    fraction = self.update_fraction(step)
    grads = ([np.abs(g).ravel() for g in self._family.rigl_gradients(
        model, self._states, self._next_batch(), self.loss)]
             if self.method == "rigl" else [None] * len(self._states))
    to_numpy = self._family.to_numpy
    self._family.count_pending(model)  # what the last step flipped, before masks change
    changes = []
    for s, g in zip(self._states, grads):
      mask = to_numpy(s.mask).ravel() > 0
      n = min(int(round(fraction * mask.sum())), int((~mask).sum()))
      if n == 0:
        continue
      weight = to_numpy(s.weight).astype(np.float32).ravel()
      new, grown = drop_and_grow(mask, weight, n, g, self._rng)
      changes.append((s, new.reshape(s.mask.shape), grown.reshape(s.mask.shape)))
      self.regrown += n
    self._family.set_masks(changes, getattr(model, "optimizer", None))
    self.updates += 1
