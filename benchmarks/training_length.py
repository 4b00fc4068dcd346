r"""Does the flip term pay more when training is longer? (issue 28, goal 1)

FlipOut's published gains come from 350-epoch runs, where a weight's flip
count sums tens of thousands of steps between pruning events; the main grid
(`benchmarks.compare`) trains 10 epochs. This study reruns its 2 x 2 ablation
(magnitude, magnitude_noise, hybrid, flipout) and RecentFlips at longer runs,
in FlipOut's regime, with everything else as the grid has it: FlipOut's event
schedule scaled to the run (`keras_signflip.flipout`), the learning-rate
decays at 3/7 and 5/7 of it, the same data order per seed for every arm.

    python -m benchmarks.training_length --shard=0/2 &   # two processes share
    python -m benchmarks.training_length --shard=1/2     # the missing jobs
    python -m benchmarks.training_length --report_only   # figure + markdown

Jobs run most informative first (LeNet-300-100 at 30 epochs, then at 100,
then LeNet-5); each writes one raw JSON under
`benchmarks/results/length/e{epochs}/raw/` (10-epoch rows are the main grid's,
`benchmarks/results/grid/raw/`), so an interrupted study resumes. Shards split
the full job list by position, so shards started at different times never
run the same job.
"""
import os
import sys
import time

from absl import app, flags

from benchmarks import compare  # defines the shared flags (epochs, seeds, ...)
from benchmarks import results_io
from benchmarks.analysis import aggregate, ci_text, paired

FLAGS = flags.FLAGS

ARMS = ("magnitude", "magnitude_noise", "hybrid", "flipout", "recent_flips")
TARGETS = (0.995, 0.998, 0.999)
ROOT = os.path.join("benchmarks", "results", "length")
GRID_RAW = os.path.join("benchmarks", "results", "grid")
# (model, epochs), most informative first. 10-epoch LeNet-300-100 rows exist
# in the grid; LeNet-5's grid block has no RecentFlips, so it is added here.
BLOCKS = (("lenet_300_100", 30), ("lenet_300_100", 100), ("lenet5", 10), ("lenet5", 30))
EFFECTS = (("flips_no_noise", "hybrid", "magnitude", "flip term, no noise (hybrid − magnitude)"),
           ("flips_with_noise", "flipout", "magnitude_noise",
            "flip term, with noise (flipout − magnitude_noise)"),
           ("recent_flips", "recent_flips", "magnitude", "recent_flips − magnitude"))

flags.DEFINE_string("length_seeds", "0,1,2", "Seeds of the study (paired across arms).")
flags.DEFINE_string("length_dir", ROOT, "The study's raw results (e{epochs}/raw/), report and figures.")
flags.DEFINE_string("grid_dir", GRID_RAW, "The main grid's results: the 10-epoch rows.")
flags.DEFINE_string("length_report", None, "The study's report; default {length_dir}/README.md.")


def output_dir(epochs, length_dir=ROOT, grid_dir=GRID_RAW):
  return grid_dir if epochs == 10 else os.path.join(length_dir, f"e{epochs}")


def jobs(seeds):
  """(model, epochs, method, target, seed) in run order: block, seed, target, arm."""
  return [(model, epochs, method, target, seed) for model, epochs in BLOCKS
          for seed in seeds for target in TARGETS for method in ARMS]


def _raw_path(model, epochs, method, target, seed):
  return os.path.join(output_dir(epochs, FLAGS.length_dir, FLAGS.grid_dir), "raw",
                      f"{model}__flipout__{method}__{target:g}__{seed}.json")


def run(shard, shards, seeds):
  every = jobs(seeds)
  mine = [j for i, j in enumerate(every) if i % shards == shard and not os.path.exists(_raw_path(*j))]
  done = sum(os.path.exists(_raw_path(*j)) for j in every)
  print(f"training_length: {len(every)} jobs, {done} done, {len(mine)} for shard "
        f"{shard}/{shards}", flush=True)
  data = compare._load_data()  # pylint: disable=protected-access
  started = time.time()
  for i, (model_name, epochs, method, target, seed) in enumerate(mine):
    if os.path.exists(_raw_path(model_name, epochs, method, target, seed)):
      continue
    FLAGS.epochs = epochs  # run_one_shot reads the run's length from the flags
    elapsed = time.time() - started
    eta = f", ~{elapsed / i * (len(mine) - i) / 3600:.1f} h left" if i else ""
    print(f"[{i + 1}/{len(mine)}, {elapsed:.0f} s{eta}] {model_name} {epochs} epochs "
          f"{method} {target:g} seed {seed}", flush=True)
    builder = lambda m=model_name: compare.models_lib.get(m)(data["input_shape"], data["classes"])  # noqa: E731
    result = compare.run_one_shot(method, "flipout", builder, data, target, seed)
    results_io.write_json(_raw_path(model_name, epochs, method, target, seed),
                          dict(result, target=target, model=model_name, regime="flipout",
                               method=method, seed=seed, epochs=epochs,
                               train_examples=data["train_examples"], batch=compare.BATCH))


def load_rows(length_dir=ROOT, grid_dir=GRID_RAW):
  """Every raw row of the study's arms and targets, from all its directories."""
  rows = []
  for epochs in sorted({e for _, e in BLOCKS} | {10}):
    for row in compare.load_raw(output_dir(epochs, length_dir, grid_dir)):
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


def report(rows, path, sources):
  eff = effects(rows)
  models = sorted({m for m, _, _ in eff})
  os.makedirs(os.path.dirname(path), exist_ok=True)
  lines = ["# The flip term against training length", "",
           "Generated by `python -m benchmarks.training_length --report_only` from the raw JSON "
           f"under {sources}; do not edit by hand. "
           "Paired by seed: mean difference in test accuracy (points) with its 95% t interval; "
           "n = seeds paired.", "",
           "| model | target | epochs | " + " | ".join(label for *_, label in EFFECTS) + " |",
           "|---|---|---|" + "---|" * len(EFFECTS)]
  for (model, target, epochs), v in sorted(eff.items()):
    cells = [f"{ci_text(v[key])} (n={v[key]['n']})" if v[key] else "-" for key, *_ in EFFECTS]
    lines.append(f"| {model} | {100 * target:g}% | {epochs} | " + " | ".join(cells) + " |")
  lines += ["", "| model | target | epochs | arm | test accuracy % (mean ± std) | n |",
            "|---|---|---|---|---|---|"]
  for epochs in sorted({r["epochs"] for r in rows}):
    for (model, _, target, method), v in sorted(aggregate([r for r in rows if r["epochs"] == epochs]).items(),
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


def main(argv):
  del argv
  shard, shards = (int(x) for x in FLAGS.shard.split("/"))
  if not 0 <= shard < shards:
    sys.exit(f"training_length.py: error: --shard={FLAGS.shard!r} must be i/n with 0 <= i < n.")
  seeds = [int(s) for s in FLAGS.length_seeds.split(",")]
  compare.FLAGS.output_dir = FLAGS.length_dir
  if not FLAGS.report_only:
    compare.tf.config.experimental.enable_op_determinism()
    run(shard, shards, seeds)
  if FLAGS.write_report:
    path = FLAGS.length_report or os.path.join(FLAGS.length_dir, "README.md")
    report(load_rows(FLAGS.length_dir, FLAGS.grid_dir), path,
           f"`{FLAGS.length_dir}/e*/raw/` and (10 epochs) `{FLAGS.grid_dir}/raw/`")
    print(f"Wrote {path}")


if __name__ == "__main__":
  app.run(main)
