"""The interface each wrapper family implements, and the choice of family per model.

keras_signflip has two families of wrappers: `tf_keras` (TF-MOT's
`PruneLowMagnitude`, in-graph mask updates; `keras_signflip.tf_keras`) and
`keras3` (a `keras.layers.Wrapper` on any backend; `keras_signflip.keras3`).
`of(model)` returns the `Family` that owns a model, layer or list of layers:
the same functions under the same names, so the generic modules (the public
API, the lottery loop, rewinding, re-initialisation, early-bird, summaries)
are written once and reach weights only through it. Each family is imported
on first use: the Keras 3 family needs neither TensorFlow nor TF-MOT.
"""
import functools
from typing import Callable, NamedTuple

import numpy as np

from keras_signflip.detect import is_keras3_object

__all__ = ["Family", "of", "tf_keras", "keras3", "synced", "weight_name"]


class Family(NamedTuple):
  """One wrapper family's implementation of every generic operation."""
  name: str                      # "tf_keras" or "keras3"
  keras: object                  # the Keras module of this family
  prune_sign_flip: Callable
  strip_pruning: Callable
  collect_wrappers: Callable     # (model) -> [wrapper], layer order
  flip_states: Callable          # (model) -> [FlipState], one per wrapped weight
  flip_counts: Callable
  masks: Callable
  set_reference: Callable
  sparsity_report: Callable
  sync_signs: Callable           # (state) -> None
  compute_masks: Callable        # (states, sparsity, criterion, min_flips=None, kept=None, normalization=None)
  never: Callable                # () -> a schedule that never prunes
  to_numpy: Callable             # tensor or variable -> np.ndarray
  update_pruning_step: Callable  # () -> this family's UpdatePruningStep callback
  export_saved_model: Callable   # (model, path, **kwargs) -> report
  optimizer_variables: Callable  # (optimizer, model, build=False) -> [step, slots...]


@functools.lru_cache(maxsize=None)
def tf_keras():
  """The tf_keras (TF-MOT) family; importing it imports TensorFlow and TF-MOT."""
  from keras_signflip.tf_keras import _compat  # pylint: disable=g-import-not-at-top  (clear error)
  from keras_signflip.tf_keras import callbacks, export, mask_update, optimizers, prune, state  # pylint: disable=g-import-not-at-top
  return Family("tf_keras", _compat.keras, prune.prune_sign_flip, prune.strip_pruning,
                prune.collect_wrappers, prune.flip_states, prune.flip_counts, prune.masks,
                prune.set_reference, prune.sparsity_report, state.sync_signs,
                mask_update.compute_masks,
                lambda: _compat.tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=2**62),
                lambda x: np.asarray(x.numpy()),
                callbacks.UpdatePruningStep, export.export_saved_model,
                optimizers.optimizer_variables)


@functools.lru_cache(maxsize=None)
def keras3():
  """The Keras 3 family; needs Keras >= 3.5 and its backend only."""
  from keras_signflip.keras3 import _keras  # pylint: disable=g-import-not-at-top  (clear error)
  from keras_signflip.keras3 import callbacks, export, mask_update, optimizers, prune, schedules, state  # pylint: disable=g-import-not-at-top
  return Family("keras3", _keras.keras, prune.prune_sign_flip, prune.strip_pruning,
                prune.collect_wrappers, prune.flip_states, prune.flip_counts, prune.masks,
                prune.set_reference, prune.sparsity_report, state.sync_signs,
                mask_update.compute_masks,
                lambda: schedules.ConstantSparsity(0.5, begin_step=2**62),
                lambda x: np.asarray(_keras.ops.convert_to_numpy(x)),
                callbacks.UpdatePruningStep, export.export_saved_model,
                optimizers.optimizer_variables)


def of(obj):
  """The `Family` of a model, layer or list of layers."""
  return keras3() if is_keras3_object(obj) else tf_keras()


def synced(model):
  """`model`, with JAX's training state written back to its variables.

  Keras 3 on JAX keeps the state outside the model during an epoch;
  callbacks that read or write variables mid-epoch must sync first (Keras 3's
  own `Callback.model` does this; keras_signflip's callbacks call this).
  """
  sync = getattr(model, "jax_state_sync", None)
  if sync is not None:
    sync()
  return model


def weight_name(variable):
  """A unique display name: Keras 3's `path`, else tf_keras's `name`."""
  return getattr(variable, "path", None) or variable.name
