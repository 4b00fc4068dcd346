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

Every cell runs every seed of --length_seeds (5, fixed before any result: no cell
is extended because of how its interval came out). Jobs run three seeds of every
cell first, then the rest; each writes one raw JSON under
`benchmarks/results/length/e{epochs}/raw/` (10-epoch rows are the main grid's,
`benchmarks/results/grid/raw/`, and this study's command joins the grid's log),
so an interrupted study resumes. Shards split the jobs by a hash of each
(`results_io.shard_jobs`), so shards started at different times never run the
same job nor leave one out.
"""
import os
import time
import warnings

from absl import app, flags

from keras_signflip import schedule_checks

from benchmarks import compare  # defines the shared flags (epochs, seeds, shard, ...)
from benchmarks import results_io
from benchmarks.length_analysis import GRID_RAW, ROOT, SEEDS, jobs, load_rows, raw_path, report

FLAGS = flags.FLAGS

flags.DEFINE_string("length_seeds", ",".join(map(str, SEEDS)),
                    "Seeds of the study (paired across arms), every one in every cell.")
flags.DEFINE_string("length_dir", ROOT,
                    "The study's raw results (e{epochs}/raw/), report and figures.")
flags.DEFINE_string("grid_dir", GRID_RAW, "The main grid's results: the 10-epoch rows.")
flags.DEFINE_string("length_report", None, "The study's report; default {length_dir}/README.md.")


def _raw_path(model, epochs, method, target, seed):
  return raw_path(model, epochs, method, target, seed, FLAGS.length_dir, FLAGS.grid_dir)


def run(shard, shards, seeds):
  results_io.provenance()  # the code this process loaded, before the checkout moves on
  finished = lambda j: os.path.exists(_raw_path(*j))  # noqa: E731
  every = jobs(seeds)
  mine = results_io.shard_jobs(every, shard, shards, finished)
  done = sum(finished(j) for j in every)
  print(f"training_length: {len(every)} jobs, {done} done, {len(mine)} for shard "
        f"{shard}/{shards}", flush=True)
  if any(j[1] == 10 for j in mine):  # the grid's directory gets rows: say who wrote them
    results_io.log_command(FLAGS.grid_dir, "benchmarks.training_length")
  data = compare._load_data()  # pylint: disable=protected-access
  started = time.time()
  for i, (model_name, epochs, method, target, seed) in enumerate(mine):
    if os.path.exists(_raw_path(model_name, epochs, method, target, seed)):
      continue  # another process wrote it meanwhile
    FLAGS.epochs = epochs  # run_one_shot reads the run's length from the flags
    elapsed = time.time() - started
    eta = f", ~{elapsed / i * (len(mine) - i) / 3600:.1f} h left" if i else ""
    print(f"[{i + 1}/{len(mine)}, {elapsed:.0f} s{eta}] {model_name} {epochs} epochs "
          f"{method} {target:g} seed {seed}", flush=True)
    builder = lambda m=model_name: compare.models_lib.get(m)(data["input_shape"], data["classes"])  # noqa: E731
    result = compare.run_one_shot(method, "flipout", builder, data, target, seed)
    results_io.write_row(_raw_path(model_name, epochs, method, target, seed),
                          dict(result, target=target, model=model_name, regime="flipout",
                               method=method, seed=seed, epochs=epochs,
                               train_examples=data["train_examples"], batch=compare.BATCH))


def main(argv):
  del argv
  # The run is planned whole (and checked so, where it can be) but fit one epoch
  # a call: the library's warning that one call ends before the target is moot.
  warnings.filterwarnings("ignore", category=schedule_checks.ScheduleWarning)
  shard, shards = results_io.parse_shard(FLAGS.shard)
  seeds = [int(s) for s in FLAGS.length_seeds.split(",")]
  if not FLAGS.report_only:
    spec = FLAGS["train_examples"].default
    results_io.refuse_off_spec(
        "training_length.py",
        [f"--train_examples={FLAGS.train_examples} (the study's: {spec})"]
        * (FLAGS.train_examples != spec)
        + [f"--noise_on={FLAGS.noise_on} (the study's: prunable)"] * (FLAGS.noise_on != "prunable"),
        {"length_dir": (FLAGS.length_dir, ROOT), "grid_dir": (FLAGS.grid_dir, GRID_RAW)})
  compare.FLAGS.output_dir = FLAGS.length_dir
  if not FLAGS.report_only:
    compare.tf.config.experimental.enable_op_determinism()
    run(shard, shards, seeds)
  if FLAGS.write_report:
    path = FLAGS.length_report or os.path.join(FLAGS.length_dir, "README.md")
    report(load_rows(FLAGS.length_dir, FLAGS.grid_dir), path,
           f"`{FLAGS.length_dir}/e*/raw/` and (10 epochs) `{FLAGS.grid_dir}/raw/`",
           seeds=tuple(seeds))
    print(f"Wrote {path}")


if __name__ == "__main__":
  app.run(main)
