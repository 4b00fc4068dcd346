"""The files of a lottery run directory: their names (`RunFiles`) and formats.

masks_<r>.npz (one 0/1 array per prunable tensor), results.json and
results.csv (one row per (mode, round)), and the snapshots (`rewind.Snapshot`).
Every write is atomic (a temporary sibling, then a rename), so a killed run
leaves each file whole or absent and resumes from what is there. Reading
raises ValueError naming the file; `run_dir` turns that into the way out.
Imports no framework.
"""
import csv
import io
import json
import os
import re

import numpy as np

from keras_signflip import owned_dir
from keras_signflip.lottery import reinit as reinit_lib

__all__ = ["RunFiles", "is_artifact", "lr_rewind_source", "replace_atomically", "write_json",
           "save_masks", "load_masks", "save_snapshot", "load_results", "rows_from_csv",
           "csv_text", "write_results", "rewrite_results_if_stale", "remaining_pct_per_layer"]


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


def is_artifact(name):
  """Whether a file name is one a lottery run writes (any version): such files
  make a directory a lottery run's, not a user's."""
  return bool(_ARTIFACT.match(name))


def lr_rewind_source(primary, mode, r):
  """(mode, round) of the trained model `lr_rewind`'s round r starts from: the
  previous round of this mode (round 0: the primary's dense one)."""
  return (mode if r > 1 else primary, r - 1)


replace_atomically = owned_dir.write_file  # write(tmp) beside the path, then a rename
write_json = owned_dir.write_json


def save_masks(path, masks):
  """Writes a list of masks as .npz, atomically."""
  def write(tmp):
    with open(tmp, "wb") as f:
      np.savez(f, *masks)
  replace_atomically(path, write)


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


def remaining_pct_per_layer(names, masks):
  """A row's per-layer column: {weight name: % of its weights kept}."""
  return {n: 100 * float(m.mean()) for n, m in zip(names, masks)}


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


def rows_from_csv(path):
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


def csv_text(results):
  """results.csv's text: one line per row, every column but the per-layer dict."""
  scalar_keys = sorted({k for r in results for k, v in r.items()
                       if not isinstance(v, (dict, list))})
  out = io.StringIO(newline="")
  writer = csv.DictWriter(out, fieldnames=scalar_keys)
  writer.writeheader()
  for r in results:
    writer.writerow({k: r.get(k) for k in scalar_keys})
  return out.getvalue()


def write_results(files, results):
  """Writes results.json, then results.csv, each atomically."""
  write_json(files.results_json, results)

  def write(tmp):
    with open(tmp, "w", newline="") as f:
      f.write(csv_text(results))
  replace_atomically(files.results_csv, write)


def rewrite_results_if_stale(files, results):
  """Rewrites both results files unless results.csv already holds `results`: a
  run killed between the two writes (or a lost, damaged csv) left it behind."""
  try:
    with open(files.results_csv, newline="") as f:
      csv_ok = f.read() == csv_text(results)
  except (OSError, ValueError):
    csv_ok = False
  if not csv_ok:
    write_results(files, results)


def save_snapshot(snap, path):
  """Writes a `rewind.Snapshot` (its `save` is atomic)."""
  snap.save(path)
