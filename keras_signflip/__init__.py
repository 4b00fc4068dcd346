"""keras_signflip: sign-flip, FlipOut and lottery-ticket criteria on TF-MOT.

    import keras_signflip as ksf
    model = ksf.prune_sign_flip(base, pruning_schedule=schedule,
                                criterion=ksf.criteria.Hybrid(power=2),
                                scope="global")
    model.fit(x, y, callbacks=[ksf.UpdatePruningStep()])
    final = ksf.strip_pruning(model)
"""
from keras_signflip import _compat  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from keras_signflip import criteria
from keras_signflip import schedules
from keras_signflip import selection
from keras_signflip.callbacks import SignFlipSummaries, UpdatePruningStep
from keras_signflip.early_bird import EarlyBird
from keras_signflip.noise import with_gradient_noise
from keras_signflip.prune import (collect_wrappers, flip_counts, flip_states, link_global,
                                  masks, prune_scope, prune_sign_flip, set_reference,
                                  sparsity_report, strip_pruning)
from keras_signflip.rewind import RewindPoint
from keras_signflip.wrapper import PruneSignFlip

__version__ = "0.1.0"

__all__ = [
    "criteria", "schedules", "selection", "prune_sign_flip", "strip_pruning",
    "prune_scope", "flip_counts", "masks", "set_reference", "link_global",
    "collect_wrappers", "flip_states", "UpdatePruningStep", "SignFlipSummaries",
    "sparsity_report", "with_gradient_noise", "PruneSignFlip", "EarlyBird", "RewindPoint",
]
