r"""Lottery tickets: iterative pruning with rewinding, controls, early-bird.

    python -m examples.lottery_ticket --dataset=fashion_mnist \
        --model=lenet_300_100 --rounds=10 --prune_rate=0.2 --prune_rate_output=0.1 \
        --reinit=rewind,random --epochs=5 --output_dir=runs/lt

Writes results.json / results.csv after every round, masks_<round>.npz, and
PNG plots (test accuracy and early-stopping step vs % weights remaining, one
line per re-initialisation mode). --resume continues in the round a run
stopped in, with the configuration it started with (`lottery.run` keeps it in
config.json, with this binary's model, data and optimizer flags, and refuses
any other, naming each differing flag); more --rounds, or --reinit controls
appended, extend a finished run. --early_bird draws the ticket with the
early-bird rule during round 0 (pruned at once to the final sparsity of
--rounds rounds), then retrains it once. --init_mask_from=path/masks_<r>.npz
starts from another run's mask (ticket transfer). Bad flags, a directory that
cannot take the run and unreadable artifacts are one-line `error:` messages.

Output: where the data came from, a line per epoch of each round (with a live
bar during the epoch when stdout is a terminal), a line per finished round,
then the table of every round and where the results and plots are. -v 0
(absl's --verbosity) brings back TensorFlow's own logs (-v -1: its warnings
and errors); without -v the binary sets TF_CPP_MIN_LOG_LEVEL=3 before
TensorFlow loads, unless it is already set.
"""
import dataclasses
import os
import time
import warnings

from absl import app, flags

from examples import console  # imports no TensorFlow

# TensorFlow's log level is set before it loads, and only when run as a program.
with console.quiet_imports(active=__name__ == "__main__"):
  from keras_signflip import criteria as criteria_lib
  from keras_signflip import data as data_lib
  from keras_signflip.lottery import early_bird as early_bird_lib
  from keras_signflip import lottery
  from keras_signflip import models as models_lib
  from keras_signflip.lottery import reinit as reinit_lib
  from keras_signflip import schedule_checks
  from keras_signflip.tf_keras._framework import keras, tf

  from examples import common

flags.DEFINE_integer("rounds", 5, "Pruning rounds after the dense round.")
flags.DEFINE_float("prune_rate", 0.2, "Fraction of survivors pruned per round.")
flags.DEFINE_float("prune_rate_output", 0.1, "Rate of the output layer (layer scope).")
flags.DEFINE_string("rewind_step", "0", "Rewind point: '0', '500it' or '1ep'.")
flags.DEFINE_list("reinit", ["rewind"], f"Re-initialisations from {list(reinit_lib.MODES)}; "
                  "the first defines the masks, the others are controls.")
flags.DEFINE_bool("early_bird", False, "Draw the ticket with the early-bird rule.")
flags.DEFINE_float("early_bird_epsilon", 0.1, "Early-bird distance threshold.")
flags.DEFINE_string("init_mask_from", None, "masks_<r>.npz of another run: the starting mask.")
flags.DEFINE_integer("validation_examples", 5000, "Training examples held out for early stopping.")
flags.DEFINE_integer("eval_every", None, "Evaluate every N steps (default: each epoch).")
flags.declare_key_flag("verbosity")
FLAGS = flags.FLAGS


# Flags outside LotteryConfig that change the results: config.json keeps them
# (`lottery.run`'s context), and a resumed run must give the same.
CONTEXT_FLAGS = ("dataset", "model", "train_examples", "test_examples", "validation_examples",
                 "batch_size", "optimizer", "learning_rate", "warmup_steps", "noise_scale",
                 "early_bird")


def _context():
  context = {name: getattr(FLAGS, name) for name in CONTEXT_FLAGS}
  # Recorded only when not what runs written before them had.
  if FLAGS.noise_on != "prunable":
    context["noise_on"] = FLAGS.noise_on
  if models_lib.revision(FLAGS.model) != 1:
    context["model_revision"] = models_lib.revision(FLAGS.model)
  if FLAGS.early_bird:
    context.update(early_bird_epsilon=FLAGS.early_bird_epsilon,
                   early_bird_sparsity=1 - (1 - FLAGS.prune_rate) ** FLAGS.rounds)
  return context


def _config(rewind_step):
  """The run's LotteryConfig (the early-bird run's: one round), or a UsageError."""
  try:
    return lottery.LotteryConfig(
        rounds=1 if FLAGS.early_bird else FLAGS.rounds, prune_rate=FLAGS.prune_rate,
        prune_rate_output=FLAGS.prune_rate_output if FLAGS.scope == "layer" else None,
        scope=FLAGS.scope, criterion=common.make_criterion(), rewind_step=rewind_step,
        modes=tuple(FLAGS.reinit), epochs=FLAGS.epochs, eval_every=FLAGS.eval_every,
        seed=FLAGS.seed)
  except ValueError as e:
    raise common.UsageError(str(e)) from None


def _init_mask():
  if not FLAGS.init_mask_from:
    return None
  try:
    return lottery.load_masks(FLAGS.init_mask_from)
  except ValueError as e:
    raise common.UsageError(f"--init_mask_from: {e}") from None


def validate():
  common.validate_common()
  if not FLAGS.output_dir:
    raise common.UsageError("--output_dir is required.")
  if getattr(FLAGS, "overwrite", False):
    raise common.UsageError("--overwrite is not supported here: a lottery run is resumed or "
                            "extended in place (--resume); choose another --output_dir to "
                            "start over.")
  if FLAGS.criterion not in criteria_lib.CRITERIA:
    raise common.UsageError(f"--criterion must be one of {sorted(criteria_lib.CRITERIA)} here.")
  bad = [m for m in FLAGS.reinit if m not in reinit_lib.MODES]
  if bad or not FLAGS.reinit:
    raise common.UsageError(f"--reinit={','.join(FLAGS.reinit)}: expected a list of "
                            f"{list(reinit_lib.MODES)}.")
  if FLAGS.rounds < (1 if FLAGS.early_bird else 0):
    raise common.UsageError(f"--rounds={FLAGS.rounds} must be >= "
                            f"{1 if FLAGS.early_bird else 0}"
                            f"{' with --early_bird' * FLAGS.early_bird}.")
  if not 0 < FLAGS.early_bird_epsilon <= 1:
    raise common.UsageError(f"--early_bird_epsilon={FLAGS.early_bird_epsilon} must be in (0, 1].")
  if FLAGS.validation_examples < 1:
    raise common.UsageError(f"--validation_examples={FLAGS.validation_examples} must be >= 1.")
  if FLAGS.init_mask_from and not os.path.exists(FLAGS.init_mask_from):
    raise common.UsageError(f"--init_mask_from={FLAGS.init_mask_from}: no such file.")
  if not FLAGS.resume and os.path.exists(os.path.join(FLAGS.output_dir, "results.json")):
    raise common.UsageError(f"{FLAGS.output_dir} holds a run; pass --resume to continue it, "
                            "or choose another --output_dir.")
  step = FLAGS.rewind_step
  rewind_step = int(step) if step.isdigit() else step
  try:  # the directory, before any data is loaded: a user's, a file, another configuration
    lottery.check_output_dir(_config(rewind_step), FLAGS.output_dir, _init_mask(), _context())
  except lottery.OutputDirError as e:
    raise common.UsageError(str(e)) from None
  return rewind_step


def _table(results):
  lines = [f"{'mode':16s} {'round':>5s} {'remaining%':>10s} {'test acc':>9s} "
           f"{'ES step':>8s} {'ES acc':>7s} {'supermask':>9s} {'flips':>8s}"]
  for r in results:
    es_acc = r["early_stop_test_accuracy"]
    lines.append(f"{r['mode']:16s} {r['round']:5d} {r['weights_remaining_pct']:10.2f} "
                 f"{r['test_accuracy']:9.4f} {str(r['early_stop_step']):>8s} "
                 f"{(f'{es_acc:.4f}' if es_acc is not None else '-'):>7s} "
                 f"{r['supermask_accuracy']:9.4f} {r['flips']:8d}")
  return "\n".join(lines)


class EpochLog(keras.callbacks.Callback):
  """The binary's line per epoch of a round: loss, accuracy, time (each round then ends
  with `lottery.run`'s line)."""

  def __init__(self, round_index):
    super().__init__()
    self.round_index = round_index

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    print(f"round {self.round_index} epoch {epoch + 1}/{FLAGS.epochs}: loss "
          f"{logs.get('loss', float('nan')):.4f} accuracy {logs.get('accuracy', float('nan')):.4f} "
          f"({time.time() - self._start:.1f}s)", flush=True)


def run_lottery(rewind_step):
  tf.config.experimental.enable_op_determinism()
  data, train_size = common.load_data()
  val_n = min(FLAGS.validation_examples, train_size // 5)
  train_n = train_size - val_n
  train_all = data.train.take(train_size).cache()
  val = data_lib.pipeline(train_all.take(val_n), 500)
  train_part = train_all.skip(val_n).take(train_n).cache()
  test = data_lib.pipeline(data.test, 500, take=FLAGS.test_examples)

  def train_data(round_index, epoch):
    return data_lib.pipeline(train_part, FLAGS.batch_size, cache=False,
                             shuffle_seed=FLAGS.seed * 100_000 + round_index * 100 + epoch)

  def make_model():
    return models_lib.get(FLAGS.model)(data.input_shape, data.num_classes)

  def compile_model(model):
    model.compile(common.make_optimizer(),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

  def epoch_lines(round_index):  # the bar (on a terminal) is erased before the line
    return console.progress_bar(
        keras.callbacks.Callback, -(-train_n // FLAGS.batch_size),
        lambda e: f"round {round_index} epoch {e + 1}/{FLAGS.epochs}") + [EpochLog(round_index)]

  config = _config(rewind_step)
  init_mask, context = _init_mask(), _context()
  files = lottery.RunFiles(FLAGS.output_dir)

  if FLAGS.early_bird:
    recorded = lottery.read_config(FLAGS.output_dir)
    if recorded is None or recorded["config"]["rounds"] == 0:  # round 0 not yet followed
      target = 1 - (1 - FLAGS.prune_rate) ** FLAGS.rounds
      bird = early_bird_lib.EarlyBird(target, config.criterion, epsilon=FLAGS.early_bird_epsilon)
      dense = dataclasses.replace(config, rounds=0)
      lottery.run(make_model, compile_model, train_data, val, test, dense, FLAGS.output_dir,
                  init_mask, extra_callbacks=lambda r: [bird] + epoch_lines(r), context=context)
      if not os.path.exists(files.masks(1)):
        if bird.mask is None:
          raise common.UsageError(
              "The early-bird rule did not hold within --epochs; raise --epochs or "
              "--early_bird_epsilon.")
        lottery.save_masks(files.masks(1), list(bird.mask.values()))
        common.dump_json({"early_bird_epoch": bird.epoch, "distances": bird.distances},
                         os.path.join(FLAGS.output_dir, "early_bird.json"))
    elif not os.path.exists(files.masks(1)):
      raise common.UsageError(
          f"{files.masks(1)}, the early-bird ticket, is missing; it is drawn only while round "
          "0 trains. Choose another --output_dir to draw it again.")
  results = lottery.run(make_model, compile_model, train_data, val, test, config,
                        FLAGS.output_dir, init_mask, extra_callbacks=epoch_lines, context=context)
  lottery.plot(results, lottery.RunFiles(FLAGS.output_dir),
               title=f"{FLAGS.model} / {FLAGS.dataset} ({FLAGS.criterion}, {FLAGS.scope})")
  print(_table(results))
  print(f"Results: {lottery.RunFiles(FLAGS.output_dir).results_csv}; plots: "
        f"{lottery.RunFiles(FLAGS.output_dir).plot_accuracy}")
  return results


def main(argv):
  del argv
  # `lottery.run` sets each round's masks itself under a schedule that never prunes,
  # fitting one epoch a call: the library's warning about the schedule is moot here.
  warnings.filterwarnings("ignore", category=schedule_checks.ScheduleWarning)
  console.configure_logging()
  try:
    rewind_step = validate()
  except common.UsageError as e:
    common.fail("lottery_ticket.py", e)
  try:
    run_lottery(rewind_step)
  except (common.UsageError, lottery.OutputDirError) as e:
    common.fail("lottery_ticket.py", e)


if __name__ == "__main__":
  app.run(main)
