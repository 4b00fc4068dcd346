"""Rewind points: every model variable at training step k, and putting it back.

A snapshot holds every variable of the model -- kernels, biases,
normalisation statistics -- except the pruning wrappers' own state (masks,
thresholds, steps, flip state, references), and the optimizer's variables
(its step and slots: momentum, Adam moments). Restoring it puts every one of
them back exactly, then re-applies the masks (pruned weights stay zero) and
re-reads the weights' signs for flip counting. With the optimizer's step
back at k, a learning-rate schedule continues from step k, as late
rewinding needs (Frankle et al. 2020 train T - k steps from the rewind point).

Durations are written as OpenLTH does: `"500it"` (iterations) or `"2ep"`
(epochs), converted to steps once the epoch length is known.
"""
import os
import re

import numpy as np

from keras_signflip import families
from keras_signflip.callback_base import Callback

__all__ = ["Snapshot", "snapshot", "restore", "restore_optimizer", "steps", "RewindPoint"]

_DURATION = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")


def steps(duration, steps_per_epoch=None):
  """Steps in `duration`: an int (iterations), "500it" or "2ep".

  Raises:
    ValueError: a malformed duration, or epochs without `steps_per_epoch`.
  """
  if isinstance(duration, (int, np.integer)) and not isinstance(duration, bool):
    if duration < 0:
      raise ValueError(f"Received an invalid duration {duration!r}; expected >= 0.")
    return int(duration)
  match = _DURATION.match(str(duration))
  if not match:
    raise ValueError(f"Received an invalid duration {duration!r}; expected an "
                     "integer, 'Nit' (iterations) or 'Nep' (epochs), e.g. '500it', '2ep'.")
  count, unit = int(match.group(1)), match.group(2)
  if unit == "it":
    return count
  if not steps_per_epoch:
    raise ValueError(f"Duration {duration!r} is in epochs, but the epoch length "
                     "is unknown; give it in iterations ('Nit') instead.")
  return count * int(steps_per_epoch)


def _pruning_state_ids(model):
  ids = set()
  for w in families.of(model).collect_wrappers(model):
    ids.add(id(w.pruning_step))
    for s in w.flip_states:  # every state variable but the weight itself
      ids.update(id(v) for v in s[1:] if hasattr(v, "assign"))
  return ids


def variables(model):
  """Every variable of `model` but the pruning state, in `model.weights` order."""
  skip = _pruning_state_ids(model)
  return [v for v in model.weights if id(v) not in skip]


class Snapshot:
  """Values of a model's (non-pruning) variables, in `model.weights` order, and
  of its optimizer's variables (`optimizer`, None when it had none)."""

  def __init__(self, names, values, step, optimizer=None):
    self.names, self.values, self.step = list(names), list(values), int(step)
    self.optimizer = None if optimizer is None else list(optimizer)

  def save(self, path):
    """Writes the snapshot as .npz (".npz" appended if `path` lacks it), atomically:
    a temporary sibling, then a rename, so `path` is whole or absent."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
      path += ".npz"
    arrays = {f"v{i}": v for i, v in enumerate(self.values)}
    if self.optimizer is not None:
      arrays.update({f"o{i}": v for i, v in enumerate(self.optimizer)})
    tmp = path + ".tmp"
    try:
      with open(tmp, "wb") as f:
        np.savez(f, step=self.step, names=np.array(self.names),
                 optimizer_count=-1 if self.optimizer is None else len(self.optimizer), **arrays)
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise

  @classmethod
  def load(cls, path):
    with np.load(path) as f:
      n = len(f["names"])
      count = int(f["optimizer_count"]) if "optimizer_count" in f.files else -1
      optimizer = None if count < 0 else [f[f"o{i}"] for i in range(count)]
      return cls(list(f["names"]), [f[f"v{i}"] for i in range(n)], int(f["step"]), optimizer)


def snapshot(model, step=0):
  """A `Snapshot` of every variable of `model` except pruning state, and of its
  optimizer's variables once the optimizer has made them."""
  family = families.of(model)
  values = variables(model)
  optimizer = getattr(model, "optimizer", None)
  slots = family.optimizer_variables(optimizer, model, build=False) if optimizer else []
  return Snapshot([families.weight_name(v) for v in values],
                  [family.to_numpy(v) for v in values], step,
                  [family.to_numpy(v) for v in slots] if slots else None)


def restore_optimizer(model, snap):
  """Puts the optimizer's step and slots back to the snapshot's (after compile).

  Raises:
    ValueError: the snapshot has no optimizer state, or another optimizer's.
  """
  if snap.optimizer is None:
    raise ValueError(f"The snapshot at step {snap.step} holds no optimizer state; it "
                     "was taken before the optimizer made its variables.")
  model = families.synced(model)
  family = families.of(model)
  current = family.optimizer_variables(model.optimizer, model, build=True)
  if [tuple(v.shape) for v in current] != [np.shape(a) for a in snap.optimizer]:
    raise ValueError("The snapshot's optimizer state does not fit this optimizer: "
                     f"{len(snap.optimizer)} variables vs {len(current)}; compile the "
                     "model with the optimizer it was trained with.")
  for v, value in zip(current, snap.optimizer):
    v.assign(value)


def restore(model, snap):
  """Puts every snapshotted variable back, re-masks, re-reads signs."""
  model = families.synced(model)
  family = families.of(model)
  current = variables(model)
  if len(current) != len(snap.values):
    raise ValueError(f"The snapshot holds {len(snap.values)} variables but the model "
                     f"has {len(current)}; it was taken from another architecture.")
  for v, value in zip(current, snap.values):
    if tuple(v.shape) != value.shape:
      raise ValueError(f"Snapshot value for {families.weight_name(v)} has shape "
                       f"{value.shape}, the model's is {tuple(v.shape)}.")
  for v, value in zip(current, snap.values):
    v.assign(value)
  for s in family.flip_states(model):
    s.weight.assign(family.to_numpy(s.weight) * family.to_numpy(s.mask))
    family.sync_signs(s)


class RewindPoint(Callback):
  """Records the model's variables at training step k (inside `fit`).

  k = 0 is the original lottery-ticket rewind (before any step); k > 0 is late
  rewinding (Frankle et al. 2020). The snapshot is in `self.snapshot`.

  Args:
    step: an int (iterations), "500it" or "2ep". Defaults to 0.
  """

  def __init__(self, step=0):
    super().__init__()
    steps(step, steps_per_epoch=1)  # validate now
    self.step = step
    self.snapshot = None
    self._target = None
    self._model_id = None

  def on_train_begin(self, logs=None):
    iterations = int(families.synced(self.model).optimizer.iterations.numpy())
    self._iterations = iterations
    # Keep a snapshot across fit calls that continue the same training (one
    # fit per epoch); reset for another model or a restarted optimizer.
    continuing = (self.snapshot is not None and self._model_id == id(self.model)
                  and self.snapshot.step <= iterations)
    if not continuing:
      self.snapshot = None
      self._model_id = id(self.model)
      self._target = steps(self.step, self.params.get("steps"))
      if self._target == iterations:
        self.snapshot = snapshot(self.model, self._target)

  def on_train_batch_end(self, batch, logs=None):
    self._iterations += 1  # counted here: on JAX, syncing every step would be slow
    if self.snapshot is None and self._iterations == self._target:
      self.snapshot = snapshot(families.synced(self.model), self._target)
