"""Flip-aware variants (issue 28, goal 2): their criteria, jobs, the choice on the
validation split, and the report, from raw rows alone (no flags, no TensorFlow
at import): `benchmarks.flip_variants` runs the jobs and writes the report.

The leads of the 10-epoch grid (three seeds) were RecentFlips at 99.9% (not
confirmed by five seeds) and step-matched lottery tickets at >= 99.5%. Two
variants follow them:

  recent_hybrid  |w|^p / (flips since the last event + 1): FlipOut's hybrid
                 score with RecentFlips' window (a weight that settled is
                 ranked by magnitude again, one flipping now is discounted).
  lrr_hybrid     iterative pruning with learning-rate rewinding (each round
                 goes on from the last one's weights, its learning rate from
                 the start), ranked between rounds by Hybrid(p) instead of
                 magnitude: Gadhikar & Burkholz (2024) tie LRR's success to
                 early sign flips. Its control, `lrr_magnitude`, is LRR as
                 published; both step-matched (all rounds share one one-shot
                 run's steps), as `lottery_matched` is.

The power p is chosen per variant on the validation split (5,000 training
examples held out of training) with selection seeds that the report does not
use; the report's seeds then train once at the chosen p and are read on the
test set, paired with the grid's methods. Every run of a grid method lives in the
grid's directory (benchmarks/results/grid/raw/): seeds 0-2 are the grid's own, and
seeds 3-4, run here by the same code, are written beside them, so each run exists
once and the grid's report uses all five seeds too.
"""
import os
import statistics

from keras_signflip import arguments, criteria

from benchmarks import results_io
from benchmarks.analysis import ci_text, paired, verdict

ROOT = os.path.join("benchmarks", "results", "variants")
GRID = os.path.join("benchmarks", "results", "grid")
MODEL = "lenet_300_100"
TARGETS = (0.995, 0.998, 0.999)
POWERS = (1.0, 2.0, 3.0)
EPOCHS, TRAIN_EXAMPLES = 10, 55000  # the grid's runs, which the report pairs with
VARIANTS = ("recent_hybrid", "lrr_hybrid")
CONTROLS = ("magnitude", "hybrid", "recent_flips", "lottery_matched", "lrr_magnitude")
GRID_METHODS = ("magnitude", "hybrid", "recent_flips", "lottery_matched")  # rows in the grid
SELECTION_SEEDS = (100, 101)
REPORT_SEEDS = (0, 1, 2, 3, 4)
GRID_SEEDS = (0, 1, 2)  # the grid's own runs; the others run here, written beside them
# (name, a, b, what it isolates): paired test-accuracy differences a - b.
EFFECTS = (
    ("recent_flips", "magnitude", "the lead the variants follow; the grid's rows, all five seeds"),
    ("recent_hybrid", "recent_flips", "the magnitude term added to RecentFlips"),
    ("recent_hybrid", "hybrid", "RecentFlips' window in FlipOut's hybrid score"),
    ("recent_hybrid", "magnitude", "recent_hybrid against magnitude"),
    ("lrr_hybrid", "lrr_magnitude", "the flip term inside LRR"),
    ("lrr_magnitude", "lottery_matched", "LRR against weight rewinding (both step-matched)"),
    ("lrr_hybrid", "magnitude", "lrr_hybrid against one-shot magnitude"),
)


class RecentHybrid(criteria.Criterion):
  """abs(w)**power / (flips since the last mask update + 1), ties by fewer recent flips.

  Args:
    power: exponent p of the magnitude term, a finite number > 0.
  """
  name = "recent_hybrid"
  xla_compatible = True
  uses_window = True

  def __init__(self, power=2.0):
    self.power = arguments.check_number("power", power, low=0, low_inclusive=False)

  def flip_count(self, state, xp=None):
    return state.flips - state.flips_at_update

  def score(self, weight, state, xp=None):
    xp = xp or criteria._default_xp()  # pylint: disable=protected-access
    recent = criteria._as(self.flip_count(state, xp), "float32", xp)  # pylint: disable=protected-access
    return xp.power(xp.abs(weight), self.power) / (recent + 1.0)

  def tiebreak(self, weight, state, xp=None):
    xp = xp or criteria._default_xp()  # pylint: disable=protected-access
    return -criteria._as(self.flip_count(state, xp), "float32", xp)  # pylint: disable=protected-access

  def get_config(self):
    return {"power": self.power}


def raw_path(root, method, target, seed, power=None):
  """One run's JSON: selection runs carry their power in the name."""
  tag = "" if power is None else f"__p{power:g}"
  return os.path.join(root, "raw", f"{MODEL}__flipout__{method}{tag}__{target:g}__{seed}.json")


def selection_jobs():
  """(method, target, seed, power): every variant at every power on the selection seeds."""
  return [(m, t, s, p) for s in SELECTION_SEEDS for t in TARGETS for m in VARIANTS
          for p in POWERS]


def report_root(method, root=ROOT, grid_dir=GRID):
  """Where a report run of `method` lives: the grid's directory for a grid method."""
  return grid_dir if method in GRID_METHODS else root


def missing_grid_rows(grid_dir=GRID):
  """The grid's own runs (GRID_SEEDS) the report pairs with that do not exist."""
  return [(m, t, s) for m in GRID_METHODS for t in TARGETS for s in GRID_SEEDS
          if not os.path.exists(raw_path(grid_dir, m, t, s))]


def report_jobs(chosen, root=ROOT, grid_dir=GRID):
  """(method, target, seed, power) still to run for the report: the variants at their
  chosen power, `lrr_magnitude` (no grid row) and the grid's methods on the seeds
  beyond the grid's; a run that exists is never rerun."""
  out = []
  for s in REPORT_SEEDS:
    for t in TARGETS:
      for m in VARIANTS + CONTROLS:
        if m not in GRID_METHODS or s not in GRID_SEEDS:
          out.append((m, t, s, chosen.get(m)))
  return [j for j in out
          if not os.path.exists(raw_path(report_root(j[0], root, grid_dir), j[0], j[1], j[2]))]


def _rows(directory):
  """The rows of this study's model, regime, targets and training (10 epochs on 55,000
  examples: the grid's, which the report pairs with)."""
  return [r for r in results_io.read_raw(directory)
          if r.get("model") == MODEL and r.get("regime") == "flipout"
          and r.get("epochs") == EPOCHS and r.get("train_examples") == TRAIN_EXAMPLES
          and any(abs(r["target"] - t) < 1e-9 for t in TARGETS)]


def selection_table(root=ROOT):
  """{(variant, power): (mean validation accuracy over targets and selection seeds, n)}."""
  rows = [r for r in _rows(root) if r["seed"] in SELECTION_SEEDS and "power" in r]
  table = {}
  for m in VARIANTS:
    for p in POWERS:
      vals = [r["val_accuracy"] for r in rows if r["method"] == m and r["power"] == p]
      table[(m, p)] = (statistics.mean(vals), len(vals)) if vals else (None, 0)
  return table


def choose(root=ROOT):
  """{variant: the power with the best mean validation accuracy (ties: the power nearer
  2)}; None for a variant whose selection runs are not all done."""
  table = selection_table(root)
  complete = len(TARGETS) * len(SELECTION_SEEDS)
  out = {}
  for m in VARIANTS:
    mean = {p: table[(m, p)][0] for p in POWERS if table[(m, p)][1] == complete}
    out[m] = max(mean, key=lambda p: (mean[p], -abs(p - 2.0))) if len(mean) == len(POWERS) else None
  return out


def report_rows(root=ROOT, grid_dir=GRID):
  """{(method, target): {seed: test accuracy}} of the report's seeds (selection
  runs excluded: their seeds are not the report's), each method read from where its
  runs live (`report_root`)."""
  out = {}
  for directory in (grid_dir, root):
    for r in _rows(directory):
      if (r["seed"] in REPORT_SEEDS and r["method"] in VARIANTS + CONTROLS
          and report_root(r["method"], root, grid_dir) == directory):
        out.setdefault((r["method"], r["target"]), {})[r["seed"]] = r["test_accuracy"]
  return out


def effects(rows):
  """{(a, b, target): paired difference of a - b (mean, 95% CI) or None}."""
  return {(a, b, t): paired(rows.get((a, t), {}), rows.get((b, t), {}))
          for a, b, _ in EFFECTS for t in TARGETS}


def report(root=ROOT, grid_dir=GRID, path=None):
  """The markdown report (returned, and written to `path` when given)."""
  chosen, sel, rows = choose(root), selection_table(root), report_rows(root, grid_dir)
  eff = effects(rows)
  lines = ["# Flip-aware variants (issue 28, goal 2)", "",
           "Generated by `python -m benchmarks.flip_variants --report_only` from",
           f"`{root}/raw/` and `{grid_dir}/raw/`; see `benchmarks/variants_analysis.py` for the",
           "variants, the choice and the pairing. LeNet-300-100, Fashion-MNIST "
           f"({TRAIN_EXAMPLES:,} training examples), {EPOCHS} epochs, FlipOut's regime and",
           "schedule, global ranking.",
           "", "## The choice of p, on the validation split", "",
           f"Mean validation accuracy over targets {', '.join(f'{t:.1%}' for t in TARGETS)} and "
           f"selection seeds {', '.join(map(str, SELECTION_SEEDS))}; the selection runs' "
           "test accuracy is recorded but never used for the choice.", "",
           "| variant | " + " | ".join(f"p = {p:g}" for p in POWERS) + " | chosen |",
           "|---|" + "---|" * (len(POWERS) + 1)]
  for m in VARIANTS:
    cells = [f"{100 * v:.2f} ({n})" if v is not None else "-" for v, n in
             (sel[(m, p)] for p in POWERS)]
    lines.append(f"| {m} | " + " | ".join(cells) + f" | {chosen[m] if chosen[m] else '-'} |")
  edge = [f"{m} (p = {chosen[m]:g})" for m in VARIANTS if chosen[m] in (POWERS[0], POWERS[-1])]
  if edge:
    lines += ["", f"At the edge of the powers tried: {', '.join(edge)}; a power beyond "
              "the range might do better on the validation split. A larger p weighs the flip "
              "term less (as p grows the ranking tends to magnitude's, flips breaking ties)."]
  lines += ["", "## Test accuracy (mean ± std over the report's seeds, n)", "",
            "| method | " + " | ".join(f"{t:.1%}" for t in TARGETS) + " |",
            "|---|" + "---|" * len(TARGETS)]
  for m in VARIANTS + CONTROLS:
    cells = []
    for t in TARGETS:
      acc = list(rows.get((m, t), {}).values())
      cells.append("-" if not acc else f"{100 * statistics.mean(acc):.2f} ± "
                   f"{100 * (statistics.stdev(acc) if len(acc) > 1 else 0):.2f} ({len(acc)})")
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  lines += ["", "## Paired differences (test accuracy, points; 95% t interval over seeds)", "",
            "| difference | what it isolates | " + " | ".join(f"{t:.1%}" for t in TARGETS) + " |",
            "|---|---|" + "---|" * len(TARGETS)]
  for a, b, what in EFFECTS:
    lines.append(f"| {a} − {b} | {what} | "
                 + " | ".join(_cell(eff[(a, b, t)]) for t in TARGETS) + " |")
  lines += ["", "## Answer", ""] + answer(eff)
  text = "\n".join(lines) + "\n"
  if path:
    results_io.write_text(path, text)
  return text


def _cell(p):
  return "-" if p is None else f"{ci_text(p)} (n={p['n']})"


def answer(eff):
  """One plain sentence per difference: ahead, behind, or within noise, per target."""
  out = []
  for a, b, what in EFFECTS:
    parts = []
    for t in TARGETS:
      p = eff[(a, b, t)]
      if p is None:
        parts.append(f"{t:.1%}: not measured yet")
      else:
        early = ("" if p["n"] >= len(REPORT_SEEDS)
                 else f", provisional: {p['n']} of {len(REPORT_SEEDS)} seeds")
        parts.append(f"{t:.1%}: {verdict(p)}, {ci_text(p)}{early}")
    out.append(f"- {a} − {b} ({what}): " + "; ".join(parts) + ".")
  return out
