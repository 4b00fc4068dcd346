"""The TF-MOT internals keras_signflip builds on still exist in this version."""
import inspect

from keras_signflip.tf_keras._compat import PruneLowMagnitude, PruneRegistry, in_save_context, tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils


def test_version_is_pinned_range():
  major, minor = (int(p) for p in tfmot.__version__.split(".")[:2])
  assert (major, minor) == (0, 8)


def test_internals_we_override_or_call():
  assert {"build", "call", "get_config", "from_config"} <= set(vars(PruneLowMagnitude))
  params = inspect.signature(pruning_impl.Pruning.__init__).parameters
  assert {"training_step_fn", "pruning_vars", "pruning_schedule", "block_size",
          "block_pooling_type", "sparsity_m_by_n"} <= set(params)
  assert callable(pruning_impl.Pruning.weight_mask_op)
  for name in ("factorized_pool", "expand_tensor", "weights_rearrange",
               "generate_m_by_n_mask", "m_by_n_sparsity_mask_prepare"):
    assert callable(getattr(pruning_utils, name))
  assert callable(PruneRegistry.supports)
  assert callable(pruning_wrapper.collect_prunable_layers)  # TfKerasPruner.begin


def test_tensorflow_save_context_flag():
  assert in_save_context() is False
