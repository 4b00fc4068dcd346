r"""Flip-aware variants beyond FlipOut, chosen on a validation split (issue 28, goal 2).

The variants, the choice and the pairing are described in
`benchmarks/variants_analysis.py`. Jobs run in two phases: the selection runs
(every power, selection seeds, validation accuracy), then, once all of them
exist, the report's runs at the chosen power; each writes one raw JSON under
`benchmarks/results/variants/raw/` (a grid method's, beside the grid's own under
`benchmarks/results/grid/raw/`), so an interrupted study resumes. A shard that
finishes the selection before the other does stops there: run the shards once
more to finish the report's runs (`make variants` runs two passes).

    python -m benchmarks.flip_variants --shard=0/2 &   # two processes share
    python -m benchmarks.flip_variants --shard=1/2     # the missing jobs
    python -m benchmarks.flip_variants --report_only   # the markdown report
"""
import os
import sys
import tempfile
import time
import warnings

from absl import app, flags

from keras_signflip import schedule_checks

from benchmarks import compare  # defines the shared flags (epochs, shard, ...)
from benchmarks import results_io
from benchmarks import variants_analysis as study
from benchmarks.analysis import ticket_at

FLAGS = flags.FLAGS

flags.DEFINE_string("variants_dir", study.ROOT, "The study's raw results (raw/) and report.")
flags.DEFINE_string("grid_dir", study.GRID, "The main grid's results: its seeds 0-2, and this "
                    "study's seeds 3-4 of the grid's methods, written beside them.")


class _ValidationAccuracy(compare.keras.callbacks.Callback):
  """Validation accuracy at the end of each lottery round's training, by round."""

  def __init__(self, data, by_round, r):
    super().__init__()
    self.data, self.by_round, self.r = data, by_round, r

  def on_train_end(self, logs=None):
    self.by_round[self.r] = float(self.model.evaluate(self.data, verbose=0)[1])


def _criterion(method, power):
  if method == "recent_hybrid":
    return study.RecentHybrid(power)
  if method == "lrr_hybrid":
    return compare.ksf.criteria.Hybrid(power)
  return None if method != "lrr_magnitude" else "magnitude"


def run_job(method, target, seed, power, data):
  """One run; returns its raw row (test and, where the method has one, validation accuracy)."""
  builder = lambda: compare.models_lib.get(study.MODEL)(data["input_shape"], data["classes"])  # noqa: E731
  if method in ("lottery_matched", "lrr_magnitude", "lrr_hybrid"):
    mode = "rewind" if method == "lottery_matched" else "lr_rewind"
    val = {}
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="flip_variants_") as chain_dir:
      rows = compare.run_lottery(
          "flipout", builder, data, seed, chain_dir, sparsity=target, mode=mode,
          criterion=_criterion(method, power) or "magnitude",
          extra_callbacks=lambda r: [_ValidationAccuracy(data["val"], val, r)])
    result = ticket_at(rows, target, mode)
    if result is None:
      raise RuntimeError(f"{method} at {target:g}: no round reached the target")
    result.update(wall_seconds=time.time() - start, val_accuracy=val.get(result["round"]),
                  flips_per_round=[r["flips"] for r in sorted(rows, key=lambda r: r["round"])])
  else:
    result = compare.run_one_shot(method, "flipout", builder, data, target, seed,
                                  criterion=_criterion(method, power))
  extra = {} if power is None else {"power": power}
  return dict(result, target=target, model=study.MODEL, regime="flipout", method=method,
              seed=seed, epochs=FLAGS.epochs, train_examples=data["train_examples"],
              batch=compare.BATCH, **extra)


def _path(phase, method, target, seed, power):
  if phase == "selection":
    return study.raw_path(FLAGS.variants_dir, method, target, seed, power)
  root = study.report_root(method, FLAGS.variants_dir, FLAGS.grid_dir)
  return study.raw_path(root, method, target, seed)


def _run(jobs, shard, shards, data, phase):
  done = lambda j: os.path.exists(_path(phase, *j))  # noqa: E731
  mine = results_io.shard_jobs(jobs, shard, shards, done)
  missing = sum(not done(j) for j in jobs)
  print(f"flip_variants: {phase}: {missing} jobs missing, {len(mine)} for shard "
        f"{shard}/{shards}", flush=True)
  started = time.time()
  for i, (method, target, seed, power) in enumerate(mine):
    path = _path(phase, method, target, seed, power)
    if os.path.exists(path):  # another process wrote it meanwhile
      continue
    elapsed = time.time() - started
    eta = f", ~{elapsed / i * (len(mine) - i) / 60:.0f} min left" if i else ""
    tag = "" if power is None else f" p={power:g}"
    print(f"[{phase} {i + 1}/{len(mine)}, {elapsed:.0f} s{eta}] {method}{tag} {target:g} "
          f"seed {seed}", flush=True)
    results_io.write_row(path, run_job(method, target, seed, power, data))


def main(argv):
  del argv
  warnings.filterwarnings("ignore", category=schedule_checks.ScheduleWarning)  # fit per epoch
  shard, shards = results_io.parse_shard(FLAGS.shard)
  if not FLAGS.report_only:
    results_io.refuse_off_spec(
        "flip_variants.py",
        [f"--{name}={FLAGS[name].value} (the study's: {spec})"
         for name, spec in (("epochs", study.EPOCHS), ("train_examples", study.TRAIN_EXAMPLES),
                            ("noise_on", "prunable"))
         if FLAGS[name].value != spec],
        {"variants_dir": (FLAGS.variants_dir, study.ROOT),
         "grid_dir": (FLAGS.grid_dir, study.GRID)})
  missing = study.missing_grid_rows(FLAGS.grid_dir)
  if missing and not FLAGS.report_only:
    sys.exit(f"flip_variants.py: error: {len(missing)} of the grid's runs the report pairs with "
             f"are missing from {FLAGS.grid_dir}/raw/ (e.g. {missing[0]}); run `make bench` "
             "(benchmarks.compare) first, or pass --grid_dir.")
  if not FLAGS.report_only:
    results_io.provenance()  # the code this process loaded, before the checkout moves on
    compare.tf.config.experimental.enable_op_determinism()
    data = compare._load_data()  # pylint: disable=protected-access
    _run(study.selection_jobs(), shard, shards, data, "selection")
    chosen = study.choose(FLAGS.variants_dir)
    if any(p is None for p in chosen.values()):
      print("flip_variants: the selection is not complete (another shard is still running "
            "it?); run again once it is to start the report's runs.", flush=True)
    else:
      print(f"flip_variants: chosen on the validation split: {chosen}", flush=True)
      jobs = study.report_jobs(chosen, FLAGS.variants_dir, FLAGS.grid_dir)
      if any(j[0] in study.GRID_METHODS for j in jobs):  # the grid's log names who wrote there
        results_io.log_command(FLAGS.grid_dir, "benchmarks.flip_variants")
      _run(jobs, shard, shards, data, "report")
  if FLAGS.write_report:
    path = os.path.join(FLAGS.variants_dir, "README.md")
    study.report(FLAGS.variants_dir, FLAGS.grid_dir, path)
    print(f"Wrote {path}")


if __name__ == "__main__":
  app.run(main)
