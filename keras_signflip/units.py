"""Structured pruning: whole units (Dense output columns, conv filters) ranked and pruned.

`Units(criterion)` is a criterion whose ranking is over units, not weights.
A unit is one index of a prunable weight's last axis: a Dense kernel's output
column (in, out), a convolution kernel's output filter (..., in, out). Its score
is the sum of its live weights' scores under the wrapped criterion:

    unit_score[j] = sum_i score(w)[i, j]   over the unpruned weights of unit j
                  = -inf                   when none is unpruned
    tiebreak[j]   = sum_i tiebreak(w)[i, j] (the criterion's, when it has one)

One rule for every criterion: for `Magnitude` it is the unit's L1 norm (Li et
al. 2017, "Pruning Filters for Efficient ConvNets"), for `SignFlip` minus the
unit's total flip count, for `Hybrid` the summed FlipOut saliency. Units of one
layer have the same fan-in, so the sum ranks them as the mean would. At a mask
update, `kept_count(units, sparsity)` units (TF-MOT's rounding, at least one)
with the highest scores are kept, ties by tiebreak then lower index first, and
every weight of a pruned unit is masked. Layer scope only: fan-ins differ across
layers, so one global ranking of sums would favour wide inputs.

The bias of a pruned unit is left to train: the unit's output is then the
constant act(bias), which `keras_signflip.shrink` (`keras_signflip.shrinking`)
folds into the next layer's bias (exactly) before removing the unit.

    model = ksf.prune_sign_flip(base, schedule, criterion=Units("hybrid"))
    # or: ksf.prune_sign_flip(base, schedule, criterion="hybrid", structure="units")
"""
from keras_signflip import criteria as criteria_lib

__all__ = ["Units", "UNIT_LAYERS", "STRUCTURES", "structured", "check", "check_layers",
           "check_one_layer",
           "unit_scores", "unit_tiebreaks", "expand"]

# Layers whose prunable weight is one kernel with the unit axis last.
UNIT_LAYERS = ("Dense", "Conv1D", "Conv2D", "Conv3D")
STRUCTURES = (None, "weights", "units")


def _live_sum(values, live, xp):
  """Sum over all axes but the last of `values` where `live`, as (units,) float32."""
  units = values.shape[-1]
  values = xp.reshape(xp.cast(values, "float32"), (-1, units))
  live = xp.reshape(live, (-1, units))
  return xp.sum(xp.where(live, values, xp.zeros_like(values)), axis=0)


def unit_scores(scores, live, xp):
  """(units,) float32: each unit's summed score over its live weights; -inf if none.

  Args:
    scores: the criterion's per-weight scores (any finite value where `live`).
    live: bool, shaped like `scores`: the unpruned weights.
    xp: an array namespace (`keras_signflip.array_namespace`).
  """
  units = scores.shape[-1]
  any_live = xp.greater(_live_sum(xp.cast(live, "float32"), live, xp), 0.0)
  total = _live_sum(scores, live, xp)
  return xp.where(any_live, total, xp.zeros((units,), "float32") - float("inf"))


def unit_tiebreaks(tiebreak, live, xp):
  """(units,) float32: the summed per-weight tiebreak over live weights (or None)."""
  return None if tiebreak is None else _live_sum(tiebreak, live, xp)


def expand(unit_keep, shape, xp):
  """The (units,) bool `unit_keep` broadcast to a weight of `shape` (unit axis last)."""
  units = xp.reshape(xp.cast(unit_keep, "float32"), (1,) * (len(shape) - 1) + (shape[-1],))
  return xp.greater(xp.zeros(tuple(shape), "float32") + units, 0.5)


class Units(criteria_lib.Criterion):
  """Ranks units by `criterion`'s per-weight scores summed over each unit (module docstring).

  Args:
    criterion: the per-weight criterion (instance, name or config). Defaults to
      "hybrid".
  """
  name = "units"

  def __init__(self, criterion="hybrid"):
    base = criteria_lib.get(criterion)
    if isinstance(base, Units):
      raise ValueError("Received an invalid value for `criterion`, expected a per-weight "
                       f"criterion; Units cannot wrap Units. Received: criterion={base!r}")
    self.base = base

  # What the wrappers keep for the criterion is what the wrapped one reads.
  uses_reference = property(lambda self: self.base.uses_reference)
  uses_window = property(lambda self: self.base.uses_window)
  uses_gradients = property(lambda self: self.base.uses_gradients)
  resets_gradients = property(lambda self: self.base.resets_gradients)
  needs_int64 = property(lambda self: self.base.needs_int64)
  xla_compatible = property(lambda self: self.base.xla_compatible)

  def score(self, weight, state, xp=None):
    """Each weight's unit score (all weights taken as live), shaped like `weight`."""
    xp = xp or criteria_lib._default_xp()  # pylint: disable=protected-access
    scores = self.base.score(weight, state, xp)
    live = xp.greater(xp.zeros(tuple(weight.shape), "float32"), -1.0)
    per_unit = unit_scores(scores, live, xp)
    return xp.zeros(tuple(weight.shape), "float32") + xp.reshape(
        per_unit, (1,) * (len(weight.shape) - 1) + (weight.shape[-1],))

  def flip_count(self, state, xp=None):
    return self.base.flip_count(state, xp)

  def tiebreak(self, weight, state, xp=None):
    return self.base.tiebreak(weight, state, xp)

  def get_config(self):
    return {"criterion": criteria_lib.serialize(self.base)}

  @classmethod
  def from_config(cls, config):
    return cls(criteria_lib.get(config["criterion"]))

  def __hash__(self):
    return hash((type(self).__name__, hash(self.base)))

  def __repr__(self):
    return f"Units({self.base!r})"


def structured(criterion, structure):
  """`criterion` for `prune_sign_flip(..., structure=...)`: Units(criterion) for "units".

  Args:
    criterion: a criterion, its name or config.
    structure: None or "weights" (unstructured, the default) or "units".
  """
  if structure not in STRUCTURES:
    raise ValueError(f"Received an invalid value for `structure`, expected one of "
                     f"{list(STRUCTURES)}. Received: structure={structure!r}")
  criterion = criteria_lib.get(criterion)
  if structure == "units" and not isinstance(criterion, Units):
    return Units(criterion)
  return criterion


def check(criterion, scope, min_flips, block_size=(1, 1), sparsity_m_by_n=None,
          score_normalization=None):
  """Refuses what `Units` cannot be combined with (before anything is wrapped)."""
  if not isinstance(criterion, Units):
    return
  if scope != "layer":
    raise ValueError("Structured pruning (Units) ranks the units of each layer: it needs "
                     f"scope='layer'. Received: scope={scope!r}")
  others = {"min_flips": min_flips, "sparsity_m_by_n": sparsity_m_by_n,
            "score_normalization": score_normalization}
  given = {k: v for k, v in others.items() if v is not None}
  if tuple(block_size) != (1, 1):
    given["block_size"] = block_size
  if given:
    raise ValueError("Structured pruning (Units) prunes whole units and cannot be combined "
                     f"with {sorted(given)}. Received: {given}")


def check_one_layer(states, kept):
  """Both families' mask updates: units are ranked inside one layer, to a sparsity."""
  if kept is not None or len(states) != 1:
    raise ValueError("Structured pruning (Units) ranks one layer's units by sparsity; an "
                     "exact kept count or a global ranking is not supported.")


def check_layers(layers, criterion, prunable_weights):
  """Refuses, for `Units`, a layer to be wrapped whose kernel's last axis is not its units.

  Args:
    layers: the layers about to be wrapped.
    criterion: the resolved criterion (nothing is checked unless it is `Units`).
    prunable_weights: layer -> the weights the family would prune (layers with none pass).
  """
  if not isinstance(criterion, Units):
    return
  for layer in layers:
    if prunable_weights(layer) and type(layer).__name__ not in UNIT_LAYERS:
      raise ValueError(
          f"Layer {layer.name} ({type(layer).__name__}) cannot be pruned by units: structured "
          f"pruning supports {list(UNIT_LAYERS)}. Leave it dense (`dense_layers`) or prune it "
          "by weights (structure=None).")
