"""Whether a directory can take a lottery run, checked before anything is written.

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

Imports no framework.
"""
import json
import math
import os

import numpy as np

from keras_signflip import criteria as criteria_lib
from keras_signflip import owned_dir
from keras_signflip.lottery import rewind as rewind_lib
from keras_signflip.lottery.config import (CONFIG_FORMAT, FORMAT_KEY, LotteryConfig,
                                           compare_records, config_record, kept_counts,
                                           rewind_record, show_value)
from keras_signflip.lottery.files import (RunFiles, is_artifact, load_masks, load_results,
                                          lr_rewind_source, remaining_pct_per_layer,
                                          rows_from_csv, write_json)

__all__ = ["OutputDirError", "check_output_dir", "read_config", "claim_output_dir",
           "check_adoption", "read_results", "rebuild_results", "StoredArtifacts"]


class OutputDirError(ValueError):
  """`output_dir` cannot take this run: another configuration, a user's
  directory, a file, or an unreadable artifact (the message names it and the
  way out). Raised before anything is written."""


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
  if isinstance(data, dict) and FORMAT_KEY in data:
    if data[FORMAT_KEY] != CONFIG_FORMAT or not isinstance(data.get("config"), dict):
      raise OutputDirError(f"{path} is a lottery configuration of format "
                           f"{data[FORMAT_KEY]!r} (this version reads {CONFIG_FORMAT}), or is "
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
  artifacts = [n for n in names if is_artifact(n)]
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
  config extends; see `keras_signflip.lottery.config`). Writes nothing.

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
    refused, extended = compare_records(recorded, record)
    if refused:
      listed = "; ".join(f"{k}: recorded {show_value(a)}, given {show_value(b)}"
                         for k, a, b in refused)
      raise OutputDirError(
          f"{output_dir} holds a lottery run with another configuration ({listed}). Give the "
          "recorded values to resume it, or choose another output_dir for this configuration "
          "(a run can be extended: more rounds, round_sparsities that keep the recorded ones "
          "as their prefix, control modes appended).")
  return recorded, legacy, artifacts, record, extended


def claim_output_dir(files, recorded, legacy, artifacts, record, extended, log=print):
  """Makes the checked directory this run's (the results of `check_output_dir`
  given back): its owner marker, and config.json when it is new, adopted or
  extended. From here on the directory is written."""
  output_dir = files.root
  os.makedirs(output_dir, exist_ok=True)
  if not owned_dir.is_owned(output_dir, "lottery"):
    owned_dir.write_marker(output_dir, "lottery")
  if recorded is None:
    if legacy is not None or artifacts:
      record["adopted"] = {"legacy_flags": legacy}
      log(f"Adopted {output_dir}: it had no config.json of this version and its artifacts "
          "agree with the given configuration (criterion settings, eval_every and seed are "
          "taken on trust).")
    write_json(files.config, record)
  elif extended:
    log(f"Extending {output_dir}: " + "; ".join(f"{k} {show_value(a)} -> {show_value(b)}"
                                                for k, a, b in extended))
    write_json(files.config, {**recorded, **record})


def check_adoption(files, config, legacy, rows, sizes, masks0, load_round_masks):
  """Raises OutputDirError unless an earlier version's artifacts (no
  config.json) agree with `config`, naming every disagreement."""
  problems = _adoption_problems(files, config, legacy, rows, sizes, masks0, load_round_masks)
  if problems:
    raise OutputDirError(
        f"{files.root} holds a lottery run without this version's config.json, and it "
        f"disagrees with the given configuration: {'; '.join(problems)}. Give the "
        "configuration it was run with, or choose another output_dir.")


def _adoption_problems(files, config, legacy, rows, sizes, masks0, load_round_masks):
  """Where an earlier version's artifacts (no config.json) disagree with `config`."""
  problems = []
  plan = {(config.modes[0], 0)} | {(m, r) for m in config.modes
                                   for r in range(1, config.rounds + 1)}
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
      recorded_step = rewind_record(int(step) if step.isdigit() else step)
    except AttributeError:
      recorded_step = step
    if "rewind_step" in legacy and recorded_step != rewind_record(config.rewind_step):
      problems.append(f"config.json has rewind_step={legacy['rewind_step']!r}, given "
                      f"{config.rewind_step!r}")
    if legacy.get("early_bird"):
      problems.append("config.json records an early-bird run, whose ticket this loop cannot check")
  return problems


def read_results(files):
  """(rows, None), or (None, rows of results.csv) when results.json is
  unreadable and results.csv can rebuild it."""
  try:
    return load_results(files.results_json), None
  except ValueError as e:
    json_error = e
  try:
    return None, rows_from_csv(files.results_csv)
  except (OSError, ValueError, KeyError) as e:
    raise OutputDirError(
        f"{json_error} It holds the result rows, and results.csv cannot rebuild it "
        f"({type(e).__name__}: {e}); delete results.json and results.csv and rerun: every "
        "round is recomputed from the saved artifacts (retrained, seeded as before).") from None


def rebuild_results(csv_rows, files, load_round_masks, names):
  """results.json's rows from results.csv's (`read_results`) and the masks: each
  row gains its per-layer column; a row whose masks are gone is left out (its
  round is recomputed)."""
  results = []
  for row in csv_rows:
    if not os.path.exists(files.masks(row["round"])):
      continue
    row["remaining_pct_per_layer"] = remaining_pct_per_layer(names, load_round_masks(row["round"]))
    results.append(row)
  return results


class StoredArtifacts:
  """A run directory's artifacts, loaded and checked against the model: an
  unreadable or misfitting one raises OutputDirError naming the file, what it
  holds and the way out (see the module docstring)."""

  def __init__(self, files, config, model, mask_shapes):
    self.files, self.config, self.model, self.mask_shapes = files, config, model, mask_shapes
    self.primary = config.modes[0]

  def _masks_note(self, r):
    """What masks_<r>.npz holds, and the way out."""
    if r == 0:
      holds = "round 0's mask (init_mask, or ones)"
      remedy = "delete it and rerun: it is rewritten from init_mask, or ones."
    else:
      holds = f"round {r}'s masks, drawn from round {r - 1}'s trained {self.primary} model"
      if os.path.exists(self.files.state(r - 1)):
        remedy = f"delete it and rerun: it is drawn again from {self.files.state(r - 1)}."
      else:
        remedy = (f"delete it and rerun: round {r - 1} ({self.primary}) is retrained to draw "
                  "it again.")
    return f"It holds {holds}; {remedy}"

  def masks(self, r):
    """masks_<r>.npz."""
    path, shapes = self.files.masks(r), self.mask_shapes
    try:
      masks = load_masks(path)
    except ValueError as e:
      raise OutputDirError(f"{e} {self._masks_note(r)}") from None
    if [m.shape for m in masks] != shapes:
      raise OutputDirError(f"{path} does not fit this model (shapes {[m.shape for m in masks]}, "
                           f"the model's {shapes}). {self._masks_note(r)}")
    return masks

  def init(self):
    """init.npz: the initial weights."""
    remedy = "delete it and rerun: it is rebuilt from make_model under the same seed."
    return _check_fits(_load_snapshot(
        self.files.init, f"the initial weights (seed {self.config.seed})", remedy),
        self.model, self.files.init, remedy.capitalize())

  def rewind(self):
    """rewind.npz: the rewind point, taken in round 0."""
    remedy = "delete it and rerun: round 0 is retrained to take it again."
    holds = f"the rewind point (rewind_step={self.config.rewind_step!r} of round 0)"
    return _check_fits(_load_snapshot(self.files.rewind, holds, remedy),
                       self.model, self.files.rewind, remedy.capitalize())

  def trained(self, mode, r):
    """The trained model `lr_rewind`'s round r starts from."""
    source, source_round = lr_rewind_source(self.primary, mode, r)
    path = self.files.trained(source, source_round)
    return _check_fits(_load_snapshot(
        path, f"round {r - 1}'s trained {source} model (lr_rewind starts round {r} from it)",
        f"delete it and rerun: round {r - 1} ({source}) is retrained to rebuild it."),
        self.model, path, f"Delete it and rerun: round {r - 1} ({source}) is retrained.")

  def state(self, r):
    """state_<r>.npz: the primary's whole model state at the end of round r."""
    model, path = self.model, self.files.state(r)
    remedy = (f"delete it and rerun: round {r} ({self.primary}) is retrained to draw round "
              f"{r + 1}'s masks.")
    snap = _load_snapshot(path, f"round {r}'s final {self.primary} model state (round "
                          f"{r + 1}'s masks are drawn from it)", remedy)
    if [tuple(v.shape) for v in model.weights] != [np.shape(a) for a in snap.values]:
      raise OutputDirError(f"{path} does not fit this model ({len(snap.values)} "
                           f"variables, the model has {len(model.weights)}, or other shapes); "
                           f"{remedy}")
    return snap


def _load_snapshot(path, holds, remedy):
  """The `rewind.Snapshot` at `path`, or OutputDirError naming what it holds and `remedy`."""
  try:
    return rewind_lib.Snapshot.load(path)
  except Exception as e:  # pylint: disable=broad-except  (zip, npy and OS errors alike)
    raise OutputDirError(f"{path} is unreadable ({type(e).__name__}: {e}). It holds {holds}; "
                         f"{remedy}") from None


def _check_fits(snap, model, path, remedy):
  """OutputDirError unless the rewind-style snapshot at `path` fits `model`."""
  current = rewind_lib.variables(model)
  if [tuple(v.shape) for v in current] != [np.shape(a) for a in snap.values]:
    raise OutputDirError(f"{path} does not fit this model ({len(snap.values)} variables, the "
                         f"model has {len(current)}, or other shapes): it was saved from "
                         f"another model. {remedy}")
  return snap
