"""The Keras 3 family's entry points: wrap, strip, find the wrappers.

The same names and arguments as the tf_keras family's (`keras_signflip.tf_keras.prune`);
`keras_signflip.prune_sign_flip` and friends send Keras 3 models here
(`flip_counts`, `masks`, `set_reference`, `sparsity_report`: `keras_signflip.inspection`).
"""
import functools
import inspect
import itertools
import types

import numpy as np

from keras_signflip.keras3 import state as state_lib
from keras_signflip.keras3 import schedules as schedules_lib
from keras_signflip.keras3 import sublayers
from keras_signflip.keras3._framework import keras, ops
from keras_signflip import schedule_checks
from keras_signflip import arguments
from keras_signflip import distributions
from keras_signflip import units as units_lib
from keras_signflip.inspection import (all_layers, collect_wrappers, flip_counts, masks,
                                       set_reference, sparsity_report)
from keras_signflip.keras3.wrapper import (MISSING_CALLBACK, PruneSignFlip, prunable_weights,
                                           supports)

__all__ = ["prune_sign_flip", "strip_pruning", "collect_wrappers", "flip_states",
           "flip_counts", "masks", "set_reference", "sparsity_report", "sync_signs",
           "count_pending", "pruning_masks", "mask_array"]

_UNSUPPORTED = ("block_size", "block_pooling_type", "sparsity_m_by_n")


def _check(to_prune, pruning_policy, kwargs):
  for name in _UNSUPPORTED:
    value = kwargs.pop(name, None)
    if value not in (None, (1, 1), [1, 1], "AVG"):
      raise ValueError(f"`{name}` (structured pruning) is not supported in the Keras 3 "
                       "family; use the tf_keras family (TF-MOT) for block or m-by-n sparsity.")
  if pruning_policy is not None:
    raise ValueError("`pruning_policy` is TF-MOT's and not supported in the Keras 3 "
                     "family; wrap the layers you want pruned instead.")
  if _subclassed(to_prune):
    _refuse_own_weights(to_prune)
  elif not isinstance(to_prune, (keras.layers.Layer, list, tuple)):
    raise ValueError("prune_sign_flip takes a Keras 3 layer, a list of layers, or a "
                     f"model; received {type(to_prune).__name__}.")
  if isinstance(to_prune, keras.Model):
    layers, what = all_layers(to_prune), "model"
  elif isinstance(to_prune, (list, tuple)):
    layers, what = list(to_prune), "list of layers"
  else:
    layers, what = [to_prune], "layer"
  arguments.refuse_wrapped([l.name for l in layers if isinstance(l, PruneSignFlip)], what)
  if what != "layer":
    arguments.refuse_ignored_kwargs(kwargs)


def prune_sign_flip(to_prune, pruning_schedule=None, criterion="hybrid",
                    scope="layer", min_flips=None, pruning_policy=None,
                    sparsity_distribution=None, dense_layers=(), keep_reference=None,
                    score_normalization=None, structure=None, **kwargs):
  """Wraps a Keras 3 layer, list of layers, or model (Sequential, Functional, subclassed).

  See `keras_signflip.tf_keras.prune.prune_sign_flip` for the arguments; schedules
  come from `keras_signflip.keras3.schedules` (TF-MOT's convert). Block and
  m-by-n sparsity and `pruning_policy` are tf_keras-only.

  Returns:
    The wrapped layer(s), or a clone of the model whose prunable layers are
    wrapped (layers and weights are shared with `to_prune`); a subclassed model
    is wrapped in place and returned (`keras3.sublayers`: Keras cannot clone it).

  Raises:
    ValueError: as the tf_keras family's, and for weights a subclassed model (or
      a block in it) creates itself, named; raised before anything is wrapped.
  """
  _check(to_prune, pruning_policy, kwargs)
  criterion = arguments.check(units_lib.structured(criterion, structure), scope, min_flips)
  units_lib.check(criterion, scope, min_flips, score_normalization=score_normalization)
  schedule = schedule_checks.check(schedules_lib.get(pruning_schedule))
  keep_reference = arguments.check_optional_bool("keep_reference", keep_reference)
  if scope == "global" and isinstance(to_prune, keras.Model) and not to_prune.built:
    raise ValueError("scope='global' needs a built model (one with a known input "
                     "shape): give it a keras.Input or call `model.build(...)` first.")
  layers = (all_layers(to_prune) if isinstance(to_prune, keras.Model)
            else list(to_prune) if isinstance(to_prune, (list, tuple)) else [to_prune])
  factors = distributions.layer_factors(
      [l for l in layers if not isinstance(l, (keras.layers.InputLayer, PruneSignFlip))
       and not isinstance(l, keras.Model) and supports(l)], prunable_weights,
      schedules_lib.max_sparsity(schedule), sparsity_distribution, dense_layers, scope)
  units_lib.check_layers([l for l in layers if not isinstance(l, (keras.layers.InputLayer,
                                                                  PruneSignFlip, keras.Model))
                          and supports(l) and not (factors and factors.get(l.name) == 0)],
                         criterion, prunable_weights)
  if keep_reference is False and criterion.uses_reference:
    raise ValueError(f"{type(criterion).__name__} reads the reference weights; "
                     "keep_reference=False cannot serve it.")
  params = dict(criterion=criterion, scope=scope, min_flips=min_flips,
                keep_reference=keep_reference,
                score_normalization=arguments.check_normalization(score_normalization, scope))
  return _wrap(to_prune, schedule, factors, params, kwargs)


def _subclassed(model):
  """Whether `model` is a subclassed Keras 3 model (neither Sequential nor Functional)."""
  return isinstance(model, keras.Model) and not (
      isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"
      or getattr(model, "_is_graph_network", False))


def _block(layer):
  """Whether `layer` is walked for the layers it holds: a subclassed model, or a layer
  that is neither prunable nor a wrapper (a custom block)."""
  return _subclassed(layer) or not (isinstance(layer, (keras.Model, PruneSignFlip))
                                    or supports(layer))


def _refuse_own_weights(layer):
  """Raises, naming them, for weights a subclassed model or one of its blocks created
  itself (`self.add_weight`): outside any layer, no wrapper can prune them."""
  arguments.refuse_own_weights(layer, [v.path for v in sublayers.own_weights(layer)])
  for _, _, sub in sublayers._containers(layer):  # pylint: disable=protected-access
    if _block(sub):
      _refuse_own_weights(sub)


# Parallel to tf_keras/prune.py's `_wrap` by design: each family clones with its own
# Keras and wraps in its own PruneSignFlip.
def _wrap(to_prune, schedule, factors, params, kwargs):
  """`to_prune` with its prunable layers wrapped: a clone of a model (whose `fit`
  checks for the callback), a new list, or the wrapper of one layer; each wrapper
  has a copy of `schedule` of its own, scaled by its layer's factor."""
  def layer_schedule(layer):
    fresh = schedules_lib.get(schedule.get_config())
    factor = 1.0 if factors is None else factors.get(layer.name, 1.0)
    return fresh if factor == 1.0 else schedules_lib.ScaledSparsity(fresh, factor)

  positions = itertools.count()

  def wrap(layer):
    if _subclassed(layer):
      sublayers.replace(layer, wrap_built)
      return layer
    if isinstance(layer, keras.Model):
      return keras.models.clone_model(layer, clone_function=wrap)
    if _block(layer) and not isinstance(layer, keras.layers.InputLayer):
      sublayers.replace(layer, wrap_built)  # a custom block's layers, in place (shared)
      return layer
    if isinstance(layer, (keras.layers.InputLayer, PruneSignFlip)) or not supports(layer):
      return layer
    if factors and factors.get(layer.name) == 0:
      return layer
    return PruneSignFlip(layer, pruning_schedule=layer_schedule(layer),
                         position=next(positions), **params)

  def wrap_built(layer):  # in place: the model calls it as it is, so build it now
    if _block(layer) and not _subclassed(layer):
      sublayers.replace(layer, wrap_built)
      return layer
    new = wrap(layer)
    if isinstance(new, PruneSignFlip) and layer.built:
      new.build(None)
    return new

  if _subclassed(to_prune):
    return _check_fit(wrap(to_prune))
  if isinstance(to_prune, keras.Model):
    return _check_fit(keras.models.clone_model(to_prune, clone_function=wrap))
  if isinstance(to_prune, (list, tuple)):
    return [wrap(l) for l in to_prune]
  return PruneSignFlip(to_prune, pruning_schedule=layer_schedule(to_prune), **params, **kwargs)


class _RequireUpdatePruningStep(keras.callbacks.Callback):
  """Last in a `fit`'s callbacks: refuses the fit in on_train_begin, before any step,
  unless an UpdatePruningStep has taken charge of every wrapper by then."""

  def __init__(self, wrappers):
    super().__init__()
    self._wrappers = wrappers

  def on_train_begin(self, logs=None):
    idle = [w.name for w in self._wrappers if not w.pruning_callback_active]
    if idle:
      raise ValueError(f"{idle}: {MISSING_CALLBACK}")


def _check_fit(model):
  """Gives `model` (made by prune_sign_flip) a `fit` that runs the check above.

  The wrappers also refuse a training call outside the callback (see
  `PruneSignFlip.call`), but that comes at the first step: on JAX, Keras has
  detached the model's variables from it by then (its memory saving for the
  step loop), and an error there leaves the model without weights. This check
  runs in on_train_begin, before that. Only `fit` calls whose `callbacks` is
  None or a list get it (a CallbackList is the caller's to complete).
  """
  fit = type(model).fit
  signature = inspect.signature(fit)

  @functools.wraps(fit)
  def checked_fit(self, *args, **kwargs):
    bound = signature.bind(self, *args, **kwargs)
    callbacks = bound.arguments.get("callbacks")
    wrappers = collect_wrappers(self)
    if wrappers and (callbacks is None or isinstance(callbacks, (list, tuple))):
      bound.arguments["callbacks"] = list(callbacks or []) + [_RequireUpdatePruningStep(wrappers)]
    return fit(*bound.args, **bound.kwargs)

  model.fit = types.MethodType(checked_fit, model)
  return model


def flip_states(model):
  """Every wrapped weight's `PruningState`, in model order."""
  return [s for w in collect_wrappers(model) for s in w.flip_states]


def count_pending(model):
  for s in flip_states(model):
    state_lib.count_pending(s)


def sync_signs(state):
  state_lib.sync_signs(state)


def strip_pruning(model):
  """A plain Keras 3 model with the pruned weights (zeros), leaving `model` as it was.

  Pending flips are counted first, so `flip_counts` of the wrapped model
  stays exact. The returned model is a clone with its own copies of the
  weights: exporting or fine-tuning it never changes the model still being
  pruned. (A single wrapper gives back its own layer; a subclassed model, which
  Keras cannot copy, is unwrapped in place and returned.)
  """
  if isinstance(model, PruneSignFlip):
    _bake(model)
    return model.layer
  if not isinstance(model, keras.Model):
    raise ValueError(f"strip_pruning takes a Keras 3 model; received {type(model).__name__}.")
  for w in collect_wrappers(model):
    _bake(w)
  if _subclassed(model):
    return _unwrap_in_place(model)

  def unwrap(layer):
    if isinstance(layer, keras.Model):
      return keras.models.clone_model(layer, clone_function=unwrap)
    return layer.layer if isinstance(layer, PruneSignFlip) else layer

  wrappers = {}

  def plain(layer):  # a wrapper in a block, for the time of the copy
    if isinstance(layer, PruneSignFlip):
      wrappers[id(layer.layer)] = layer
      return layer.layer
    return layer

  _swap_in_blocks(model, plain)
  try:
    shared = keras.models.clone_model(model, clone_function=unwrap)
    copy = keras.models.clone_model(shared)
    copy.set_weights(shared.get_weights())
  finally:
    _swap_in_blocks(model, lambda layer: wrappers.get(id(layer), layer))
  return copy


def _swap_in_blocks(model, swap):
  """Puts `swap(layer)` in place of each layer that the custom blocks of a Sequential or
  Functional `model` hold (nested blocks too), in place."""
  def walk(sub):
    new = swap(sub)
    if new is sub and _block(sub):
      sublayers.replace(sub, walk)
    return new
  for layer in all_layers(model):
    if _block(layer):
      sublayers.replace(layer, walk)


def _unwrap_in_place(layer):
  """A subclassed model (or block) with its wrappers replaced by their layers, in place:
  Keras cannot copy a subclassed model, so this one is stripped itself."""
  def unwrap(sub):
    if isinstance(sub, PruneSignFlip):
      return sub.layer
    return _unwrap_in_place(sub) if _block(sub) else sub
  sublayers.replace(layer, unwrap)
  return layer


def _bake(wrapper):
  for s in wrapper.flip_states:
    state_lib.count_pending(s)
    s.weight.assign(ops.multiply(s.weight, ops.cast(s.mask, s.weight.dtype)))


def pruning_masks(model):
  """{weight path: np.ndarray mask in the weight's dtype} of every wrapped weight."""
  return {s.weight.path: mask_array(s) for s in flip_states(model)}


def mask_array(state):
  """A state's mask as NumPy, in its weight's dtype."""
  return np.asarray(ops.convert_to_numpy(ops.cast(state.mask, state.weight.dtype)))
