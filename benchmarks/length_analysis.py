"""The training-length study's jobs and statistics, from raw rows alone (no TensorFlow,
no flags): `benchmarks.training_length` runs the jobs and writes its report with these."""
import os

from benchmarks import results_io
from benchmarks.analysis import aggregate, ci_text, paired, verdict

ARMS = ("magnitude", "magnitude_noise", "hybrid", "flipout", "recent_flips")
TARGETS = (0.995, 0.998, 0.999)
ROOT = os.path.join("benchmarks", "results", "length")
GRID_RAW = os.path.join("benchmarks", "results", "grid")
# (model, epochs). 10-epoch rows live with the main grid's (seeds 0-2 are the grid's
# own); LeNet-5's grid block has no RecentFlips, so it is added here.
# Run order: a model's blocks together, so that one model's answer completes before the
# next model starts (LeNet-300-100's 10-epoch seeds 0-2 are the grid's own runs).
BLOCKS = (("lenet_300_100", 30), ("lenet_300_100", 100), ("lenet_300_100", 10), ("lenet5", 10),
          ("lenet5", 30))
EFFECTS = (("flips_no_noise", "hybrid", "magnitude", "flip term, no noise (hybrid − magnitude)"),
           ("flips_with_noise", "flipout", "magnitude_noise",
            "flip term, with noise (flipout − magnitude_noise)"),
           ("recent_flips", "recent_flips", "magnitude", "recent_flips − magnitude"))
# Every cell gets every seed, decided before any result: extending only the cells whose
# interval came out near 0 would be optional stopping (intervals no longer 95%).
SEEDS = (0, 1, 2, 3, 4)
FIRST_PASS = 3  # seeds every cell gets before any cell gets more


def output_dir(epochs, length_dir=ROOT, grid_dir=GRID_RAW):
  return grid_dir if epochs == 10 else os.path.join(length_dir, f"e{epochs}")


def jobs(seeds=SEEDS):
  """(model, epochs, method, target, seed) in run order: the first FIRST_PASS seeds of
  every block, then the rest; inside a pass by block, seed, target, arm (a seed's arms
  at one target run together, so a partial study is paired)."""
  passes = (seeds[:FIRST_PASS], seeds[FIRST_PASS:])
  return [(model, epochs, method, target, seed) for group in passes
          for model, epochs in BLOCKS for seed in group for target in TARGETS
          for method in ARMS]


def raw_path(model, epochs, method, target, seed, length_dir=ROOT, grid_dir=GRID_RAW):
  return os.path.join(output_dir(epochs, length_dir, grid_dir), "raw",
                      f"{model}__flipout__{method}__{target:g}__{seed}.json")


def load_rows(length_dir=ROOT, grid_dir=GRID_RAW):
  """Every raw row of the study's arms and targets, from all its directories."""
  rows = []
  for epochs in sorted({e for _, e in BLOCKS} | {10}):
    for row in results_io.read_raw(output_dir(epochs, length_dir, grid_dir)):
      if (row["method"] in ARMS and row["regime"] == "flipout"
          and any(abs(row["target"] - t) < 1e-9 for t in TARGETS) and row["epochs"] == epochs):
        rows.append(row)
  return rows


def _accuracy(rows):
  """{(model, target, epochs): {method: {seed: test accuracy}}}."""
  out = {}
  for epochs in sorted({r["epochs"] for r in rows}):
    agg = aggregate([r for r in rows if r["epochs"] == epochs])
    for (model, _, target, method), v in agg.items():
      out.setdefault((model, target, epochs), {})[method] = v["accuracy"]
  return out


def effects(rows):
  """{(model, target, epochs): {effect: paired difference or None}}."""
  return {cell: {key: paired(acc.get(a, {}), acc.get(b, {})) for key, a, b, _ in EFFECTS}
          for cell, acc in _accuracy(rows).items()}


def seed_differences(rows):
  """{(model, target, epochs, effect): {seed: a − b}} over the seeds both arms have."""
  out = {}
  for (model, target, epochs), acc in _accuracy(rows).items():
    for key, a, b, _ in EFFECTS:
      x, y = acc.get(a, {}), acc.get(b, {})
      out[(model, target, epochs, key)] = {s: x[s] - y[s] for s in set(x) & set(y)}
  return out


FLIP_TERM = ("flips_no_noise", "flips_with_noise")  # the 2 x 2 ablation's two flip effects


def trend(eff, model):
  """{epochs: {verdict: count}} of the flip term's two ablations (hybrid − magnitude,
  flipout − magnitude_noise) over the targets: where it helps, by training length."""
  out = {}
  for (m, _, epochs), v in sorted(eff.items()):
    for key in FLIP_TERM:
      if m == model and v[key]:
        counts = out.setdefault(epochs, {"ahead": 0, "behind": 0, "within noise": 0})
        counts[verdict(v[key])] += 1
  return out


def length_change(rows, model, short, long):
  """{"larger", "smaller", "no detectable change": count} over the targets and both flip
  ablations: the effect at `long` epochs minus the effect at `short`, paired by seed,
  with its 95% t interval. The trend is this contrast, not a change in how many
  intervals exclude 0 (which moves with n alone)."""
  diffs = seed_differences(rows)
  counts = {"larger": 0, "smaller": 0, "no detectable change": 0}
  for target in TARGETS:
    for key in FLIP_TERM:
      p = paired(diffs.get((model, target, long, key), {}),
                 diffs.get((model, target, short, key), {}))
      if p:
        counts[{"ahead": "larger", "behind": "smaller"}.get(verdict(p),
                                                            "no detectable change")] += 1
  return counts


def direction(counts, short, long):
  """The trend in words, from `length_change`'s counts, whichever way it goes."""
  total = sum(counts.values())
  if not total:
    return f"{long} epochs against {short}: no paired seeds yet"
  larger, smaller = counts["larger"], counts["smaller"]
  words = ("longer training makes no detectable difference to the flip term"
           if not larger and not smaller else
           "the flip term gains with longer training" if not smaller else
           "the flip term loses with longer training" if not larger else
           "mixed: the flip term gains with longer training in some comparisons, loses in others")
  return (f"{words} ({long} epochs against {short}, paired by seed: its effect larger in "
          f"{larger} of {total} comparisons, smaller in {smaller})")


def _pending(p, seeds):
  """" (provisional, n of seeds)" while an effect has fewer than `seeds` pairs."""
  return f" (provisional, n={p['n']} of {seeds})" if p["n"] < seeds else ""


def missing_runs(rows, model, seeds=SEEDS):
  """The planned runs (`jobs`) of `model` that have no row yet."""
  have = {(r["model"], r["epochs"], r["method"], r["target"], r["seed"]) for r in rows}
  return [j for j in jobs(seeds) if j[0] == model and j not in have]


def answer(rows, seeds=SEEDS):
  """The answer in plain lines: per model, the trend in words (`length_change` between its
  shortest and longest planned lengths), the flip term's verdicts by training length,
  then each effect's verdict at every (target, length); provisional while any planned run
  of the model is missing."""
  eff = effects(rows)
  lines = []
  for model in sorted({m for m, _, _ in eff}):
    lengths = sorted(e for m, e in BLOCKS if m == model)
    short, long = lengths[0], lengths[-1]
    missing = missing_runs(rows, model, seeds)
    status = (f" — provisional, {len(missing)} of its {len(seeds)}-seed runs still due"
              if missing else "")
    counts = trend(eff, model)
    lines.append(f"- **{model}: {direction(length_change(rows, model, short, long), short, long)}"
                 f"{status}.** The flip term (both ablations, all targets) by training length: "
                 + "; ".join(f"{epochs} epochs: ahead in {c['ahead']} of {sum(c.values())}, "
                             f"behind in {c['behind']}" for epochs, c in sorted(counts.items()))
                 + ".")
    for key, _, _, label in EFFECTS:
      parts = []
      for target in TARGETS:
        cells = [(e, v[key]) for (m, t, e), v in sorted(eff.items())
                 if m == model and abs(t - target) < 1e-9]
        text = ", ".join(
            f"{e} ep not measured yet" if p is None else
            f"{e} ep {verdict(p)} {ci_text(p)}" + _pending(p, len(seeds)) for e, p in cells)
        if cells:  # a target the study has no row of yet is left out
          parts.append(f"{100 * target:g}%: {text}")
      lines.append(f"  - {label}: " + "; ".join(parts) + ".")
  return lines


def figure(eff, model, path):
  """Paired effect (points, 95% CI) against epochs, one panel per target."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(TARGETS), figsize=(12, 3.8), sharey=True)
  for ax, target in zip(axes, TARGETS):
    points = sorted((e, v) for (m, t, e), v in eff.items() if m == model and abs(t - target) < 1e-9)
    for offset, (key, _, _, label) in enumerate(EFFECTS):
      pts = [(e, v[key]) for e, v in points if v[key]]
      if pts:
        x = [e * (1 + 0.06 * (offset - 1)) for e, _ in pts]
        ax.errorbar(x, [100 * p["mean"] for _, p in pts],
                    yerr=[[100 * (p["mean"] - p["low"]) for _, p in pts],
                          [100 * (p["high"] - p["mean"]) for _, p in pts]],
                    marker="o", capsize=3, label=label)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xticks([10, 30, 100], ["10", "30", "100"])
    ax.set_xlabel("epochs per run")
    ax.set_title(f"{100 * target:g}%")
    ax.grid(True, alpha=0.3)
  axes[0].set_ylabel("paired difference, points (95% CI)")
  axes[-1].legend(fontsize=7)
  fig.suptitle(f"{model}, FlipOut's regime: the flip term against training length")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def report(rows, path, sources, seeds=SEEDS):
  eff = effects(rows)
  models = sorted({m for m, _, _ in eff})
  os.makedirs(os.path.dirname(path), exist_ok=True)
  lines = ["# The flip term against training length", "",
           "Generated by `python -m benchmarks.training_length --report_only` from the raw JSON "
           f"under {sources}; do not edit by hand. "
           "Paired by seed: mean difference in test accuracy (points) with its 95% t interval; "
           f"n = seeds paired, {len(seeds)} per cell when complete (every cell gets every "
           "seed, fixed before any result).", "", "## Answer", "",
           "Ahead / behind: the 95% interval is above / below 0; otherwise within noise. "
           "The trend (first sentence per model): the flip term's effect at the longest "
           "training length minus its effect at the shortest, paired by seed, 95% t interval; "
           "larger / smaller where the interval excludes 0.", ""]
  lines += answer(rows, seeds)
  lines += ["", "## Paired differences", "",
            "| model | target | epochs | " + " | ".join(label for *_, label in EFFECTS) + " |",
            "|---|---|---|" + "---|" * len(EFFECTS)]
  for (model, target, epochs), v in sorted(eff.items()):
    cells = [f"{ci_text(v[key])} (n={v[key]['n']})" if v[key] else "-" for key, *_ in EFFECTS]
    lines.append(f"| {model} | {100 * target:g}% | {epochs} | " + " | ".join(cells) + " |")
  lines += ["", "## Test accuracy", "",
            "| model | target | epochs | arm | test accuracy % (mean ± std) | n |",
            "|---|---|---|---|---|---|"]
  for epochs in sorted({r["epochs"] for r in rows}):
    for (model, _, target, method), v in sorted(
        aggregate([r for r in rows if r["epochs"] == epochs]).items(),
        key=lambda kv: (kv[0][0], kv[0][2], ARMS.index(kv[0][3]))):
      lines.append(f"| {model} | {100 * target:g}% | {epochs} | {method} | "
                   f"{100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} | {v['n']} |")
  lines.append("")
  for model in models:
    name = f"{model}_flip_term_vs_epochs.png"
    figure(eff, model, os.path.join(os.path.dirname(path), name))
    lines.append(f"![{name}]({name})")
  results_io.write_text(path, "\n".join(lines) + "\n")
  return eff
