"""A lottery run's settings (`LotteryConfig`) and their record in config.json.

One configuration per directory. The first run writes `config.json`: every
`LotteryConfig` field as it acts (the criterion serialised; `prune_rate` and
`prune_rate_output` as None where `round_sparsities` or global scope leaves
them unused; `prune_rate_output=None` in layer scope as the `prune_rate` it
stands for), a digest of `init_mask`, and the caller's `context` (e.g. the
example binary's model, data and optimizer flags). A later run into the
directory must give the same values: any difference is refused, naming each
key with its recorded and given value, before anything is built, written or
trained. Extending a run is allowed, and continues it exactly as an
uninterrupted run:

  - more `rounds` (rate-based), or `round_sparsities` that keep the recorded
    list as their prefix: the primary's last round leaves its whole model
    state (`state_<r>.npz`), from which round r + 1's masks are drawn (a
    directory written before this file existed has none: its last round is
    retrained, seeded as before, to draw them);
  - control modes appended to `modes` (the recorded list a prefix of the new
    one): they retrain the stored masks. Appending `lr_rewind` is refused: it
    needs every earlier round's trained model, kept only when it was there
    from the start.

`eval_every` is not safe to change: it sets the early-stopping columns of
every row, so rows of one directory would mix two settings. Nor are
`epochs`, `seed`, `criterion`, `scope`, the rates, `rewind_step` or
`init_mask`. A run can be extended but not shortened.

`compare_records` applies these rules; `run_dir.check_output_dir` refuses
with them. Imports no framework.
"""
import dataclasses
import hashlib
import json
import math
import numbers
import re
from typing import Optional, Sequence

import numpy as np

from keras_signflip import arguments
from keras_signflip import criteria as criteria_lib
from keras_signflip.lottery import reinit as reinit_lib
from keras_signflip.lottery import rewind as rewind_lib

__all__ = ["LotteryConfig", "kept_counts", "config_record", "compare_records", "check_init_mask",
           "rewind_record", "show_value", "CONFIG_FORMAT", "FORMAT_KEY"]

CONFIG_FORMAT = 1
FORMAT_KEY = "keras_signflip_lottery"  # config.json's key naming its format


def _is_number(value):
  """A finite real number, not a bool."""
  return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class LotteryConfig:
  """Settings of an iterative-pruning run. See `keras_signflip.lottery.loop`.

  Every field is checked when the config is made (type, finiteness, range);
  a bad one raises ValueError naming it, its value and what is accepted.

  Attributes:
    rounds: pruning rounds after the dense round 0 (an int >= 0).
    prune_rate: fraction of survivors pruned per round (layers, or global),
      in (0, 1).
    prune_rate_output: rate of the last prunable tensor (layer scope), in
      (0, 1); None: same as `prune_rate`.
    scope: "layer" or "global".
    criterion: ranking criterion (name, config dict or Criterion).
    rewind_step: 0, an int >= 0, "500it" or "2ep".
    modes: re-initialisations (distinct, from `reinit.MODES`); the first
      defines the masks.
    epochs: training epochs per round (an int >= 1).
    eval_every: evaluate validation loss / test accuracy every N steps (an
      int >= 1; None: once per epoch).
    seed: base seed, an int >= 0; round r uses seed + r (< 2**32).
    round_sparsities: None, or the sparsity after each round (increasing, in
      (0, 1)); replaces `prune_rate`/`prune_rate_output` and sets `rounds`
      to its length.
  """
  rounds: int = 5
  prune_rate: float = 0.2
  prune_rate_output: Optional[float] = 0.1
  scope: str = "layer"
  criterion: object = "magnitude"
  rewind_step: object = 0
  modes: Sequence[str] = ("rewind",)
  epochs: int = 1
  eval_every: Optional[int] = None
  seed: int = 0
  round_sparsities: Optional[Sequence[float]] = None

  def __post_init__(self):
    for name in ("rounds", "epochs", "eval_every", "seed"):  # NumPy integers as ints
      value = getattr(self, name)
      if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        object.__setattr__(self, name, int(value))
    arguments.check_count("rounds", self.rounds, minimum=0)
    if self.round_sparsities is not None:
      targets = self.round_sparsities
      try:
        targets = None if isinstance(targets, (str, bytes, dict)) else list(targets)
      except TypeError:
        targets = None
      if (not targets or any(not _is_number(t) or not 0.0 < t < 1.0 for t in targets)
          or any(b <= a for a, b in zip(targets, targets[1:]))):
        raise ValueError("Received an invalid value for `round_sparsities`, expected None or "
                         "a non-empty increasing list of numbers in (0, 1). Received: "
                         f"round_sparsities={self.round_sparsities!r}")
      default = type(self).__dataclass_fields__["rounds"].default
      if self.rounds not in (0, default, len(targets)):
        raise ValueError(f"`rounds` ({self.rounds}) disagrees with the {len(targets)} "
                         "`round_sparsities`; leave `rounds` out.")
      object.__setattr__(self, "round_sparsities", tuple(float(t) for t in targets))
      object.__setattr__(self, "rounds", len(targets))
    for name in ("prune_rate", "prune_rate_output"):
      rate = getattr(self, name)
      if rate is None and name == "prune_rate_output":
        continue
      object.__setattr__(self, name, arguments.check_number(
          name, rate, 0, 1, low_inclusive=False, high_inclusive=False))
    if not isinstance(self.scope, str) or self.scope not in arguments.SCOPES:
      raise ValueError(f"Received an invalid value for `scope`, expected one of "
                       f"{list(arguments.SCOPES)}. Received: scope={self.scope!r}")
    try:
      criteria_lib.get(self.criterion)
    except TypeError as e:  # a config dict of the wrong shape
      raise ValueError(f"Received an invalid value for `criterion` ({e}). "
                       f"Received: criterion={self.criterion!r}") from None
    step = self.rewind_step
    valid_type = (isinstance(step, (str, numbers.Integral))
                  and not isinstance(step, (bool, np.bool_)))
    try:
      if not valid_type:
        raise ValueError
      rewind_lib.steps(step, steps_per_epoch=1)
    except ValueError:
      raise ValueError("Received an invalid value for `rewind_step`, expected a duration: an "
                       "integer >= 0, 'Nit' (iterations) or 'Nep' (epochs), e.g. '500it', "
                       f"'2ep'. Received: rewind_step={step!r}") from None
    modes = self.modes
    try:
      modes = None if isinstance(modes, (str, bytes, dict)) else tuple(modes)
    except TypeError:
      modes = None
    if (not modes or any(not isinstance(m, str) or m not in reinit_lib.MODES for m in modes)
        or len(set(modes)) != len(modes)):
      raise ValueError("Received an invalid value for `modes`, expected a non-empty list of "
                       f"distinct modes from {list(reinit_lib.MODES)}. Received: "
                       f"modes={self.modes!r}")
    object.__setattr__(self, "modes", modes)
    arguments.check_count("epochs", self.epochs, minimum=1)
    if self.eval_every is not None:
      arguments.check_count("eval_every", self.eval_every, minimum=1)
    arguments.check_count("seed", self.seed, minimum=0)
    if self.seed + self.rounds >= 2 ** 32:
      raise ValueError(f"Received an invalid value for `seed`, expected an integer in [0, "
                       f"{2 ** 32 - 1 - self.rounds}] (round r is seeded with seed + r, and "
                       f"seeds stop at 2**32 - 1). Received: seed={self.seed!r}")


def kept_counts(sizes, config, round_index):
  """Kept weights per tensor after `round_index` rounds (layer scope), or the
  total kept (global scope, returned as a one-element list)."""
  r = round_index
  if config.round_sparsities is not None:
    keep = 1.0 - config.round_sparsities[r - 1] if r > 0 else 1.0
    total = [sum(sizes)] if config.scope == "global" else sizes
    return [max(round(n * keep), 1) for n in total]
  if config.scope == "global":
    return [max(round(sum(sizes) * (1 - config.prune_rate) ** r), 1)]
  rates = [config.prune_rate] * len(sizes)
  if config.prune_rate_output is not None and sizes:
    rates[-1] = config.prune_rate_output
  return [max(round(n * (1 - rate) ** r), 1) for n, rate in zip(sizes, rates)]


def _json_value(value):
  """`value` as it reads back from JSON (tuples as lists, ...)."""
  return json.loads(json.dumps(value))


def rewind_record(step):
  """`rewind_step` as config.json records it: iterations as an int, epochs as
  "<n>ep", so "500it" and 500 compare equal."""
  if isinstance(step, numbers.Integral):
    return int(step)
  count, unit = re.match(r"^\s*(\d+)\s*(it|ep)\s*$", step).groups()
  return int(count) if unit == "it" else f"{int(count)}ep"


def _mask_digest(masks):
  """sha256 of the masks' shapes and values: config.json records `init_mask` by it."""
  digest = hashlib.sha256()
  for m in masks:
    m = np.ascontiguousarray(m, np.float32)
    digest.update(repr(m.shape).encode())
    digest.update(m.tobytes())
  return "sha256:" + digest.hexdigest()


def check_init_mask(init_mask):
  """`init_mask` as a list of float32 arrays of 0s and 1s, or a ValueError."""
  if init_mask is None:
    return None
  try:
    masks = [np.asarray(m, np.float32) for m in init_mask]
  except (TypeError, ValueError):
    masks = None
  if not masks or any(not np.all((m == 0) | (m == 1)) for m in masks):
    raise ValueError("Received an invalid value for `init_mask`, expected None or a list of "
                     "arrays of 0s and 1s (e.g. lottery.load_masks(...)).")
  return masks


def _criterion_record(criterion):
  """`criteria.serialize` of the criterion; a config that JSON cannot hold (a
  user's criterion) as its repr."""
  record = criteria_lib.serialize(criteria_lib.get(criterion))
  try:
    json.dumps(record)
  except (TypeError, ValueError):
    record = {"class_name": record["class_name"], "config": repr(record["config"])}
  return record


def config_record(config, init_mask=None, context=None):
  """What config.json stores for a run: the config as it acts, normalised
  (see the module docstring), the init_mask digest and the caller's context."""
  sparsities = config.round_sparsities
  output_rate = (config.prune_rate_output if config.prune_rate_output is not None
                 else config.prune_rate)
  init_mask = check_init_mask(init_mask)
  if context is not None:
    if not isinstance(context, dict) or any(not isinstance(k, str) for k in context):
      raise ValueError("Received an invalid value for `context`, expected None or a dict with "
                       f"string keys. Received: context={context!r}")
    try:
      json.dumps(context)
    except (TypeError, ValueError):
      raise ValueError("Received an invalid value for `context`, expected JSON-serialisable "
                       f"values. Received: context={context!r}") from None
  return _json_value({
      FORMAT_KEY: CONFIG_FORMAT,
      "config": {
          "rounds": config.rounds,
          "prune_rate": None if sparsities is not None else config.prune_rate,
          "prune_rate_output": (None if sparsities is not None or config.scope == "global"
                                else output_rate),
          "scope": config.scope,
          "criterion": _criterion_record(config.criterion),
          "rewind_step": rewind_record(config.rewind_step),
          "modes": list(config.modes),
          "epochs": config.epochs,
          "eval_every": config.eval_every,
          "seed": config.seed,
          "round_sparsities": None if sparsities is None else list(sparsities),
      },
      "init_mask": None if init_mask is None else _mask_digest(init_mask),
      "context": dict(context or {}),
  })


def _flat(record):
  """A record as one dict: the config's keys, "init_mask" and "context.<key>"."""
  out = dict(record.get("config", {}))
  out["init_mask"] = record.get("init_mask")
  out.update({f"context.{k}": v for k, v in (record.get("context") or {}).items()})
  return out


def show_value(value):
  """A recorded value as a message shows it (dicts as sorted JSON)."""
  return json.dumps(value, sort_keys=True) if isinstance(value, dict) else repr(value)


def _extends(old, new):
  """Whether list `new` is `old` with items appended."""
  return (isinstance(old, list) and isinstance(new, list) and len(new) > len(old)
          and new[:len(old)] == old)


def compare_records(old_record, new_record):
  """How a run's record differs from its directory's: (refused, extended),
  each [(key, recorded, given)]. Extended: the changes that continue the run
  exactly (more rounds, appended sparsities or control modes); refused: the rest."""
  old, new = _flat(old_record), _flat(new_record)
  diffs = [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
           if old.get(k) != new.get(k)]
  sparsities_ok = (old.get("round_sparsities") is None and new.get("round_sparsities") is None
                   or _extends(old.get("round_sparsities"), new.get("round_sparsities")))
  allowed = {
      "rounds": lambda a, b: (isinstance(a, int) and isinstance(b, int) and b > a
                              and sparsities_ok),
      "round_sparsities": _extends,
      "modes": lambda a, b: _extends(a, b) and "lr_rewind" not in b[len(a):],
  }
  refused = [d for d in diffs if d[0] not in allowed or not allowed[d[0]](d[1], d[2])]
  extended = [d for d in diffs if d not in refused]
  return refused, extended
