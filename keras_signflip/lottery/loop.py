"""Lottery tickets by iterative pruning with rewinding (Frankle & Carbin 2019).

Round 0 trains the dense network (or a given starting mask) from
initialisation for T steps and records the rewind point (step k). Each later
round r (late rewinding, k > 0: the optimizer's step and slots are rewound to
step k too, and the round trains steps k..T, Frankle et al. 2020):

    mask_r   = prune a fraction of mask_{r-1}'s survivors, ranked by the
               criterion on the weights trained in round r-1
    weights  = reinit(mode): rewind / signed_constant / random / shuffle
    train with mask_r fixed; record accuracies and the early-stopping step

Kept counts are exact: per layer, max(round(n * (1 - rate) ** r), 1) of each
prunable tensor's n weights (`prune_rate_output` for the last one); global
scope keeps max(round(N * (1 - rate) ** r), 1) of all N together. Rounding is
Python's round-half-to-even on the exact product. With `round_sparsities`
(s_1 < s_2 < ... per round) the rate is replaced by the listed targets:
round r keeps max(round(n * (1 - s_r)), 1) per tensor (or of all N), so the
tickets land exactly on the sparsities a comparison asks for.

Every phase writes its artifact (masks_r.npz, rewind.npz, results.json/.csv),
atomically (a temporary sibling, then a rename), and is skipped when it
exists, so a killed run resumes in the round it stopped in and reproduces the
uninterrupted results (each round is seeded). Controls (`modes[1:]`) retrain
the primary mode's masks with another re-initialisation.

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

A directory with lottery artifacts but no `config.json` (written before it
existed) is adopted when its artifacts agree with the given configuration
(every result row is a round of this plan with the exact kept count, every
masks_r.npz has the exact kept counts, and the example binary's old flag
record, if present, agrees); fields the artifacts cannot show (criterion
settings, `eval_every`, `seed` without that record) are taken on trust, as
the log says. Otherwise it is refused, naming the disagreement. A non-empty
directory holding neither is a user's, and is refused (`OutputDirError`), as
are a file at `output_dir` and a directory keras_signflip marked as another
kind (`owned_dir.MARKER`: a training run, an export); a lottery directory
gets the marker of kind "lottery" when it is first written.

Unreadable artifacts (truncated, bit-flipped) raise `OutputDirError` naming
the file, what it holds and the way out: delete it and rerun, and the run
recomputes it -- masks_r.npz from state_<r-1>.npz or by retraining round
r - 1, rewind.npz and trained_*.npz by retraining their round, init.npz from
the seeded `make_model` (recomputed artifacts equal the lost ones where
training is deterministic, e.g. with TensorFlow's op determinism). Two are
recovered at once: an unreadable results.json is rebuilt from results.csv
and the masks (exact), and an unreadable masks_0.npz is rewritten from
`init_mask` or ones.
"""
import csv
import dataclasses
import hashlib
import io
import json
import math
import numbers
import os
import re
import time
from typing import Callable, Optional, Sequence

import numpy as np

from keras_signflip import arguments
from keras_signflip import criteria as criteria_lib
from keras_signflip import families
from keras_signflip import owned_dir
from keras_signflip.callback import Callback
from keras_signflip.lottery import reinit as reinit_lib
from keras_signflip.lottery import rewind as rewind_lib

__all__ = ["LotteryConfig", "kept_counts", "run", "RunFiles", "load_results", "plot",
           "save_masks", "load_masks", "OutputDirError", "check_output_dir", "read_config",
           "config_record"]

CONFIG_FORMAT = 1
_FORMAT_KEY = "keras_signflip_lottery"


class OutputDirError(ValueError):
  """`output_dir` cannot take this run: another configuration, a user's
  directory, a file, or an unreadable artifact (the message names it and the
  way out). Raised before anything is written."""


def _is_number(value):
  """A finite real number, not a bool."""
  return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class LotteryConfig:
  """Settings of an iterative-pruning run. See the module docstring.

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
    valid_type = isinstance(step, (str, numbers.Integral)) and not isinstance(step, (bool, np.bool_))
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


class RunFiles:
  """Every file of a run directory, in one place."""

  def __init__(self, root):
    self.root = os.fspath(root)

  def masks(self, r):
    return os.path.join(self.root, f"masks_{r}.npz")

  config = property(lambda self: os.path.join(self.root, "config.json"))
  init = property(lambda self: os.path.join(self.root, "init.npz"))
  rewind = property(lambda self: os.path.join(self.root, "rewind.npz"))

  def trained(self, mode, r):
    """The model at the end of round r of `mode` (kept for `lr_rewind`)."""
    return os.path.join(self.root, f"trained_{mode}_{r}.npz")

  def state(self, r):
    """The primary mode's whole model state (pruning state too) at the end of
    round r, its last: an extended run draws round r + 1's masks from it."""
    return os.path.join(self.root, f"state_{r}.npz")
  results_json = property(lambda self: os.path.join(self.root, "results.json"))
  results_csv = property(lambda self: os.path.join(self.root, "results.csv"))
  plot_accuracy = property(lambda self: os.path.join(self.root, "accuracy_vs_remaining.png"))
  plot_early_stop = property(lambda self: os.path.join(self.root, "early_stop_vs_remaining.png"))


# What a lottery run (this version or an earlier one) writes, temporary files included.
_ARTIFACT = re.compile(r"^(results\.(json|csv)|init\.npz|rewind\.npz|masks_\d+\.npz|"
                       r"trained_[a-z_]+_\d+\.npz|state_\d+\.npz|early_bird\.json|"
                       r"accuracy_vs_remaining\.png|early_stop_vs_remaining\.png)(\.tmp.*)?$")


def _replace_atomically(path, write):
  """Calls write(temporary sibling path), then renames it to `path`."""
  tmp = path + ".tmp"
  try:
    write(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _write_json(path, obj):
  def write(tmp):
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")
  _replace_atomically(path, write)


def save_masks(path, masks):
  """Writes a list of masks as .npz, atomically."""
  def write(tmp):
    with open(tmp, "wb") as f:
      np.savez(f, *masks)
  _replace_atomically(path, write)


def load_masks(path):
  """The list of masks in a masks_<r>.npz file.

  Raises:
    ValueError: the file is missing or unreadable (truncated, damaged), naming it.
  """
  try:
    with np.load(path) as f:
      masks = [f[f"arr_{i}"] for i in range(len(f.files))]
  except Exception as e:  # pylint: disable=broad-except  (zip, npy and OS errors alike)
    raise ValueError(f"{path} is not a readable masks file ({type(e).__name__}: {e}).") from None
  if not masks or any(m.dtype.kind not in "fiub" or not np.all((m == 0) | (m == 1))
                      for m in masks):
    raise ValueError(f"{path} is not a masks file: expected arrays of 0s and 1s.")
  return masks


_ROW_KEYS = ("mode", "round", "weights_remaining_pct", "remaining_pct_per_layer",
             "test_accuracy", "test_loss", "early_stop_step", "early_stop_val_loss",
             "early_stop_test_accuracy", "supermask_accuracy", "steps", "flips",
             "sign_changed_since_rewind", "sign_changed_since_rewind_pct", "wall_seconds")
_INT_COLUMNS = ("round", "early_stop_step", "steps", "flips", "sign_changed_since_rewind")


def _check_rows(rows, keys):
  """Raises ValueError unless `rows` are result rows, each with `keys`, no (mode, round) twice."""
  if not isinstance(rows, list):
    raise ValueError("expected a list of rows")
  seen = set()
  for row in rows:
    if not isinstance(row, dict) or any(k not in row for k in keys):
      raise ValueError(f"a row lacks some of {list(keys)}")
    mode, r = row["mode"], row["round"]
    if (mode not in reinit_lib.MODES or isinstance(r, bool) or not isinstance(r, int) or r < 0
        or (mode, r) in seen):
      raise ValueError(f"a row has mode={mode!r}, round={r!r} (or repeats one)")
    seen.add((mode, r))
  return rows


def load_results(path):
  """The result rows in results.json ([] when it does not exist).

  Raises:
    ValueError: the file is unreadable or not a list of result rows, naming it.
  """
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      return _check_rows(json.load(f), _ROW_KEYS)
  except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError included
    raise ValueError(f"{path} is not a readable results file ({type(e).__name__}: {e}).") from None


def _rows_from_csv(path):
  """results.csv's rows (every column but the per-layer dict), typed as in results.json."""
  with open(path, newline="") as f:
    raw = list(csv.DictReader(f))
  rows = []
  for line in raw:
    if None in line or any(v is None for v in line.values()):
      raise ValueError("a line has the wrong number of fields")
    row = {}
    for key, value in line.items():
      if key == "mode":
        row[key] = value
      elif value == "":
        row[key] = None
      else:
        row[key] = int(value) if key in _INT_COLUMNS else float(value)
    rows.append(row)
  return _check_rows(rows, [k for k in _ROW_KEYS if k != "remaining_pct_per_layer"])


def _csv_text(results):
  scalar_keys = sorted({k for r in results for k, v in r.items() if not isinstance(v, (dict, list))})
  out = io.StringIO(newline="")
  writer = csv.DictWriter(out, fieldnames=scalar_keys)
  writer.writeheader()
  for r in results:
    writer.writerow({k: r.get(k) for k in scalar_keys})
  return out.getvalue()


def _write_results(files, results):
  _write_json(files.results_json, results)

  def write(tmp):
    with open(tmp, "w", newline="") as f:
      f.write(_csv_text(results))
  _replace_atomically(files.results_csv, write)


def _save_snapshot(snap, path):
  snap.save(path)  # rewind.Snapshot.save writes atomically


def _load_snapshot(path, holds, remedy):
  try:
    return rewind_lib.Snapshot.load(path)
  except Exception as e:  # pylint: disable=broad-except  (zip, npy and OS errors alike)
    raise OutputDirError(f"{path} is unreadable ({type(e).__name__}: {e}). It holds {holds}; "
                         f"{remedy}") from None


def _json_value(value):
  """`value` as it reads back from JSON (tuples as lists, ...)."""
  return json.loads(json.dumps(value))


def _rewind_record(step):
  if isinstance(step, numbers.Integral):
    return int(step)
  count, unit = re.match(r"^\s*(\d+)\s*(it|ep)\s*$", step).groups()
  return int(count) if unit == "it" else f"{int(count)}ep"


def _mask_digest(masks):
  digest = hashlib.sha256()
  for m in masks:
    m = np.ascontiguousarray(m, np.float32)
    digest.update(repr(m.shape).encode())
    digest.update(m.tobytes())
  return "sha256:" + digest.hexdigest()


def _check_init_mask(init_mask):
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
  output_rate = config.prune_rate_output if config.prune_rate_output is not None else config.prune_rate
  init_mask = _check_init_mask(init_mask)
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
      _FORMAT_KEY: CONFIG_FORMAT,
      "config": {
          "rounds": config.rounds,
          "prune_rate": None if sparsities is not None else config.prune_rate,
          "prune_rate_output": (None if sparsities is not None or config.scope == "global"
                                else output_rate),
          "scope": config.scope,
          "criterion": _criterion_record(config.criterion),
          "rewind_step": _rewind_record(config.rewind_step),
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
  out = dict(record.get("config", {}))
  out["init_mask"] = record.get("init_mask")
  out.update({f"context.{k}": v for k, v in (record.get("context") or {}).items()})
  return out


def _show(value):
  return json.dumps(value, sort_keys=True) if isinstance(value, dict) else repr(value)


def _extends(old, new):
  """Whether list `new` is `old` with items appended."""
  return (isinstance(old, list) and isinstance(new, list) and len(new) > len(old)
          and new[:len(old)] == old)


def _differences(old_record, new_record):
  """(refused [(key, recorded, given)], extended [(key, recorded, given)])."""
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


def read_config(output_dir):
  """The record in `output_dir`/config.json (see `config_record`), or None
  when the directory holds none of this version's.

  Raises:
    OutputDirError: config.json is unreadable or from a newer version.
  """
  recorded, _ = _read_config_file(RunFiles(output_dir).config)
  return recorded


def _read_config_file(path):
  """(this version's record or None, the example binary's older flag record or None)."""
  if not os.path.exists(path):
    return None, None
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise OutputDirError(
        f"{path} is unreadable ({type(e).__name__}: {e}). It records the run's configuration, "
        "so the run cannot be checked or resumed safely: restore it, or delete it and rerun "
        "with the run's configuration (the directory is then adopted if its artifacts agree), "
        "or choose another output_dir.") from None
  if isinstance(data, dict) and _FORMAT_KEY in data:
    if data[_FORMAT_KEY] != CONFIG_FORMAT or not isinstance(data.get("config"), dict):
      raise OutputDirError(f"{path} is a lottery configuration of format "
                           f"{data[_FORMAT_KEY]!r} (this version reads {CONFIG_FORMAT}), or is "
                           "damaged; use the version that wrote it, or another output_dir.")
    return data, None
  if isinstance(data, dict) and "reinit" in data:  # examples/lottery_ticket.py's flags, before
    return None, data
  raise OutputDirError(f"{path} is not a lottery run's configuration; this directory holds "
                       "something else. Choose another output_dir.")


def _inspect(output_dir):
  """(recorded record, legacy flag record, artifact names) of `output_dir`, or
  an OutputDirError for a file, a user's directory or an unreadable config.json."""
  if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
    raise OutputDirError(f"output_dir={output_dir!r} is a file, not a directory; a lottery run "
                         "writes a directory of round artifacts. Choose another output_dir.")
  if not os.path.isdir(output_dir):
    try:
      owned_dir.check_target(output_dir, "lottery", overwrite=False)  # a writable ancestor
    except ValueError as e:
      raise OutputDirError(str(e)) from None
    return None, None, []
  names = sorted(os.listdir(output_dir))
  marker = owned_dir.read_marker(output_dir) or {}
  if marker.get("written_by") == "keras_signflip" and marker.get("kind") != "lottery":
    raise OutputDirError(f"{output_dir} holds a keras_signflip {marker.get('kind')}, not a "
                         "lottery run. Choose another output_dir.")
  recorded, legacy = _read_config_file(RunFiles(output_dir).config)
  artifacts = [n for n in names if _ARTIFACT.match(n)]
  others = [n for n in names if n != owned_dir.MARKER]
  if (others and recorded is None and legacy is None and not artifacts
      and not owned_dir.is_owned(output_dir, "lottery")):
    raise OutputDirError(
        f"{output_dir} is a non-empty directory that holds no lottery run (it has "
        f"{', '.join(others[:3])}{', ...' if len(others) > 3 else ''}; no config.json or round "
        "artifacts); a lottery run never writes into a user's directory. Choose a new or empty "
        "output_dir.")
  return recorded, legacy, artifacts


def check_output_dir(config, output_dir, init_mask=None, context=None):
  """Raises OutputDirError unless `output_dir` can take a run of `config`:
  new or empty, or a lottery run with the same configuration (or one this
  config extends; see the module docstring). Writes nothing.

  Returns:
    (recorded record or None, legacy flag record or None, artifact names,
    this run's record, extended [(key, recorded, given)]).
  """
  if not isinstance(config, LotteryConfig):
    raise ValueError("Received an invalid value for `config`, expected a "
                     f"lottery.LotteryConfig. Received: config={config!r}")
  if not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
    raise ValueError("Received an invalid value for `output_dir`, expected a directory path. "
                     f"Received: output_dir={output_dir!r}")
  output_dir = os.fspath(output_dir)
  record = config_record(config, init_mask, context)
  recorded, legacy, artifacts = _inspect(output_dir)
  extended = []
  if recorded is not None:
    refused, extended = _differences(recorded, record)
    if refused:
      listed = "; ".join(f"{k}: recorded {_show(a)}, given {_show(b)}" for k, a, b in refused)
      raise OutputDirError(
          f"{output_dir} holds a lottery run with another configuration ({listed}). Give the "
          "recorded values to resume it, or choose another output_dir for this configuration "
          "(a run can be extended: more rounds, round_sparsities that keep the recorded ones "
          "as their prefix, control modes appended).")
  return recorded, legacy, artifacts, record, extended


class _Evaluator(Callback):
  """Validation loss and test accuracy every `every` steps; tracks the minimum."""

  def __init__(self, val, test, every):
    super().__init__()
    self.val, self.test, self.every = val, test, every
    self.best = None  # (val_loss, step, test_accuracy)

  def _evaluate(self):
    model = families.synced(self.model)
    val_loss = model.evaluate(self.val, verbose=0)[0]
    test_acc = model.evaluate(self.test, verbose=0)[1]
    if self.best is None or val_loss < self.best[0]:
      self.best = (float(val_loss), self._step, float(test_acc))

  def on_train_begin(self, logs=None):
    self._step = int(families.synced(self.model).optimizer.iterations.numpy())

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1  # counted here: on JAX, reading the model syncs its state
    if self._step % self.every == 0:
      self._evaluate()


def _set_masks(model, masks):
  for s, m in zip(families.of(model).flip_states(model), masks):
    s.mask.assign(m.astype(np.float32))
    s.flips.assign(np.zeros(tuple(s.flips.shape), np.int32))
    if getattr(s, "flips_at_update", None) is not None:  # RecentFlips' window restarts too
      s.flips_at_update.assign(np.zeros(tuple(s.flips.shape), np.int32))


def _sign_changes(model, rewind_snapshot):
  """(surviving prunable weights whose sign differs from the rewind point's, survivors):
  sign(w) * sign(w_rewind) < 0, so a weight at exactly 0 has not changed sign."""
  family = families.of(model)
  position = {id(v): i for i, v in enumerate(rewind_lib.variables(model))}
  changed = kept = 0
  for s in family.flip_states(model):
    alive = family.to_numpy(s.mask) > 0
    w = family.to_numpy(s.weight).astype(np.float32)
    w0 = np.asarray(rewind_snapshot.values[position[id(s.weight)]], np.float32)
    changed += int(((np.sign(w) * np.sign(w0) < 0) & alive).sum())
    kept += int(alive.sum())
  return changed, kept


def _next_masks(model, config, round_index):
  family = families.of(model)
  states = family.flip_states(model)
  criterion = criteria_lib.get(config.criterion)
  sizes = [int(np.prod(s.weight.shape)) for s in states]
  kept = kept_counts(sizes, config, round_index)
  if config.scope == "global":
    masks, _ = family.compute_masks(states, None, criterion, kept=kept[0])
  else:
    masks = [family.compute_masks([s], None, criterion, kept=k)[0][0]
             for s, k in zip(states, kept)]
  return [family.to_numpy(m).astype(np.float32) for m in masks]


def _steps_per_epoch(data):
  """Batches per epoch of a tf.data.Dataset or a sized (Py)Dataset, else None."""
  if hasattr(data, "cardinality"):
    count = int(data.cardinality())
    return count if count > 0 else None
  try:
    return len(data) or None
  except TypeError:
    return None


def _skip_batches(data, count, keras):
  """`data` without its first `count` batches: tf.data's `skip`, else a view of a
  `keras.utils.Sequence` / `PyDataset` that starts at batch `count`."""
  if hasattr(data, "skip"):
    return data.skip(count)

  class Rest(keras.utils.Sequence):

    def __len__(self):
      return len(data) - count

    def __getitem__(self, index):
      return data[index + count]

  return Rest()


def _state_snapshot(model):
  """Every variable of the model, pruning state included (`RunFiles.state`)."""
  model = families.synced(model)
  family = families.of(model)
  return rewind_lib.Snapshot([families.weight_name(v) for v in model.weights],
                             [family.to_numpy(v) for v in model.weights], 0)


def _restore_state(model, snap):
  """Puts a `_state_snapshot` back (shapes checked when it was loaded)."""
  model = families.synced(model)
  for v, value in zip(model.weights, snap.values):
    v.assign(value)


def _check_fits(snap, model, path, remedy):
  """OutputDirError unless the rewind-style snapshot at `path` fits `model`."""
  current = rewind_lib.variables(model)
  if [tuple(v.shape) for v in current] != [np.shape(a) for a in snap.values]:
    raise OutputDirError(f"{path} does not fit this model ({len(snap.values)} variables, the "
                         f"model has {len(current)}, or other shapes): it was saved from "
                         f"another model. {remedy}")
  return snap


def _read_results(files):
  """(rows, None), or (None, rows of results.csv) when results.json is
  unreadable and results.csv can rebuild it."""
  try:
    return load_results(files.results_json), None
  except ValueError as e:
    json_error = e
  try:
    return None, _rows_from_csv(files.results_csv)
  except (OSError, ValueError, KeyError) as e:
    raise OutputDirError(
        f"{json_error} It holds the result rows, and results.csv cannot rebuild it "
        f"({type(e).__name__}: {e}); delete results.json and results.csv and rerun: every "
        "round is recomputed from the saved artifacts (retrained, seeded as before).") from None


def _adoption_problems(files, config, legacy, rows, sizes, masks0, load_round_masks):
  """Where an earlier version's artifacts (no config.json) disagree with `config`."""
  problems = []
  plan = {(config.modes[0], 0)} | {(m, r) for m in config.modes for r in range(1, config.rounds + 1)}
  total = sum(sizes)

  def remaining_pct(r):
    if r == 0:
      return float(100.0 * sum(m.sum() for m in masks0) / total)
    return 100.0 * sum(kept_counts(sizes, config, r)) / total

  for row in rows:
    mode, r = row["mode"], row["round"]
    if (mode, r) not in plan:
      problems.append(f"results row ({mode}, round {r}) is not a round of rounds="
                      f"{config.rounds}, modes={list(config.modes)}")
    elif not math.isclose(row["weights_remaining_pct"], remaining_pct(r), rel_tol=1e-6):
      problems.append(f"round {r} ({mode}) kept {row['weights_remaining_pct']:.4f}% of the "
                      f"weights; this configuration keeps {remaining_pct(r):.4f}%")
  for r in range(config.rounds + 1):
    if not os.path.exists(files.masks(r)):
      continue
    masks = load_round_masks(r)
    if r == 0:
      if any(not np.array_equal(a, b) for a, b in zip(masks, masks0)):
        problems.append("masks_0.npz differs from the starting mask given (init_mask, or ones)")
      continue
    kept = [int(m.sum()) for m in masks]
    want = kept_counts(sizes, config, r)
    if (sum(kept) != want[0]) if config.scope == "global" else (kept != want):
      problems.append(f"masks_{r}.npz keeps {kept} weights; this configuration keeps {want}")
  if legacy:
    given = {"scope": config.scope, "epochs": config.epochs, "seed": config.seed,
             "criterion": criteria_lib.get(config.criterion).name}
    if config.round_sparsities is None:
      given["prune_rate"] = config.prune_rate
    for key, value in given.items():
      if key in legacy and legacy[key] != value:
        problems.append(f"config.json (the example binary's flags) has {key}={legacy[key]!r}, "
                        f"given {value!r}")
    reinit = legacy.get("reinit")
    if isinstance(reinit, list) and list(config.modes[:len(reinit)]) != reinit:
      problems.append(f"config.json has reinit={reinit!r}, given modes={list(config.modes)!r}")
    step = str(legacy.get("rewind_step", ""))
    try:
      recorded_step = _rewind_record(int(step) if step.isdigit() else step)
    except AttributeError:
      recorded_step = step
    if "rewind_step" in legacy and recorded_step != _rewind_record(config.rewind_step):
      problems.append(f"config.json has rewind_step={legacy['rewind_step']!r}, given "
                      f"{config.rewind_step!r}")
    if legacy.get("early_bird"):
      problems.append("config.json records an early-bird run, whose ticket this loop cannot check")
  return problems


def run(make_model: Callable[[], object], compile_model: Callable[[object], None],
        train_data: Callable[[int, int], object], val_data, test_data,
        config: LotteryConfig, output_dir: str, init_mask=None, log=print,
        extra_callbacks: Callable[[int], list] = lambda r: [], context: Optional[dict] = None):
  """Runs, resumes or extends iterative pruning; returns the list of result rows.

  The directory's config.json must agree with `config`, `init_mask` and
  `context` (more rounds and appended control modes extend the run); see the
  module docstring for what is refused, adopted and recovered.

  Args:
    make_model: builds the unwrapped model (tf_keras or Keras 3, any
      backend), identically each call.
    compile_model: compiles a model with a fresh optimizer (and metrics
      loss + accuracy).
    train_data: (round, epoch) -> batched training dataset.
    val_data, test_data: batched datasets.
    config: a `LotteryConfig`.
    output_dir: run directory: new, empty, or this run's (its artifacts are
      reused).
    init_mask: None, or a list of arrays (masks_r.npz of another run) for
      round 0: ticket transfer (Morcos et al. 2019).
    extra_callbacks: round -> callbacks added to that round's `fit`.
    context: None, or a JSON-serialisable dict of settings outside `config`
      that change the results (model, data, optimizer, ...): recorded in
      config.json and compared like the config's fields.

  Raises:
    ValueError: a bad argument. `OutputDirError` (a ValueError): the
      directory cannot take this run (another configuration, a user's
      directory, a file, an unreadable artifact) -- raised before anything
      is written.
  """
  recorded, legacy, artifacts, record, extended = check_output_dir(
      config, output_dir, init_mask, context)
  output_dir = os.fspath(output_dir)
  files = RunFiles(output_dir)
  init_mask = _check_init_mask(init_mask)
  primary = config.modes[0]
  results, csv_rows = _read_results(files)

  base = make_model()
  family = families.of(base)
  family.keras.utils.set_random_seed(config.seed)
  base = make_model()  # built after seeding, as every round's model is
  model = family.prune_sign_flip(base, pruning_schedule=family.never(), criterion=config.criterion)
  states = family.flip_states(model)
  names = [families.weight_name(s.weight) for s in states]
  shapes = [tuple(s.mask.shape) for s in states]
  sizes = [int(np.prod(shape)) for shape in shapes]
  if init_mask is not None and [m.shape for m in init_mask] != shapes:
    raise ValueError("The starting mask does not fit this model: shapes "
                     f"{[m.shape for m in init_mask]} vs {shapes}.")
  masks0 = init_mask if init_mask is not None else [np.ones(shape, np.float32) for shape in shapes]

  def holds(r):
    if r == 0:
      return "round 0's mask (init_mask, or ones)"
    return f"round {r}'s masks, drawn from round {r - 1}'s trained {primary} model"

  def remedy(r):
    if r == 0:
      return "delete it and rerun: it is rewritten from init_mask, or ones."
    if os.path.exists(files.state(r - 1)):
      return f"delete it and rerun: it is drawn again from {files.state(r - 1)}."
    return f"delete it and rerun: round {r - 1} ({primary}) is retrained to draw it again."

  def load_round_masks(r):
    path = files.masks(r)
    try:
      masks = load_masks(path)
    except ValueError as e:
      raise OutputDirError(f"{e} It holds {holds(r)}; {remedy(r)}") from None
    if [m.shape for m in masks] != shapes:
      raise OutputDirError(f"{path} does not fit this model (shapes {[m.shape for m in masks]}, "
                           f"the model's {shapes}). It holds {holds(r)}; {remedy(r)}")
    return masks

  if recorded is None and (legacy is not None or artifacts):
    problems = _adoption_problems(files, config, legacy, results if csv_rows is None else csv_rows,
                                  sizes, masks0, load_round_masks)
    if problems:
      raise OutputDirError(
          f"{output_dir} holds a lottery run without this version's config.json, and it "
          f"disagrees with the given configuration: {'; '.join(problems)}. Give the "
          "configuration it was run with, or choose another output_dir.")
  if csv_rows is not None:  # results.json is unreadable: rebuilt from results.csv (below)
    results = []
    for row in csv_rows:
      if not os.path.exists(files.masks(row["round"])):
        continue  # its round is recomputed below
      remaining = [float(m.mean()) for m in load_round_masks(row["round"])]
      row["remaining_pct_per_layer"] = {n: 100 * x for n, x in zip(names, remaining)}
      results.append(row)
  done = {(r["mode"], r["round"]) for r in results}

  # What to run: every round without a row, and the rounds whose artifacts a
  # later one needs but which are missing (deleted, or never kept by an older
  # version): those are retrained, seeded as before.
  plan = [(primary, r) for r in range(config.rounds + 1)]
  plan += [(mode, r) for mode in config.modes[1:] for r in range(1, config.rounds + 1)]
  todo = {item for item in plan if item not in done}
  while True:
    needs = set()
    for mode, r in todo:
      if r > 0 and not os.path.exists(files.masks(r)) and not os.path.exists(files.state(r - 1)):
        needs.add((primary, r - 1))
      if r > 0 and not os.path.exists(files.rewind):
        needs.add((primary, 0))
      if mode == "lr_rewind" and r > 0:
        source = (mode if r > 1 else primary, r - 1)
        if not os.path.exists(files.trained(*source)):
          needs.add(source)
    if needs <= todo:
      break
    todo |= needs
  todo = sorted(todo, key=plan.index)

  # Every stored artifact the plan reads, checked before anything is written.
  init_snap = rewind_snap = masks0_error = None
  stored_states = {}

  def trained_source(mode, r):  # lr_rewind: the previous round of this mode (round 0: the dense one)
    return mode if r > 1 else primary

  def load_trained(mode, r):
    source = trained_source(mode, r)
    path = files.trained(source, r - 1)
    return _check_fits(_load_snapshot(
        path, f"round {r - 1}'s trained {source} model (lr_rewind starts round {r} from it)",
        f"delete it and rerun: round {r - 1} ({source}) is retrained to rebuild it."),
        model, path, f"Delete it and rerun: round {r - 1} ({source}) is retrained.")

  def state_remedy(r):
    return f"delete it and rerun: round {r} ({primary}) is retrained to draw round {r + 1}'s masks."

  def load_state(r):
    snap = _load_snapshot(files.state(r), f"round {r}'s final {primary} model state (round "
                          f"{r + 1}'s masks are drawn from it)", state_remedy(r))
    if [tuple(v.shape) for v in model.weights] != [np.shape(a) for a in snap.values]:
      raise OutputDirError(f"{files.state(r)} does not fit this model ({len(snap.values)} "
                           f"variables, the model has {len(model.weights)}, or other shapes); "
                           f"{state_remedy(r)}")
    return snap
  rewind_remedy = "delete it and rerun: round 0 is retrained to take it again."
  rewind_holds = f"the rewind point (rewind_step={config.rewind_step!r} of round 0)"
  if todo:
    if os.path.exists(files.init):
      init_remedy = "delete it and rerun: it is rebuilt from make_model under the same seed."
      init_snap = _check_fits(_load_snapshot(
          files.init, f"the initial weights (seed {config.seed})", init_remedy),
          model, files.init, init_remedy.capitalize())
    if os.path.exists(files.masks(0)):
      try:
        load_round_masks(0)
      except OutputDirError as e:
        masks0_error = e
    if any(r > 0 for _, r in todo) and os.path.exists(files.rewind):
      rewind_snap = _check_fits(_load_snapshot(files.rewind, rewind_holds, rewind_remedy),
                                model, files.rewind, rewind_remedy.capitalize())
    for mode, r in todo:
      if r > 0 and os.path.exists(files.masks(r)):
        load_round_masks(r)
      elif r > 0 and (primary, r - 1) not in todo and r not in stored_states:  # from the state
        stored_states[r] = load_state(r - 1)
      if mode == "lr_rewind" and r > 0 and (trained_source(mode, r), r - 1) not in todo:
        load_trained(mode, r)

  # Checked: from here on the directory is written.
  os.makedirs(output_dir, exist_ok=True)
  if not owned_dir.is_owned(output_dir, "lottery"):
    owned_dir.write_marker(output_dir, "lottery")
  if recorded is None:
    if legacy is not None or artifacts:
      record["adopted"] = {"legacy_flags": legacy}
      log(f"Adopted {output_dir}: it had no config.json of this version and its artifacts "
          "agree with the given configuration (criterion settings, eval_every and seed are "
          "taken on trust).")
    _write_json(files.config, record)
  elif extended:
    log(f"Extending {output_dir}: " + "; ".join(f"{k} {_show(a)} -> {_show(b)}"
                                                for k, a, b in extended))
    _write_json(files.config, {**recorded, **record})
  if csv_rows is not None:
    log(f"Rebuilt {files.results_json} from {files.results_csv}.")
    _write_results(files, results)
  elif results:
    try:
      with open(files.results_csv, newline="") as f:
        csv_ok = f.read() == _csv_text(results)
    except (OSError, ValueError):
      csv_ok = False
    if not csv_ok:
      _write_results(files, results)
  if not todo:
    return results
  if init_snap is None:
    _save_snapshot(rewind_lib.snapshot(model, 0), files.init)
    init_snap = rewind_lib.Snapshot.load(files.init)
  if masks0_error is not None:
    log(f"Rewriting {files.masks(0)} from the starting mask: {masks0_error}")
  if masks0_error is not None or not os.path.exists(files.masks(0)):
    save_masks(files.masks(0), masks0)
  again = [item for item in todo if item in done]
  if again:
    log("Recomputing " + ", ".join(f"{m} round {r}" for m, r in again) + ": artifacts that "
        "later rounds need are missing.")

  for mode, r in todo:
    if r > 0 and not os.path.exists(files.masks(r)):  # an extended run: from the stored state
      snap = stored_states.pop(r, None) or load_state(r - 1)
      _restore_state(model, snap)
      save_masks(files.masks(r), _next_masks(model, config, r))
      log(f"[{primary} round {r}] masks drawn from {files.state(r - 1)}")
    masks = load_round_masks(r)
    family.keras.utils.set_random_seed(config.seed + r)
    _set_masks(model, masks)
    if r == 0:
      rewind_lib.restore(model, init_snap)
    else:
      trained = load_trained(mode, r) if mode == "lr_rewind" else None
      reinit_lib.reinitialize(model, mode, rewind_snap, init_snap, seed=config.seed + r,
                              trained_snapshot=trained)
    family.set_reference(model)  # reference criteria compare with the round's start
    compile_model(model)
    # Late rewinding: the optimizer (step, slots) goes back to step k too, so
    # the round trains steps k..T on the learning-rate schedule's steps k..T.
    resume_at = rewind_snap.step if r > 0 else 0
    if resume_at:
      rewind_lib.restore_optimizer(model, rewind_snap)
    supermask_accuracy = float(model.evaluate(test_data, verbose=0)[1])
    start = time.time()
    first = train_data(r, 0)
    steps_per_epoch = _steps_per_epoch(first)
    if resume_at and not steps_per_epoch:
      raise ValueError(f"Late rewinding (rewind_step={config.rewind_step!r}) needs the epoch "
                       "length: train_data must return a dataset of known length.")
    first_epoch, skip = divmod(resume_at, steps_per_epoch) if resume_at else (0, 0)
    evaluator = _Evaluator(val_data, test_data, config.eval_every or steps_per_epoch or 100)
    rewinder = rewind_lib.RewindPoint(config.rewind_step)
    callbacks = [family.update_pruning_step(), evaluator] + ([rewinder] if r == 0 else []) + extra_callbacks(r)
    for epoch in range(first_epoch, config.epochs):
      data = first if epoch == 0 else train_data(r, epoch)
      if epoch == first_epoch and skip:
        data = _skip_batches(data, skip, family.keras)  # what round 0 saw before step k
      model.fit(data, epochs=epoch + 1, initial_epoch=epoch, verbose=0, callbacks=callbacks)
      if model.stop_training:
        break
    loss, accuracy = model.evaluate(test_data, verbose=0)
    if r == 0 and not os.path.exists(files.rewind):
      if rewinder.snapshot is None:
        raise ValueError(f"rewind_step={config.rewind_step!r} lies beyond round 0's "
                         f"{int(model.optimizer.iterations.numpy())} steps.")
      _save_snapshot(rewinder.snapshot, files.rewind)
    if rewind_snap is None:
      rewind_snap = _check_fits(_load_snapshot(files.rewind, rewind_holds, rewind_remedy),
                                model, files.rewind, rewind_remedy.capitalize())
    if "lr_rewind" in config.modes and (mode == "lr_rewind" or (mode == primary and r == 0)):
      _save_snapshot(rewind_lib.snapshot(model), files.trained(mode, r))
    if mode == primary and r < config.rounds and not os.path.exists(files.masks(r + 1)):
      save_masks(files.masks(r + 1), _next_masks(model, config, r + 1))
    if mode == primary and r == config.rounds:  # what an extension draws round r + 1 from
      _save_snapshot(_state_snapshot(model), files.state(r))
    changed, kept = _sign_changes(model, rewind_snap)
    remaining = [float(m.mean()) for m in masks]
    row = {
        "mode": mode, "round": r,
        "weights_remaining_pct": float(100.0 * sum(m.sum() for m in masks) / sum(m.size for m in masks)),
        "remaining_pct_per_layer": {n: 100 * x for n, x in zip(names, remaining)},
        "test_accuracy": float(accuracy), "test_loss": float(loss),
        "early_stop_step": evaluator.best[1] if evaluator.best else None,
        "early_stop_val_loss": evaluator.best[0] if evaluator.best else None,
        "early_stop_test_accuracy": evaluator.best[2] if evaluator.best else None,
        "supermask_accuracy": supermask_accuracy,
        "steps": int(model.optimizer.iterations.numpy()),
        "flips": int(sum(int(f.sum()) for f in family.flip_counts(model).values())),
        "sign_changed_since_rewind": changed,
        "sign_changed_since_rewind_pct": 100.0 * changed / max(kept, 1),
        "wall_seconds": time.time() - start,
    }
    results = [x for x in results if (x["mode"], x["round"]) != (mode, r)] + [row]
    results.sort(key=lambda x: (config.modes.index(x["mode"]) if x["mode"] in config.modes else 99,
                                x["round"]))
    _write_results(files, results)
    log(f"[{mode} round {r}] {row['weights_remaining_pct']:6.2f}% remaining  "
        f"test acc {accuracy:.4f}  early-stop step {row['early_stop_step']} "
        f"(acc {row['early_stop_test_accuracy']})  supermask {supermask_accuracy:.4f}  "
        f"{row['wall_seconds']:.1f}s")
  return results


def plot(results, files, title=""):
  """PNG plots: test accuracy and early-stop step vs % weights remaining (log)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  modes = sorted({r["mode"] for r in results}, key=lambda m: reinit_lib.MODES.index(m))
  dense = [r for r in results if r["round"] == 0]
  for key, filename, label in (("test_accuracy", files.plot_accuracy, "test accuracy"),
                           ("early_stop_step", files.plot_early_stop, "early-stopping step")):
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in modes:
      rows = sorted(dense + [r for r in results if r["mode"] == mode and r["round"] > 0],
                    key=lambda r: -r["weights_remaining_pct"])
      ax.plot([r["weights_remaining_pct"] for r in rows], [r[key] for r in rows],
              marker="o", label=mode)
    ax.set_xscale("log")
    ticks = sorted({round(r["weights_remaining_pct"], 1) for r in results}, reverse=True)
    ax.set_xticks(ticks[::max(len(ticks) // 8, 1)])
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.invert_xaxis()
    ax.set_xlabel("% of weights remaining")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _replace_atomically(filename, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
