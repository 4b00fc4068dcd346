"""Re-initialising a ticket's surviving weights before it is retrained.

| mode | surviving prunable weights | everything else |
|---|---|---|
| `rewind` | their values at the rewind point | rewind point |
| `signed_constant` | sign(w_rewind) * std(initial layer); Zhou et al. 2019 | rewind point |
| `random` | a fresh draw from the layer's initializer (Frankle & Carbin's control) | rewind point |
| `shuffle` | the surviving rewind values, permuted within the layer | rewind point |
| `lr_rewind` | values at the previous round's end (Renda et al. 2020) | previous round's end |

Pruned weights are zero in every mode. "Everything else" is every other
variable of the model: biases, normalisation statistics, unpruned layers.
"""
import numpy as np

from keras_signflip import families
from keras_signflip.lottery import rewind as rewind_lib

__all__ = ["MODES", "reinitialize"]

MODES = ("rewind", "signed_constant", "random", "shuffle", "lr_rewind")


def _initializer(layer, weight, keras):
  """The initializer that made `weight` (e.g. Dense.kernel_initializer)."""
  for attr, value in vars(layer).items():
    if value is weight:
      init = getattr(layer, f"{attr.lstrip('_')}_initializer", None)
      if init is not None:
        return init
  return keras.initializers.GlorotUniform()


def _fresh_draw(layer, weight, seed, family):
  init = _initializer(layer, weight, family.keras)
  config = dict(init.get_config(), seed=seed) if "seed" in init.get_config() else init.get_config()
  return family.to_numpy(type(init).from_config(config)(tuple(weight.shape), dtype="float32"))


def reinitialize(model, mode, rewind_snapshot, init_snapshot=None, seed=0,
                 trained_snapshot=None):
  """Sets `model`'s variables for a new round, as `mode` says (see table).

  Args:
    model: a model wrapped by `prune_sign_flip`, masks already set.
    mode: one of MODES.
    rewind_snapshot: a `rewind.Snapshot` at the rewind step.
    init_snapshot: the snapshot at initialisation (step 0), for
      `signed_constant`'s per-layer std. Defaults to `rewind_snapshot`.
    seed: seed of `random` and `shuffle`.
    trained_snapshot: `lr_rewind`'s start: the model at the end of the
      previous round.

  Raises:
    ValueError: unknown mode.
  """
  if mode not in MODES:
    raise ValueError(f"Received an invalid value for `mode`, expected one of "
                     f"{list(MODES)}. Received: mode={mode!r}")
  if mode == "lr_rewind":
    if trained_snapshot is None:
      raise ValueError("mode='lr_rewind' restarts from the previous round's trained weights; "
                       "pass `trained_snapshot`.")
    rewind_lib.restore(model, trained_snapshot)
    return
  rewind_lib.restore(model, rewind_snapshot)
  if mode == "rewind":
    return
  family = families.of(model)
  init_values = (init_snapshot or rewind_snapshot).values
  position = {id(v): i for i, v in enumerate(rewind_lib.variables(model))}
  rng = np.random.RandomState(seed)
  for i, (wrapper, state) in enumerate((w, s) for w in family.collect_wrappers(model)
                                       for s in w.flip_states):
    keep = family.to_numpy(state.mask) > 0
    w = family.to_numpy(state.weight)
    if mode == "signed_constant":
      new = np.sign(w) * np.std(init_values[position[id(state.weight)]])
    elif mode == "random":
      new = _fresh_draw(wrapper.layer, state.weight, seed * 1009 + i, family)
    else:  # shuffle
      new = np.zeros_like(w)
      new[keep] = rng.permutation(w[keep])
    state.weight.assign((new * keep).astype(w.dtype))
    family.sync_signs(state)
