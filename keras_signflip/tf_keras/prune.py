"""The tf_keras family's entry points: wrap, strip, link global wrappers, find the wrappers.

Reading a wrapped model (`flip_counts`, `masks`, `sparsity_report`) and
`set_reference` are `keras_signflip.inspection`'s, shared with the Keras 3
family, and re-exported here.
"""
import contextlib
import itertools

from keras_signflip import arguments
from keras_signflip import distributions
from keras_signflip import families
from keras_signflip import schedule_checks
from keras_signflip import criteria as criteria_lib
from keras_signflip import units as units_lib
from keras_signflip.inspection import (all_layers, collect_wrappers, flip_counts, masks,
                                       set_reference, sparsity_report)
from keras_signflip.tf_keras import layer_support
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras import sublayers
from keras_signflip.tf_keras import schedules as schedules_lib
from keras_signflip.tf_keras._framework import PruneLowMagnitude, keras, tf, tfmot
from keras_signflip.tf_keras.wrapper import GlobalGroup, PruneSignFlip, _keep_reference, _validate

__all__ = ["prune_sign_flip", "strip_pruning", "prune_scope", "flip_counts",
           "set_reference", "link_global", "collect_wrappers", "flip_states", "masks", "stripped",
           "sparsity_report", "count_tables", "pruning_masks"]


def _check_model(to_prune):
  """The layers `prune_sign_flip` would wrap or leave as they are (subclassed models and
  custom blocks opened), checked for what cannot be wrapped in place."""
  if families.is_keras3_object(to_prune):
    raise ValueError(
        "prune_sign_flip received a Keras 3 object "
        f"({type(to_prune).__module__}.{type(to_prune).__name__}), but this "
        "family is TF-MOT's and needs Keras 2 (tf_keras). Call "
        "keras_signflip.prune_sign_flip, which sends Keras 3 models to "
        "keras_signflip.keras3.")
  if isinstance(to_prune, keras.Model):
    layers = _leaves(to_prune)
  elif isinstance(to_prune, (list, tuple)):
    layers = [leaf for layer in to_prune for leaf in _leaves(layer)]
  elif isinstance(to_prune, keras.layers.Layer):
    layers = [to_prune]
  else:
    raise ValueError("prune_sign_flip takes a tf_keras layer, a list of layers, or "
                     f"a model; received {type(to_prune).__name__}.")
  return [l for i, l in enumerate(layers) if all(l is not m for m in layers[:i])]


def _subclassed(model):
  """Whether `model` is a subclassed tf_keras model (neither Sequential nor Functional)."""
  return isinstance(model, keras.Model) and not (
      isinstance(model, keras.Sequential) or model._is_graph_network)  # pylint: disable=protected-access


def _block(layer):
  """Whether `layer` is a custom block: a layer of the user's own class, neither
  prunable nor a wrapper, that holds layers. Inside a subclassed model its layers are
  wrapped in place; in a Sequential or Functional model it is refused, as TF-MOT's
  suite asserts (make it a `Model` subclass there)."""
  if isinstance(layer, (keras.Model, keras.layers.InputLayer, PruneLowMagnitude)):
    return False
  custom = not type(layer).__module__.startswith(("tf_keras.", "keras.", "tensorflow."))
  return custom and not _supported(layer) and any(
      True for _ in layer._flatten_layers(include_self=False, recursive=False))  # pylint: disable=protected-access


def _opened(layer, inside):
  """Whether `layer` is walked for the layers it holds: a subclassed model, or a block
  held `inside` one."""
  return _subclassed(layer) or (inside and _block(layer))


def _leaves(layer, inside=False):
  """`layer`, or the layers it holds when it is a model or an opened block, recursively."""
  if _opened(layer, inside):
    _refuse_own_weights(layer)
    return [leaf for _, _, sub in sublayers.containers(layer) for leaf in _leaves(sub, True)]
  if isinstance(layer, keras.Model):
    return [leaf for sub in layer.layers for leaf in _leaves(sub)]
  return [layer]


def _refuse_own_weights(layer):
  """Raises, naming them, for weights a subclassed model or block created itself
  (`self.add_weight`): outside any layer, no wrapper can prune them."""
  arguments.refuse_own_weights(layer, [v.name for v in sublayers.own_weights(layer)])


def prune_sign_flip(to_prune, pruning_schedule=None, criterion="hybrid",
                    scope="layer", min_flips=None, block_size=(1, 1),
                    block_pooling_type="AVG", pruning_policy=None,
                    sparsity_m_by_n=None, sparsity_distribution=None, dense_layers=(),
                    keep_reference=None, score_normalization=None, structure=None, **kwargs):
  """`tfmot.sparsity.keras.prune_low_magnitude`, with a pluggable criterion.

  Args:
    to_prune: a layer, a list of layers, or a model: Sequential, Functional or
      subclassed, nested in one another (`docs/guides/layers.md`).
    pruning_schedule: a TF-MOT `PruningSchedule` (`ConstantSparsity`,
      `PolynomialDecay`, `keras_signflip.tf_keras.schedules.GeometricSparsity`, ...).
      Defaults to `ConstantSparsity(0.5, 0)`.
    criterion: a `keras_signflip.criteria.Criterion` or its name. Defaults to
      `Hybrid(power=2)`, FlipOut's saliency |w|^2 / (flips + 1).
    scope: "layer" (each weight tensor reaches the schedule's sparsity) or
      "global" (one ranking over every wrapped weight of the model). Defaults
      to "layer".
    min_flips: None, or an int >= 1: flip-triggered pruning. At each mask
      update every unpruned weight with >= min_flips flips is pruned, never
      beyond the schedule's sparsity (lowest score first when that cap binds;
      with `SignFlip`, the most flipped). With `RecentFlips` the flips since
      the last update count: a rate of min_flips per `frequency` steps.
    block_size, block_pooling_type, pruning_policy, sparsity_m_by_n: as TF-MOT.
    sparsity_distribution: None (every layer follows the schedule), "uniform",
      "erk", "er", or {layer name: sparsity}: layer scope only; each layer's
      schedule is the given one scaled to its share of the target
      (`keras_signflip.distributions`, `schedules.ScaledSparsity`).
    dense_layers: layer names, "first" and/or "last": layers left unwrapped.
    keep_reference: keep reference weights (4 bytes per weight); None: only
      for criteria that read them (`set_reference` then just re-reads signs).
    score_normalization: None, or "l2": with scope="global", each tensor's
      scores are divided by the L2 norm of its unpruned scores before the one
      ranking (JaxPruner's per-layer normalisation), so no layer dominates by scale.
    structure: None or "weights" (unstructured), or "units": whole Dense output
      columns and conv filters, ranked by the criterion's scores summed per unit
      (`keras_signflip.units.Units`; layer scope; `keras_signflip.shrink` then
      removes them). Defaults to None.
    **kwargs: passed to the wrapper of a single layer (refused with a model or list).

  Returns:
    The wrapped layer(s) or a clone of the model with wrapped layers (the
    layers themselves, and so their weights, are shared with `to_prune`); a
    subclassed model is wrapped in place and returned (`tf_keras.sublayers`:
    Keras cannot clone it), as are the subclassed models nested in a clone.

  Raises:
    ValueError: bad arguments (wrong type, NaN, out of range; layer keyword
      arguments with a model or list), a schedule that never prunes, a Keras 3
      model, an unsupported layer (a custom block layer in a Sequential or
      Functional model included), a weight a subclassed model creates outside
      any layer, a layer held where it cannot be replaced, a model or layer
      already wrapped for pruning (its wrappers would keep their own criterion
      and schedule: `strip_pruning` first), or an unbuilt model with
      scope="global"; raised before wrapping.

  Example:
    >>> model = prune_sign_flip(base, pruning_schedule=GeometricSparsity(0.5, 500),
    ...                         criterion=criteria.Hybrid(power=2), scope="global")
    >>> model.compile(...); model.fit(x, y, callbacks=[UpdatePruningStep()])
  """
  criterion = units_lib.structured(criterion, structure)
  layers, criterion = _check_arguments(to_prune, pruning_schedule, criterion, scope, min_flips,
                                       block_size, sparsity_m_by_n, pruning_policy, kwargs)
  units_lib.check(criterion, scope, min_flips, block_size, sparsity_m_by_n, score_normalization)
  factors = distributions.layer_factors(
      [l for l in layers if _needs_wrapper(l, pruning_policy)], _prunable,  # Flatten too
      schedules_lib.max_sparsity(pruning_schedule or _default_schedule()),
      sparsity_distribution, dense_layers, scope)
  units_lib.check_layers([l for l in layers if _needs_wrapper(l, pruning_policy)
                          and not (factors and factors.get(l.name) == 0)], criterion, _prunable)
  params = dict(criterion=criterion, scope=scope, min_flips=min_flips,
                block_size=block_size, block_pooling_type=block_pooling_type,
                sparsity_m_by_n=sparsity_m_by_n,
                keep_reference=_keep_reference(criterion, keep_reference),
                score_normalization=arguments.check_normalization(score_normalization, scope))
  result, wrappers = _wrap(to_prune, pruning_schedule, pruning_policy, factors, params, kwargs)
  if scope == "global":
    GlobalGroup(wrappers)
  return result


def _check_arguments(to_prune, pruning_schedule, criterion, scope, min_flips, block_size,
                     sparsity_m_by_n, pruning_policy, kwargs):
  """`prune_sign_flip`'s checks on what it wraps and how, before anything is built;
  returns (the layers of `to_prune`, the criterion resolved)."""
  layers = _check_model(to_prune)
  arguments.refuse_wrapped([l.name for l in layers if isinstance(l, PruneLowMagnitude)],
                           "model" if isinstance(to_prune, keras.Model) else
                           "list of layers" if isinstance(to_prune, (list, tuple)) else "layer")
  if not isinstance(to_prune, keras.layers.Layer) or isinstance(to_prune, keras.Model):
    arguments.refuse_ignored_kwargs(kwargs)
  criterion = _validate(criterion, scope, min_flips, block_size, sparsity_m_by_n)
  if pruning_schedule is not None and not isinstance(
      pruning_schedule, tfmot.sparsity.keras.PruningSchedule):
    raise ValueError("Received an invalid value for `pruning_schedule`, expected "
                     "a tfmot.sparsity.keras.PruningSchedule. Received: "
                     f"pruning_schedule={pruning_schedule!r}")
  if pruning_schedule is not None:
    schedule_checks.check(pruning_schedule)
  for layer in layers:
    if _needs_wrapper(layer, pruning_policy) and _block(layer):
      raise ValueError(
          f"Layer {layer.name} ({type(layer).__name__}) holds layers but is not a "
          "model: in a Sequential or Functional model, tf_keras pruning refuses it as "
          "TF-MOT does. Subclass tf_keras.Model for it instead (its layers are then "
          "wrapped in place), give it a `get_prunable_weights()` method, or exclude it "
          "with a `pruning_policy`.")
    if _needs_wrapper(layer, pruning_policy) and not _supported(layer):
      raise ValueError(
          f"Layer {layer.name} ({type(layer).__name__}) cannot be pruned: it "
          "is not in TF-MOT's PruneRegistry nor keras_signflip's additions "
          "(keras_signflip.tf_keras.layer_support) and has no `get_prunable_weights`. "
          "Implement tfmot.sparsity.keras.PrunableLayer, or exclude it with a "
          "`pruning_policy` (or wrap only the other layers).")
  if scope == "global" and isinstance(to_prune, keras.Model) and not to_prune.built:
    raise ValueError("scope='global' needs a built model (one with a known input "
                     "shape): give the first layer an `input_shape` or call "
                     "`model.build(...)` first.")
  return layers, criterion


def _wrap(to_prune, pruning_schedule, pruning_policy, factors, params, kwargs):
  """(`to_prune` with its prunable layers wrapped, [the new wrappers]): a clone of a
  model, a new list, or the wrapper of one layer; each wrapper has a schedule of
  its own (TF-MOT shares one default instance), scaled by its layer's factor."""
  def new_schedule(layer):
    base = pruning_schedule or _default_schedule()
    factor = 1.0 if factors is None else factors.get(layer.name, 1.0)
    return base if factor == 1.0 else schedules_lib.ScaledSparsity(base, factor)

  positions = itertools.count()

  def wrap(layer, inside=False):
    if _opened(layer, inside):
      sublayers.replace(layer, wrap_built)  # in place: Keras cannot clone it (shared)
      return layer
    if isinstance(layer, keras.Model):
      return keras.models.clone_model(layer, input_tensors=None, clone_function=wrap)
    if not _needs_wrapper(layer, pruning_policy) or (factors and factors.get(layer.name) == 0):
      return layer
    return PruneSignFlip(layer, pruning_schedule=new_schedule(layer),
                         position=next(positions), **params)

  def wrap_built(layer):  # in place: the model calls it as it is, so build it now
    new = wrap(layer, inside=True)
    if isinstance(new, PruneSignFlip) and layer.built:
      new.build(getattr(layer, "_build_input_shape", None))
    return new

  if isinstance(to_prune, (list, tuple)):
    result = [wrap(l) if not isinstance(l, keras.layers.InputLayer)
              else l.__class__.from_config(l.get_config()) for l in to_prune]
    return result, [w for l in result for w in _wrappers_of(l)]
  if isinstance(to_prune, keras.Model):
    if pruning_policy:
      pruning_policy.ensure_model_supports_pruning(to_prune)
    result = wrap(to_prune)
    return result, collect_wrappers(result)
  result = PruneSignFlip(to_prune, pruning_schedule=new_schedule(to_prune), **params, **kwargs)
  return result, [result]


def _wrappers_of(layer):
  """The wrappers `layer` is or holds (a model, an opened block)."""
  if isinstance(layer, PruneSignFlip):
    return [layer]
  return [sub for sub in layer._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
          if isinstance(sub, PruneSignFlip)]


def _default_schedule():
  """TF-MOT's `ConstantSparsity(0.5, 0)`, made anew for each wrapper."""
  return tfmot.sparsity.keras.ConstantSparsity(0.5, 0)


def _needs_wrapper(layer, pruning_policy):
  if isinstance(layer, (keras.Model, keras.layers.InputLayer, PruneLowMagnitude)):
    return False
  return not (pruning_policy and not pruning_policy.allow_pruning(layer))


_prunable = layer_support.prunable_weights  # the weights pruned of `layer`, kernels first
_supported = layer_support.supports


def link_global(model):
  """Links a loaded model's scope="global" wrappers into one ranking group."""
  members = [w for w in collect_wrappers(model) if w.scope == "global"]
  if members and any(w.group is None or w.group.wrappers != members for w in members):
    GlobalGroup(members)
  return model


def strip_pruning(model):
  """A plain tf_keras model with the pruned weights (zeros), leaving `model` as it was.

  TF-MOT's `strip_pruning` returns the wrapped layers themselves, so the
  plain model would share every variable with `model`, after-step constraint
  included. This one returns a clone with its own copies of the (masked)
  weights and the layers' own constraints: exporting or fine-tuning it never
  changes the model still being pruned, which keeps counting flips. Keras cannot
  copy a subclassed model: one (alone or inside another model) is unwrapped in
  place, its weights masked, and shared.
  """
  if not isinstance(model, keras.Model):
    return tfmot.sparsity.keras.strip_pruning(model)  # TF-MOT's error for non-models
  count_tables(model)
  if _subclassed(model):
    return _unwrap_in_place(model)
  pruned = {id(state_lib.master_variable(s.weight)): s for s in flip_states(model)}
  shared = keras.models.clone_model(model, input_tensors=None, clone_function=_unwrapped)
  copy = keras.models.clone_model(shared, input_tensors=None, clone_function=_fresh)

  def value(variable):  # with its mask applied when `model` prunes it
    s = pruned.get(id(state_lib.master_variable(variable)))
    if s is None:
      return variable.numpy()
    return (s.weight.numpy() * s.mask.numpy()).astype(variable.dtype.as_numpy_dtype)

  copy.set_weights([value(v) for v in shared.weights])
  return copy


def _unwrapped(layer):
  """`strip_pruning`'s first clone function: the layer behind a wrapper (as TF-MOT's
  strip, with the wrapper's input shape when the layer has none), a nested model's
  clone, a subclassed model unwrapped in place."""
  if isinstance(layer, PruneLowMagnitude):
    if not hasattr(layer.layer, "_batch_input_shape") and hasattr(layer, "_batch_input_shape"):
      layer.layer._batch_input_shape = layer._batch_input_shape  # pylint: disable=protected-access
    return layer.layer
  if _subclassed(layer):
    return _unwrap_in_place(layer)
  if isinstance(layer, keras.Model):
    return keras.models.clone_model(layer, input_tensors=None, clone_function=_unwrapped)
  return layer


def _fresh(layer):
  """`strip_pruning`'s second clone function: a new layer from each one's config; a
  subclassed model, shared."""
  if _subclassed(layer):
    return layer
  if isinstance(layer, keras.Model):
    return keras.models.clone_model(layer, input_tensors=None, clone_function=_fresh)
  return layer.__class__.from_config(layer.get_config())


def _unwrap_in_place(model, restore=None):
  """`model` (subclassed, or a block) with each wrapper replaced by its layer, whose
  weights are masked first, and each Sequential/Functional model it holds by its
  stripped copy, in place; `restore` (a dict) gets {id(new): what it replaced}."""
  def unwrap(sub):
    new = sub
    if isinstance(sub, PruneSignFlip):
      for s in sub.flip_states:
        s.weight.assign(s.weight * tf.cast(s.mask, s.weight.dtype))
    if isinstance(sub, PruneLowMagnitude):
      new = sub.layer
    elif (isinstance(sub, keras.Model) and not _subclassed(sub)
          and collect_wrappers(sub)):
      new = strip_pruning(sub)
    if restore is not None and new is not sub:
      restore[id(new)] = sub
    return new
  _swap(model, unwrap)
  return model


def _swap(layer, swap):
  """Puts `swap(sub)` in place of each layer `layer` holds, in its opened blocks too."""
  def walk(sub):
    new = swap(sub)
    if new is sub and _opened(sub, inside=True):
      _swap(sub, swap)
    return new
  sublayers.replace(layer, walk)


@contextlib.contextmanager
def stripped(model):
  """`strip_pruning(model)` for the time of a `with` block (an export): a subclassed
  model, stripped in place, gets its wrappers back after it."""
  if not collect_wrappers(model):
    yield model
  elif not _subclassed(model):
    yield strip_pruning(model)
  else:
    count_tables(model)
    wrappers = {}
    _unwrap_in_place(model, restore=wrappers)
    try:
      yield model
    finally:
      _swap(model, lambda sub: wrappers.get(id(sub), sub))


def prune_scope():
  """A custom-object scope for loading saved, still-wrapped models."""
  objects = {"PruneLowMagnitude": PruneLowMagnitude, "PruneSignFlip": PruneSignFlip,
             "GeometricSparsity": schedules_lib.GeometricSparsity}
  objects.update({c.__name__: c for c in criteria_lib.CRITERIA.values()})
  return keras.utils.custom_object_scope(objects)


def flip_states(model):
  """Every wrapped weight's `PruningState`, in model order."""
  return [s for w in collect_wrappers(model) for s in w.flip_states]


def count_tables(model):
  """Counts what the last step flipped in sparse-gradient tables (state.py); call
  before reading flips or weights between steps (the functions here do)."""
  for w in collect_wrappers(model):
    w.count_tables()


def pruning_masks(model):
  """{weight name: np.ndarray mask} of every pruning wrapper, keras_signflip's or
  TF-MOT's (`sparsity_report` reports them all)."""
  return {weight.name: mask.numpy()
          for layer in (all_layers(model) if isinstance(model, keras.Model) else [])
          for weight, mask, _ in getattr(layer, "pruning_vars", [])}
