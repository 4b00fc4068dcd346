"""The Keras 3 family's `keras_signflip.families.Family`: what the generic modules call."""
import numpy as np

from keras_signflip import families
from keras_signflip.keras3 import dynamic
from keras_signflip.keras3 import export
from keras_signflip.keras3 import gradient_noise
from keras_signflip.keras3 import gradients
from keras_signflip.keras3 import mask_update
from keras_signflip.keras3 import optimizers
from keras_signflip.keras3 import prune
from keras_signflip.keras3 import pruning_step
from keras_signflip.keras3 import schedules
from keras_signflip.keras3 import selection
from keras_signflip.keras3 import state
from keras_signflip.keras3 import wrapper
from keras_signflip.keras3._framework import keras, ops

__all__ = ["FAMILY"]

# Field for field beside tf_keras/family.py on purpose: the two implementations of
# one interface, so that the generic modules are written once.
FAMILY = families.Family(
    name="keras3", keras=keras, xp=ops, schedules=schedules, wrapper=wrapper.PruneSignFlip,
    prune_sign_flip=prune.prune_sign_flip, strip_pruning=prune.strip_pruning,
    collect_wrappers=prune.collect_wrappers, flip_states=prune.flip_states,
    count_pending=prune.count_pending, sync_signs=state.sync_signs,
    float32_copy=state.float32_copy, mask_array=prune.mask_array,
    pruning_masks=prune.pruning_masks, compute_masks=mask_update.compute_masks,
    select_top_k=selection.select_top_k, set_masks=dynamic.set_masks,
    rigl_gradients=dynamic.dense_gradients, snip_gradients=gradients.effective_weight_gradients,
    never=lambda: schedules.ConstantSparsity(0.5, begin_step=2**62),
    to_numpy=lambda x: np.asarray(ops.convert_to_numpy(x)),
    update_pruning_step=pruning_step.Keras3PruningStep,
    export_saved_model=export.export_saved_model,
    optimizer_variables=optimizers.optimizer_variables,
    record_gradients=gradient_noise.record_gradients,
    with_gradient_noise=gradient_noise.with_gradient_noise)
