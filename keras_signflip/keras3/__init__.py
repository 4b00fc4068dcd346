"""keras_signflip's Keras 3 path: the same criteria on TensorFlow, JAX or PyTorch.

    import keras
    import keras_signflip as ksf            # dispatches on the model's type
    model = ksf.prune_sign_flip(base, pruning_schedule=ksf.keras3.schedules.GeometricSparsity(0.5, 500),
                                criterion="hybrid", scope="global")
    model.fit(x, y, callbacks=[ksf.UpdatePruningStep()])
    plain = ksf.strip_pruning(model)

Importing `keras_signflip.keras3` needs neither TensorFlow nor TF-MOT.
"""
from keras_signflip.keras3._keras import keras  # noqa: F401  (clear error first)
from keras_signflip.keras3 import dynamic
from keras_signflip.keras3 import export
from keras_signflip.keras3 import gradients
from keras_signflip.keras3 import hoyer
from keras_signflip.keras3 import kernel_wrappers
from keras_signflip.keras3 import l0
from keras_signflip.keras3 import mask_update
from keras_signflip.keras3 import schedules
from keras_signflip.keras3 import optimizers
from keras_signflip.keras3 import selection
from keras_signflip.keras3 import snip
from keras_signflip.keras3 import targeted_dropout
from keras_signflip.keras3 import variational
from keras_signflip.keras3.callbacks import UpdatePruningStep
from keras_signflip.keras3.optimizers import record_gradients, with_gradient_noise
from keras_signflip.keras3.prune import (collect_wrappers, flip_counts, flip_states, masks,
                                         prune_sign_flip, set_reference, sparsity_report,
                                         strip_pruning)
from keras_signflip.keras3.state import FlipState
from keras_signflip.keras3.wrapper import PruneSignFlip

__all__ = ["dynamic", "export", "gradients", "hoyer", "kernel_wrappers", "l0", "optimizers", "snip",
           "targeted_dropout", "variational", "record_gradients", "with_gradient_noise", "mask_update", "schedules", "selection", "UpdatePruningStep",
           "collect_wrappers", "flip_counts", "flip_states", "masks", "prune_sign_flip",
           "set_reference", "sparsity_report", "strip_pruning", "FlipState", "PruneSignFlip"]
