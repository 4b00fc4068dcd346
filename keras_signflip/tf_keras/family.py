"""The tf_keras family's `keras_signflip.families.Family`: what the generic modules call."""
import numpy as np

from keras_signflip import families
from keras_signflip.tf_keras import dynamic
from keras_signflip.tf_keras import export
from keras_signflip.tf_keras import mask_update
from keras_signflip.tf_keras import gradient_noise
from keras_signflip.tf_keras import optimizers
from keras_signflip.tf_keras import prune
from keras_signflip.tf_keras import pruning_step
from keras_signflip.tf_keras import schedules
from keras_signflip.tf_keras import selection
from keras_signflip.tf_keras import state
from keras_signflip.tf_keras import wrapper
from keras_signflip.tf_keras._framework import keras, tfmot, xp

__all__ = ["FAMILY"]

# Field for field beside keras3/family.py on purpose: the two implementations of
# one interface, so that the generic modules are written once.
FAMILY = families.Family(
    name="tf_keras", keras=keras, xp=xp, schedules=schedules, wrapper=wrapper.PruneSignFlip,
    prune_sign_flip=prune.prune_sign_flip, strip_pruning=prune.strip_pruning,
    collect_wrappers=prune.collect_wrappers, flip_states=prune.flip_states,
    count_pending=prune.count_tables, sync_signs=state.sync_signs,
    float32_copy=state.float32_value, mask_array=lambda s: np.asarray(s.mask.numpy()),
    pruning_masks=prune.pruning_masks, compute_masks=mask_update.compute_masks,
    select_top_k=selection.select_top_k, set_masks=dynamic.set_masks,
    rigl_gradients=dynamic.dense_gradients, snip_gradients=dynamic.summed_gradients,
    never=lambda: tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=2**62),
    to_numpy=lambda x: np.asarray(x.numpy()),
    update_pruning_step=pruning_step.TfKerasPruningStep,
    export_saved_model=export.export_saved_model,
    optimizer_variables=optimizers.optimizer_variables,
    record_gradients=gradient_noise.record_gradients,
    with_gradient_noise=gradient_noise.with_gradient_noise)
