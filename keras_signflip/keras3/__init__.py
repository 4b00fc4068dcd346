"""keras_signflip's Keras 3 family: the same criteria on TensorFlow, JAX or PyTorch.

    import keras
    import keras_signflip as ksf            # dispatches on the model's type
    schedule = ksf.keras3.schedules.GeometricSparsity(0.5, 500)
    model = ksf.prune_sign_flip(base, pruning_schedule=schedule, criterion="hybrid",
                                scope="global")
    model.fit(x, y, callbacks=[ksf.UpdatePruningStep()])
    plain = ksf.strip_pruning(model)

Importing `keras_signflip.keras3` needs neither TensorFlow nor TF-MOT. Its
modules mirror `keras_signflip.tf_keras`'s (`_framework`, `family`, `state`,
`selection`, `mask_update`, `schedules`, `wrapper`, `prune`, `pruning_step`,
`gradient_noise`, `optimizers`, `dynamic`, the kernel methods, `export`), and the
formulas are the core's, shared with it; what differs is what Keras 3 needs:
masks updated on the host between steps (JAX compiles the step as a pure
function), a `keras.layers.Wrapper` of its own, and `gradients`, a loss
gradient per backend.
"""
from keras_signflip.keras3._framework import keras  # noqa: F401  (clear error first)
from keras_signflip.keras3 import _framework
from keras_signflip.keras3 import dynamic
from keras_signflip.keras3 import export
from keras_signflip.keras3 import gradient_noise
from keras_signflip.keras3 import gradients
from keras_signflip.keras3 import hoyer
from keras_signflip.keras3 import kernel_wrappers
from keras_signflip.keras3 import l0
from keras_signflip.keras3 import mask_update
from keras_signflip.keras3 import schedules
from keras_signflip.keras3 import optimizers
from keras_signflip.keras3 import pruning_step
from keras_signflip.keras3 import selection
from keras_signflip.keras3 import snip
from keras_signflip.keras3 import targeted_dropout
from keras_signflip.keras3 import variational
from keras_signflip.keras3.gradient_noise import record_gradients, with_gradient_noise
from keras_signflip.keras3.pruning_step import Keras3PruningStep
from keras_signflip.keras3.prune import (collect_wrappers, flip_counts, flip_states, masks,
                                         prune_sign_flip, set_reference, sparsity_report,
                                         strip_pruning)
from keras_signflip.keras3.state import FlipState, PruningState
from keras_signflip.keras3.wrapper import PruneSignFlip

UpdatePruningStep = Keras3PruningStep  # its 0.3 name here; users pass ksf.UpdatePruningStep
# 0.3's module names, as attributes too (`import` finds them through keras_signflip._old_names).
_keras, callbacks = _framework, pruning_step

__all__ = ["dynamic", "export", "gradient_noise", "gradients", "hoyer", "kernel_wrappers", "l0",
           "optimizers", "pruning_step", "snip", "targeted_dropout", "variational",
           "record_gradients",
           "with_gradient_noise", "mask_update", "schedules", "selection", "Keras3PruningStep",
           "UpdatePruningStep", "collect_wrappers", "flip_counts", "flip_states", "masks",
           "prune_sign_flip", "set_reference", "sparsity_report", "strip_pruning",
           "PruningState", "FlipState", "PruneSignFlip"]
