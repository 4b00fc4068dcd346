"""keras_signflip's tf_keras family: TF-MOT's wrappers with criteria and flip counts.

Everything here is built on TensorFlow, tf_keras (Keras 2) and TF-MOT 0.8;
importing it imports all three. TF-MOT sets `TF_USE_LEGACY_KERAS=1` in
`os.environ` when it is imported (its own behaviour; keras_signflip sets
nothing itself).

| module | what |
|---|---|
| `_framework` | the one place that imports TensorFlow, tf_keras and TF-MOT (0.3: `_compat`) |
| `family` | this family's `keras_signflip.families.Family` |
| `state` | `PruningState` per weight; the after-step constraint that counts flips |
| `selection` | exact O(n) top-k in TF ops (layer and global) |
| `mask_update` | TF-MOT's `Pruning` with criteria |
| `schedules` | `GeometricSparsity`, `ScaledSparsity` (TF-MOT schedules work as they are) |
| `wrapper` | `PruneSignFlip`, a `PruneLowMagnitude` |
| `prune` | `prune_sign_flip`, `strip_pruning`, `prune_scope`, `link_global` |
| `pruning_step` | `TfKerasPruningStep`: TF-MOT's `UpdatePruningStep`, extended (0.3: `callbacks`) |
| `gradient_noise` | gradient recording and FlipOut's gradient noise (0.3: `noise`) |
| `optimizers` | an optimizer's own variables, for rewinding |
| `dynamic` | gradients and mask assignment for SET, RigL, SNIP and threshold pruning |
| `kernel_wrappers` | what targeted dropout, L0 and variational dropout share |
| `targeted_dropout` | targeted weight dropout (Gomez et al. 2019) and its `strip` |
| `hoyer` | the Hoyer-Square penalty (Yang et al. 2020) as a model loss |
| `l0` | L0 regularisation with hard-concrete gates (Louizos et al. 2018) |
| `variational` | sparse variational dropout (Molchanov et al. 2017) |
| `snip` | SNIP, re-exported from `keras_signflip.connection_sensitivity` |
| `export` | sparse SavedModels and TFLite |

The formulas (Hoyer-Square, the gates, the KL, the candidates, the schedules'
arithmetic, the mask-update rules) are written once in the core, against an
array namespace (`keras_signflip.array_namespace`), and shared with the Keras 3
family; what is here is what differs: in-graph mask updates, TF-MOT's
wrapper and schedules, tf_keras' variables and export.
"""
from keras_signflip.tf_keras import (_framework, dynamic, export, gradient_noise, hoyer, l0,
                                     pruning_step, schedules, selection, targeted_dropout,
                                     variational)
from keras_signflip.tf_keras.snip import snip
from keras_signflip.tf_keras.pruning_step import TfKerasPruningStep
from keras_signflip.tf_keras.gradient_noise import record_gradients, with_gradient_noise
from keras_signflip.tf_keras.prune import (collect_wrappers, flip_counts, flip_states,
                                           link_global, masks, prune_scope,
                                           prune_sign_flip, set_reference,
                                           sparsity_report, strip_pruning)
from keras_signflip.tf_keras.state import FlipState, PruningState
from keras_signflip.tf_keras.wrapper import PruneSignFlip

UpdatePruningStep = TfKerasPruningStep  # its 0.3 name here; users pass ksf.UpdatePruningStep
# 0.3's module names, as attributes too (`import` finds them through keras_signflip._old_names).
_compat, callbacks, noise = _framework, pruning_step, gradient_noise

__all__ = ["dynamic", "export", "gradient_noise", "hoyer", "l0", "variational", "pruning_step",
           "schedules", "selection", "snip",
           "targeted_dropout", "TfKerasPruningStep", "UpdatePruningStep", "with_gradient_noise",
           "record_gradients", "collect_wrappers", "flip_counts", "flip_states", "link_global",
           "masks", "prune_scope", "prune_sign_flip", "set_reference", "sparsity_report",
           "strip_pruning", "PruningState", "FlipState", "PruneSignFlip"]
