"""Early-bird tickets (You et al. 2020), applied to weight masks.

After every epoch the callback draws the mask the criterion would produce at
`target_sparsity` (global ranking, the model's masks untouched), keeps the
last `window` masks, and stops training once the normalised Hamming distance
between the newest mask and every older one in the window is <= `epsilon`.

You et al. drew *channel* masks from batch-norm scales; applying the rule to
weight masks, with any criterion, is keras_signflip's own adaptation.
"""
import collections

import numpy as np

from keras_signflip import criteria as criteria_lib
from keras_signflip import families
from keras_signflip.callback_base import Callback

__all__ = ["EarlyBird", "hamming", "early_bird_reached"]


def hamming(a, b):
  """Fraction of positions where two masks (lists of arrays) differ."""
  diff = sum(int(np.sum((x > 0) != (y > 0))) for x, y in zip(a, b))
  return diff / sum(x.size for x in a)


def early_bird_reached(masks, epsilon=0.1, window=5):
  """True when the window is full and newest-vs-each-older distance <= epsilon."""
  if len(masks) < window:
    return False
  recent = list(masks)[-window:]
  return all(hamming(recent[-1], older) <= epsilon for older in recent[:-1])


class EarlyBird(Callback):
  """Stops training when the drawn mask has stopped changing.

  Args:
    target_sparsity: sparsity of the drawn masks, in (0, 1).
    criterion: a `Criterion` or name. Defaults to "magnitude".
    epsilon: distance threshold. Defaults to 0.1.
    window: masks kept. Defaults to 5.

  Attributes:
    epoch: the (0-based) epoch after which the rule held, or None.
    mask: {weight name: mask} drawn at that epoch (the early-bird ticket).
    distances: per epoch, the largest newest-vs-older distance in the window.
  """

  def __init__(self, target_sparsity, criterion="magnitude", epsilon=0.1, window=5):
    super().__init__()
    if not 0.0 < target_sparsity < 1.0:
      raise ValueError("Received an invalid value for `target_sparsity`, expected a "
                       f"number in (0, 1). Received: target_sparsity={target_sparsity!r}")
    if window < 2:
      raise ValueError(f"`window` must be >= 2. Received: window={window!r}")
    self.target_sparsity = float(target_sparsity)
    self.criterion = criteria_lib.get(criterion)
    self.epsilon = float(epsilon)
    self.window = int(window)

  def on_train_begin(self, logs=None):
    iterations = int(families.synced(self.model).optimizer.iterations.numpy())
    # Continue across fit calls of one training (one fit per epoch); reset
    # for another model or a restarted optimizer.
    if getattr(self, "_model_id", None) == id(self.model) and iterations >= self._iterations:
      return
    self._model_id = id(self.model)
    self._masks = collections.deque(maxlen=self.window)
    self.epoch, self.mask, self.distances = None, None, []
    self._family = families.of(self.model)
    self._states = self._family.flip_states(self.model)
    if not self._states:
      raise ValueError("EarlyBird needs a model wrapped by prune_sign_flip.")

  def on_train_end(self, logs=None):
    self._iterations = int(families.synced(self.model).optimizer.iterations.numpy())

  def draw(self):
    masks, _ = self._family.compute_masks(self._states, self.target_sparsity, self.criterion)
    return [self._family.to_numpy(m).astype(np.float32) for m in masks]

  def on_epoch_end(self, epoch, logs=None):
    families.synced(self.model)
    self._masks.append(self.draw())
    recent = list(self._masks)
    self.distances.append(max((hamming(recent[-1], o) for o in recent[:-1]), default=1.0))
    if early_bird_reached(self._masks, self.epsilon, self.window):
      self.epoch = epoch
      self.mask = {families.weight_name(s.weight): m for s, m in zip(self._states, recent[-1])}
      self.model.stop_training = True
      if logs is not None:
        logs["early_bird_epoch"] = epoch
