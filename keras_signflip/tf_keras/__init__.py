"""keras_signflip's tf_keras family: TF-MOT's wrappers with criteria and flip counts.

Everything here is built on TensorFlow, tf_keras (Keras 2) and TF-MOT 0.8;
importing it imports all three. TF-MOT sets `TF_USE_LEGACY_KERAS=1` in
`os.environ` when it is imported (its own behaviour; keras_signflip sets
nothing itself).

| module | what |
|---|---|
| `_compat` | the one place that imports TensorFlow, tf_keras and TF-MOT |
| `state` | `FlipState` per weight; the after-step constraint that counts flips |
| `selection` | exact O(n) top-k in TF ops (layer and global) |
| `mask_update` | TF-MOT's `Pruning` with criteria |
| `schedules` | `GeometricSparsity` (TF-MOT schedules work as they are) |
| `wrapper` | `PruneSignFlip`, a `PruneLowMagnitude` |
| `prune` | `prune_sign_flip`, `strip_pruning`, `prune_scope`, inspection |
| `callbacks` | `UpdatePruningStep` (TF-MOT's, extended) |
| `noise` | FlipOut's gradient noise |
| `snip` | SNIP: masks at initialisation from connection sensitivity |
| `targeted_dropout` | targeted weight dropout (Gomez et al. 2019) and its `strip` |
| `hoyer` | the Hoyer-Square penalty (Yang et al. 2020) and threshold pruning |
| `dynamic` | SET and RigL: masks that drop and regrow during training |
| `l0` | L0 regularisation with hard-concrete gates (Louizos et al. 2018) |
| `variational` | sparse variational dropout (Molchanov et al. 2017) |
| `export` | sparse SavedModels and TFLite |
"""
from keras_signflip.tf_keras import (dynamic, export, hoyer, l0, schedules, selection,
                                     targeted_dropout, variational)
from keras_signflip.tf_keras.snip import snip
from keras_signflip.tf_keras.callbacks import UpdatePruningStep
from keras_signflip.tf_keras.noise import record_gradients, with_gradient_noise
from keras_signflip.tf_keras.prune import (collect_wrappers, flip_counts, flip_states,
                                           link_global, masks, prune_scope,
                                           prune_sign_flip, set_reference,
                                           sparsity_report, strip_pruning)
from keras_signflip.tf_keras.state import FlipState
from keras_signflip.tf_keras.wrapper import PruneSignFlip

__all__ = ["dynamic", "export", "hoyer", "l0", "variational", "schedules", "selection", "snip", "targeted_dropout", "UpdatePruningStep", "with_gradient_noise", "record_gradients",
           "collect_wrappers", "flip_counts", "flip_states", "link_global", "masks",
           "prune_scope", "prune_sign_flip", "set_reference", "sparsity_report",
           "strip_pruning", "FlipState", "PruneSignFlip"]
