"""Reading a pruned model the same way in both families: its wrappers, flips, masks, the
sparsity report.

Also `set_reference`, which moves the reference point of the reference
criteria. Each function reaches the weights only through the model's
`keras_signflip.families.Family` (names are Keras 3's `path` or tf_keras's `name`).
"""
import numpy as np

from keras_signflip import families

__all__ = ["all_layers", "collect_wrappers", "flip_counts", "masks", "set_reference",
           "sparsity_report", "summarize"]


def all_layers(model):
  """`model.layers`, recursing into nested models, in order."""
  model_class = families.of(model).keras.Model
  out = []
  for layer in model.layers:
    out.extend(all_layers(layer) if isinstance(layer, model_class) else [layer])
  return out


def collect_wrappers(model):
  """Every keras_signflip wrapper (`PruneSignFlip`) in `model`, nested models and the
  blocks of subclassed models included, in layer order; [] for anything but a model."""
  family = families.of(model)
  if not isinstance(model, family.keras.Model):
    return []

  def wrappers_in(layer):
    if isinstance(layer, family.wrapper):
      return [layer]
    return [w for sub in layer._flatten_layers(include_self=False, recursive=False)  # pylint: disable=protected-access
            for w in wrappers_in(sub)]
  found = [w for l in all_layers(model) for w in wrappers_in(l)]
  return [w for i, w in enumerate(found) if all(w is not v for v in found[:i])]


def flip_counts(model):
  """{weight name: int32 np.ndarray of sign-flip counts}, up to the last step."""
  family = families.of(model)
  family.count_pending(model)
  return {families.weight_name(s.weight): np.asarray(family.to_numpy(s.flips))
          for s in family.flip_states(model)}


def masks(model):
  """{weight name: np.ndarray mask (0/1) in the weight's dtype} for every wrapped weight."""
  family = families.of(model)
  return {families.weight_name(s.weight): family.mask_array(s) for s in family.flip_states(model)}


def set_reference(model):
  """Moves every wrapper's reference weights to the current weights.

  Criteria that compare against a reference (`LargeFinalSameSign`,
  `MagnitudeIncrease`, `Movement`) then measure from here: call it at the
  rewind step for late-rewinding tickets. The signs flips are counted against
  are re-read too (after weights were set from outside a training step).
  """
  family = families.of(model)
  states = family.flip_states(model)
  if not states:
    raise ValueError("set_reference found no keras_signflip wrappers in the "
                     "model; wrap it with prune_sign_flip first.")
  for s in states:
    if s.reference is not None:  # kept only for criteria that read it
      s.reference.assign(family.float32_copy(s.weight))
    family.sync_signs(s)
  return model


def sparsity_report(model):
  """Sparsity of every pruning wrapper (keras_signflip's, and TF-MOT's on tf_keras).

  Returns:
    {'layers': {weight name: sparsity}, 'overall': sparsity over all wrapped
    weights, 'flips': {weight name: total flips} (keras_signflip wrappers)}.
  """
  return summarize(families.of(model).pruning_masks(model), flip_counts(model))


def summarize(masks, flips):  # pylint: disable=redefined-outer-name
  """The sparsity report of plain NumPy masks and flip counts.

  Args:
    masks: {weight name: 0/1 array}.
    flips: {weight name: flip-count array}.
  """
  sizes = {n: int(np.size(m)) for n, m in masks.items()}
  zeros = {n: sizes[n] - int(np.count_nonzero(m)) for n, m in masks.items()}
  total = sum(sizes.values())
  return {"layers": {n: zeros[n] / sizes[n] for n in masks},
          "overall": sum(zeros.values()) / total if total else 0.0,
          "flips": {n: int(np.sum(f)) for n, f in flips.items()}}
