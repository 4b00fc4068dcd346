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
BLOCKS = (("lenet_300_100", 30), ("lenet_300_100", 100), ("lenet5", 10), ("lenet5", 30),
          ("lenet_300_100", 10))
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


def effects(rows):
  """{(model, target, epochs): {effect: paired difference or None}}."""
  out = {}
  for epochs in sorted({r["epochs"] for r in rows}):
    agg = aggregate([r for r in rows if r["epochs"] == epochs])
    for model, _, target in sorted({k[:3] for k in agg}):
      acc = lambda m: agg.get((model, "flipout", target, m), {}).get("accuracy", {})  # noqa: E731
      out[(model, target, epochs)] = {key: paired(acc(a), acc(b)) for key, a, b, _ in EFFECTS}
  return out


def trend(eff, model):
  """{epochs: {verdict: count}} of the flip term's two ablations (hybrid − magnitude,
  flipout − magnitude_noise) over the targets: where it helps, by training length."""
  out = {}
  for (m, _, epochs), v in sorted(eff.items()):
    for key in ("flips_no_noise", "flips_with_noise"):
      if m == model and v[key]:
        counts = out.setdefault(epochs, {"ahead": 0, "behind": 0, "within noise": 0})
        counts[verdict(v[key])] += 1
  return out


def direction(counts):
  """The trend in words: the flip term's net share of its comparisons (ahead − behind,
  over all) at the longest training length measured against the shortest."""
  (shortest, first), (longest, last) = min(counts.items()), max(counts.items())
  if shortest == longest:
    return f"measured at {shortest} epochs only"
  net = lambda c: (c["ahead"] - c["behind"]) / sum(c.values())  # noqa: E731
  if net(last) > net(first):
    return f"the flip term does better after {longest} epochs than after {shortest}"
  if net(last) < net(first):
    return f"the flip term does worse after {longest} epochs than after {shortest}"
  return (f"longer training does not change where the flip term pays ({longest} epochs "
          f"against {shortest})")


def _pending(p, seeds):
  """" (provisional, n of seeds)" while an effect has fewer than `seeds` pairs."""
  return f" (provisional, n={p['n']} of {seeds})" if p["n"] < seeds else ""


def answer(eff, seeds=len(SEEDS)):
  """The answer in plain lines: per model, the trend in words and the flip term's
  verdicts by training length, then each effect's verdict at every (target, length),
  marked provisional while seeds are due (`_pending`)."""
  lines = []
  for model in sorted({m for m, _, _ in eff}):
    counts = trend(eff, model)
    if counts:
      pending = any(p and _pending(p, seeds) for (m, _, _), v in eff.items() if m == model
                    for p in v.values())
      status = " — provisional, seeds still due" if pending else ""
      lines.append(f"- **{model}: {direction(counts)}{status}.** "
                   "The flip term (both ablations, all targets) by training length: "
                   + "; ".join(
                       f"{epochs} epochs: ahead in {c['ahead']} of {sum(c.values())}, behind in "
                       f"{c['behind']}" for epochs, c in sorted(counts.items())) + ".")
    for key, _, _, label in EFFECTS:
      parts = []
      for target in TARGETS:
        cells = [(e, v[key]) for (m, t, e), v in sorted(eff.items())
                 if m == model and abs(t - target) < 1e-9]
        text = ", ".join(
            f"{e} ep not measured yet" if p is None else
            f"{e} ep {verdict(p)} {ci_text(p)}" + _pending(p, seeds) for e, p in cells)
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


def report(rows, path, sources, seeds=len(SEEDS)):
  eff = effects(rows)
  models = sorted({m for m, _, _ in eff})
  os.makedirs(os.path.dirname(path), exist_ok=True)
  lines = ["# The flip term against training length", "",
           "Generated by `python -m benchmarks.training_length --report_only` from the raw JSON "
           f"under {sources}; do not edit by hand. "
           "Paired by seed: mean difference in test accuracy (points) with its 95% t interval; "
           f"n = seeds paired, {seeds} per cell when complete (every cell gets every seed, fixed "
           "before any result).", "", "## Answer", "",
           "Ahead / behind: the 95% interval is above / below 0; otherwise within noise.", ""]
  lines += answer(eff, seeds)
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
