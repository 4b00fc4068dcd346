"""Hoyer-Square (Yang, Wen & Li 2020, DeepHoyer): the penalty and its pruning, for both families.

Per kernel,

    H_S(w) = (sum |w|)^2 / (sum w^2 + eps)        (n for a dense w, 1 for a one-hot one)

added to the loss as `strength * sum over kernels of H_S`; eps (1e-12) keeps an
all-zero kernel finite. Training with it drives most weights towards 0 without
fixing how many; `threshold_prune` then prunes the weights with |w| below a
magnitude cut-off (the paper's trimming; the sparsity reached is what the
penalty made, so a comparison sweeps `strength` to reach its targets).

Each family's `hoyer` module puts the penalty on the model its own way
(tf_keras: a model loss; Keras 3: the variables' regularizer) through a
`HoyerSquare` regularizer built on `Penalty`; the rest is here.
"""
import numpy as np

from keras_signflip import arguments
from keras_signflip import families

__all__ = ["EPSILON", "hoyer_square", "Penalty", "threshold_prune"]

EPSILON = 1e-12


def hoyer_square(w, xp):
  """(sum |w|)^2 / (sum w^2 + eps), a float32 scalar (`xp`: `array_namespace`)."""
  w = xp.cast(w, "float32")
  return xp.square(xp.sum(xp.abs(w))) / (xp.sum(xp.square(w)) + EPSILON)


class Penalty:
  """`strength * H_S(w)`: the body of each family's `HoyerSquare` regularizer,
  which sets `xp` and registers itself with its Keras."""

  xp = None

  def __init__(self, strength=1e-4):
    self.strength = arguments.check_nonnegative("strength", strength)

  def __call__(self, w):
    return self.strength * hoyer_square(w, self.xp)

  def get_config(self):
    return {"strength": self.strength}


def threshold_prune(model, threshold, optimizer=None):
  """Prunes every wrapped weight with |w| < `threshold` (masks only shrink).

  The newly pruned weights are zeroed with their flip counts and optimizer
  slots (momentum, Adam's moments) in either family, so nothing left over
  moves them if they ever grow back (`DynamicSparsity`).

  Args:
    model: a model wrapped by `prune_sign_flip` (train on with a schedule that
      prunes no further).
    threshold: the magnitude below which weights are pruned, a finite number >= 0.
    optimizer: whose slots to zero. Defaults to the model's.

  Returns:
    {weight name: sparsity} of the new masks.
  """
  threshold = arguments.check_nonnegative("threshold", threshold)
  family = families.of(model)
  states = family.flip_states(model)
  if not states:
    raise ValueError("threshold_prune needs a model wrapped by prune_sign_flip.")
  family.count_pending(model)  # a flip the last step made is counted before any zeroing
  changes = []
  for s in states:
    weight = family.to_numpy(s.weight).astype(np.float32)
    keep = (family.to_numpy(s.mask) > 0) & (np.abs(weight) >= threshold)
    changes.append((s, keep, np.zeros(keep.shape, bool)))
  family.set_masks(changes, optimizer or getattr(model, "optimizer", None))
  return {families.weight_name(s.weight): float(1 - np.mean(family.to_numpy(s.mask) > 0))
          for s in states}
