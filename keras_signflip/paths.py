"""The two implementations behind every public entry point, chosen per model.

`of(model)` returns the tf_keras path (TF-MOT wrappers, in-graph mask
updates) for tf_keras objects and the Keras 3 path (`keras_signflip.keras3`)
for Keras 3 ones, as a `Path` of the same functions, so the generic modules
(rewind, re-initialisation, early-bird, the lottery loop, the callbacks)
are written once. Each path is imported on first use: the Keras 3 path
needs neither TensorFlow nor TF-MOT.
"""
import functools
from typing import Callable, NamedTuple

import numpy as np

from keras_signflip.detect import is_keras3_object

__all__ = ["Path", "of", "tf_keras", "keras3", "synced", "weight_name"]


class Path(NamedTuple):
  name: str
  keras: object                  # the Keras module of this path
  prune_sign_flip: Callable
  strip_pruning: Callable
  collect_wrappers: Callable
  flip_states: Callable
  flip_counts: Callable
  masks: Callable
  set_reference: Callable
  sparsity_report: Callable
  sync_signs: Callable           # (state) -> None
  compute_masks: Callable        # (states, sparsity, criterion, min_flips=None, kept=None)
  never: Callable                # () -> a schedule that never prunes
  to_numpy: Callable             # tensor or variable -> np.ndarray


@functools.lru_cache(maxsize=None)
def tf_keras():
  from keras_signflip import flips, mask_update, prune  # pylint: disable=g-import-not-at-top
  from keras_signflip._compat import keras, tfmot  # pylint: disable=g-import-not-at-top
  return Path("tf_keras", keras, prune.prune_sign_flip, prune.strip_pruning,
              prune.collect_wrappers, prune.flip_states, prune.flip_counts, prune.masks,
              prune.set_reference, prune.sparsity_report, flips.sync_signs,
              mask_update.compute_masks,
              lambda: tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=2**62),
              lambda x: np.asarray(x.numpy()))


@functools.lru_cache(maxsize=None)
def keras3():
  from keras_signflip.keras3 import _keras  # pylint: disable=g-import-not-at-top  (clear error)
  from keras_signflip.keras3 import mask_update, prune, schedules, state  # pylint: disable=g-import-not-at-top
  return Path("keras3", _keras.keras, prune.prune_sign_flip, prune.strip_pruning,
              prune.collect_wrappers, prune.flip_states, prune.flip_counts, prune.masks,
              prune.set_reference, prune.sparsity_report, state.sync_signs,
              mask_update.compute_masks,
              lambda: schedules.ConstantSparsity(0.5, begin_step=2**62),
              lambda x: np.asarray(_keras.ops.convert_to_numpy(x)))


def of(obj):
  """The `Path` for a model, layer or list of layers."""
  return keras3() if is_keras3_object(obj) else tf_keras()


def synced(model):
  """`model`, with JAX's training state written back to its variables.

  Keras 3 on JAX keeps the state outside the model during an epoch;
  callbacks that read or write variables mid-epoch must sync first (Keras 3's
  own `Callback.model` does this; tf_keras-based callbacks call this).
  """
  sync = getattr(model, "jax_state_sync", None)
  if sync is not None:
    sync()
  return model


def weight_name(variable):
  """A unique display name: Keras 3's `path`, else tf_keras's `name`."""
  return getattr(variable, "path", None) or variable.name
