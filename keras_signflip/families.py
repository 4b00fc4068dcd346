"""The one place a model's wrapper family is chosen, and the interface each family implements.

keras_signflip has two families of wrappers: `tf_keras` (TF-MOT's
`PruneLowMagnitude`, in-graph mask updates; `keras_signflip.tf_keras`) and
`keras3` (a `keras.layers.Wrapper` on any backend; `keras_signflip.keras3`).
`of(obj)` returns the `Family` that owns a model, layer, list of layers or
optimizer, `of_keras(module)` the one of a Keras module: the same operations
under the same names, so the generic modules (the public API, the callbacks,
the lottery loop, SNIP, dynamic sparsity, FlipOut's recipe, the formulas'
drivers) are written once and reach weights only through it.

Each family builds its `Family` in its own `family` module
(`keras_signflip.tf_keras.family`, `keras_signflip.keras3.family`), imported
here on first use by the names in `MODULES`: the Keras 3 family needs neither
TensorFlow nor TF-MOT, and this module imports neither family.
"""
import functools
import importlib
from typing import Callable, NamedTuple

__all__ = ["Family", "MODULES", "of", "of_keras", "tf_keras", "keras3", "is_keras3_object",
           "synced", "weight_name"]

MODULES = {"tf_keras": "keras_signflip.tf_keras.family",
           "keras3": "keras_signflip.keras3.family"}


class Family(NamedTuple):
  """One wrapper family's implementation of every generic operation."""
  name: str                      # "tf_keras" or "keras3"
  keras: object                  # the Keras module of this family
  xp: object                     # its array namespace (`keras_signflip.array_namespace`)
  schedules: object              # its schedules module (GeometricSparsity, ScaledSparsity, ...)
  wrapper: type                  # its PruneSignFlip
  prune_sign_flip: Callable
  strip_pruning: Callable
  collect_wrappers: Callable     # (model) -> [wrapper], layer order
  flip_states: Callable          # (model) -> [PruningState], one per wrapped weight
  count_pending: Callable        # (model) -> None: counts what the last step flipped
  sync_signs: Callable           # (state) -> None
  float32_copy: Callable         # (variable) -> float32 tensor in its own buffer
  mask_array: Callable           # (state) -> np.ndarray mask in the weight's dtype
  pruning_masks: Callable        # (model) -> {weight name: np.ndarray} of every pruning wrapper
  compute_masks: Callable        # (states, sparsity, criterion, min_flips, kept, normalization)
  select_top_k: Callable         # (scores, k, secondary) -> bool masks
  set_masks: Callable            # ([(state, new mask, grown)], optimizer) -> None
  rigl_gradients: Callable       # (model, states, batch, loss) -> [np.ndarray]
  snip_gradients: Callable       # (model, batches, loss) -> [np.ndarray], summed
  never: Callable                # () -> a schedule that never prunes
  to_numpy: Callable             # tensor or variable -> np.ndarray
  update_pruning_step: Callable  # () -> this family's pruning-step callback
  export_saved_model: Callable   # (model, path, **kwargs) -> report
  optimizer_variables: Callable  # (optimizer, model, build=False) -> [step, slots...]
  record_gradients: Callable     # (optimizer) -> a recording copy
  with_gradient_noise: Callable  # (optimizer, factor, seed, weight_decay, noise_on) -> a noisy copy


def _load(name):
  """The `Family` defined by `MODULES[name]` (importing that family)."""
  return importlib.import_module(MODULES[name]).FAMILY


@functools.lru_cache(maxsize=None)
def tf_keras():
  """The tf_keras (TF-MOT) family; importing it imports TensorFlow and TF-MOT."""
  return _load("tf_keras")


@functools.lru_cache(maxsize=None)
def keras3():
  """The Keras 3 family; needs Keras >= 3.5 and its backend only."""
  return _load("keras3")


def is_keras3_object(obj):
  """True for Keras 3 layers, models and optimizers (a list: if any element is one).

  Told apart, without importing either Keras, by the module that defines the
  object's class: `tf_keras.*` (Keras 2) or `keras.*` (Keras 3, also what
  `tf.keras` is on TensorFlow >= 2.16 unless TF_USE_LEGACY_KERAS=1).
  """
  if isinstance(obj, (list, tuple)):
    return any(is_keras3_object(o) for o in obj)
  for cls in type(obj).__mro__:
    root = (cls.__module__ or "").split(".")[0]
    if root == "tf_keras":
      return False
    if root == "keras" and cls.__name__ in ("Layer", "Operation", "Model", "BaseOptimizer"):
      return True
  return False


def of(obj):
  """The `Family` of a model, layer, list of layers or optimizer."""
  return keras3() if is_keras3_object(obj) else tf_keras()


def of_keras(module):
  """The `Family` of a Keras module: None or tf_keras is tf_keras's, any other Keras 3's."""
  if module is None or getattr(module, "__name__", "").split(".")[0] == "tf_keras":
    return tf_keras()
  return keras3()


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
