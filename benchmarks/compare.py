r"""Is the flip term worth pruning by? One command, paired seeds, confidence intervals.

Every run prunes with FlipOut's schedule (`keras_signflip.flipout`: 50% of
the remaining weights at m evenly spaced events, the last capped at the
target, recovery epochs after it) -- the same schedule, steps, data order and
learning-rate schedule for every one-shot method, so the methods differ in
their ranking and gradient noise only. The flip term is isolated by a 2 x 2
ablation:

                      no gradient noise     FlipOut's gradient noise
  |w|  (no flips)     magnitude             magnitude_noise
  |w|^2/(flips+1)     hybrid                flipout

Other methods: `dense`; `tfmot` (TF-MOT prune_low_magnitude, per layer, the
same schedule); `random` (global); `recent_flips` (RecentFlips: fewest flips
since the last event kept, then largest |w|); `flip_triggered` (RecentFlips
with min_flips: only weights that flipped >= --min_flips times since the last
event are pruned, at most the schedule's amount, so the sparsity emerges);
`lottery` (iterative global magnitude pruning with rewinding to initialisation,
each round as long as a one-shot run, rounds landing exactly on 50, 75, 90, 95,
98, 99, 99.5, 99.8, 99.9%) and
`lottery_matched` (the same, with all rounds together as long as one
one-shot run).

Peer methods (issues 15 and 16; the plan's last block), same steps and
optimizer: `saliency` and `movement_score` (gradient criteria, FlipOut's
schedule), `snip` (pruned at initialisation, static after), `set` and `rigl`
(random sparse start per layer, drop and regrow 30% every quarter epoch until
3/4 of training; RigL's fraction cosine-decayed), `targeted_dropout` (rate 0.5,
the target as its targeted fraction, then stripped).

Regularisers (issue 15), in the Adam regime: `variational` (sparse variational
dropout, KL warm-up over the first 30%), `l0` (hard-concrete gates) and `hoyer`
(Hoyer-Square). Their sparsity is not set: `--calibrate` trains each at every
strength of STRENGTHS (seed 0) and records the natural sparsity it reached;
a grid run at a target takes the strength whose natural sparsity lay nearest,
trains, and is cut to the target by the method's own score (no further steps).

Regimes: `flipout` (SGD 0.1, momentum 0.9, coupled weight decay 5e-4, x0.1
at 3/7 and 5/7 of training, FlipOut's) and `adam` (Adam 1.2e-3, constant).

Each run writes one raw JSON under --output_dir/raw (a finished run is never
redone: an interrupted grid resumes); the report (BENCHMARKS.md, plots) is
written from those files only. Per model, regime and target the table gives
mean ± std over seeds and, per seed paired with `magnitude`, the mean
difference with its 95% t confidence interval.

    python -m benchmarks.compare --quick      # < 5 minutes on 2 cores
    python -m benchmarks.compare --calibrate  # the regularisers' strength sweep
    python -m benchmarks.compare              # the grid below
"""
import datetime
import json
import math
import os
import platform
import sys
import time
import warnings

from absl import app, flags, logging

import numpy as np

import keras_signflip as ksf
from keras_signflip import schedule_checks
from keras_signflip import data as data_lib
from keras_signflip import flipout
from keras_signflip import models as models_lib
from keras_signflip.lottery import loop as lottery
from keras_signflip.tf_keras._framework import keras, tf, tfmot

from benchmarks import results_io, studies
from benchmarks.analysis import (ABLATION, GRADIENT, METHODS, PEERS, REGULARIZERS, SPARSE_START,
                                 aggregate, answer, ci_text, erk_start, flip_term, lottery_rounds,
                                 ticket_at)

REGIMES = ("flipout", "adam")

# The default grid, most important block first (an interrupted grid has the
# answer's runs before the rest). LeNet-5 gets the ablation only: its runs
# cost 1.6x LeNet-300-100's and the 4-hour budget does not fit more.
PLAN = (
    ("lenet_300_100", "flipout", ABLATION + ("dense",)),
    ("lenet_300_100", "flipout", ("tfmot", "random", "recent_flips", "flip_triggered",
                                  "lottery_matched", "lottery")),
    ("lenet_300_100", "adam", ABLATION + ("dense",)),
    ("lenet5", "flipout", ABLATION + ("dense",)),
    # Peer methods (issues 15 and 16) at the same budget, after the answer's runs.
    ("lenet_300_100", "flipout", PEERS),
    # The regularisers (issue 15) in the Adam regime, the optimizer of their papers
    # (FlipOut's coupled weight decay would pull log sigma^2 and the gates' log alpha
    # to 0); --calibrate first chooses each one's strength per target.
    ("lenet_300_100", "adam", REGULARIZERS),
    ("lenet5", "adam", ("magnitude",) + REGULARIZERS),
)

# The calibration sweep of each regulariser's strength (seed 0). Variational
# dropout and L0: multiples of 1 / training examples (the papers' per-example
# weights of the KL term and of lambda); Hoyer-Square: as is.
STRENGTHS = {
    "variational": (0.3, 1.0, 3.0, 10.0, 30.0),
    "l0": (1.0, 3.0, 10.0, 30.0, 100.0),
    "hoyer": (3e-6, 3e-5, 3e-4, 3e-3, 3e-2),
}
HOYER_THRESHOLD = 1e-3  # |w| below it counts as pruned in Hoyer's own (natural) sparsity
KL_WARMUP = 0.3  # variational dropout: the KL weight ramps up over this fraction of training

flags.DEFINE_bool("quick", False, "LeNet-300-100, FlipOut's regime, the 2x2 ablation at 90 and "
                  "99.8%, two seeds, 2 epochs of 12k examples (< 5 minutes).")
flags.DEFINE_list("models", None, "Only these models (default: the plan's).")
flags.DEFINE_list("regimes", None, f"Only these regimes, of {list(REGIMES)}.")
flags.DEFINE_list("methods", None, f"Only these methods, of {list(METHODS)}.")
flags.DEFINE_list("sparsities", ["0.9", "0.98", "0.995", "0.998", "0.999"], "Target sparsities.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (paired across methods).")
flags.DEFINE_integer("epochs", 10, "Epochs of a one-shot run (and of a lottery round).")
flags.DEFINE_integer("train_examples", 55000, "Training examples (the rest of the 60k "
                     "training set, 5k, is the lottery's validation set).")
flags.DEFINE_integer("test_examples", 10000, "Test examples.")
flags.DEFINE_integer("min_flips", 1, "flip_triggered's threshold: flips since the last event.")
flags.DEFINE_string("output_dir", None, "Raw results and plots; default "
                    "benchmarks/results/quick or benchmarks/results/grid.")
flags.DEFINE_string("shard", "0/1", "i/n: run only the jobs whose hash is i modulo n, so n "
                    "processes share a grid (on 2 cores, two single-threaded processes "
                    "finish it sooner than one).")


def _check_shard(text):
  try:
    results_io.parse_shard(text)
  except ValueError as e:
    raise flags.ValidationError(str(e)) from None
  return True


flags.register_validator("shard", _check_shard)
flags.DEFINE_bool("calibrate", False, "Run the regularisers' strength sweep (STRENGTHS, seed 0) "
                  "for the plan's regulariser blocks; their grid runs need it first.")
flags.DEFINE_bool("report_only", False, "Regenerate the report from the raw results only.")
flags.DEFINE_enum("noise_on", "prunable", list(flipout.NOISE_ON),
                  "Which gradients FlipOut's noise reaches: the pruned kernels (the studies' "
                  "setting) or every trainable variable (FlipOut's published runs).")
flags.DEFINE_string("report", "BENCHMARKS.md", "The generated report.")
flags.DEFINE_bool("write_report", True, "Write the report when the runs end (shards of one "
                  "grid leave it to a final --report_only).")
flags.DEFINE_string("idx_dir", data_lib.DEFAULT_IDX_DIR, "Fashion-MNIST IDX files.")
FLAGS = flags.FLAGS

BATCH = 128
ADAM_LR = 1.2e-3


def _apply_quick():
  if FLAGS.output_dir is None:
    FLAGS.output_dir = os.path.join("benchmarks", "results", "quick" if FLAGS.quick else "grid")
  if FLAGS.quick:  # the reduced grid, except where a flag was given
    quick = {"models": ["lenet_300_100"], "regimes": ["flipout"], "methods": list(ABLATION),
             "sparsities": ["0.9", "0.998"], "seeds": ["0", "1"], "epochs": 2,
             "train_examples": 12000, "test_examples": 2000}
    for name, value in quick.items():
      if not FLAGS[name].present:
        setattr(FLAGS, name, value)


class _FlipHistory(keras.callbacks.Callback):
  """Per epoch and wrapped weight: flips of currently unpruned weights.

  Carries over between the one-epoch `fit` calls of one run (it resets only
  for another model), so every epoch gets its own row.
  """

  def __init__(self):
    super().__init__()
    self.epochs, self._last, self._model_id = [], {}, None

  def on_train_begin(self, logs=None):
    if self._model_id != id(self.model):
      self.epochs, self._last, self._model_id = [], {}, id(self.model)

  def on_epoch_end(self, epoch, logs=None):
    row = {}
    for s in ksf.flip_states(self.model):
      count, alive = s.flips.numpy(), s.mask.numpy() > 0
      prev = self._last.get(s.weight.name, np.zeros_like(count))
      row[s.weight.name.split(":")[0]] = int((count - prev)[alive].sum())
      self._last[s.weight.name] = count
    self.epochs.append(row)


def _optimizer(regime, epochs, steps_per_epoch, noise, seed):
  if regime == "flipout":
    return flipout.optimizer(epochs, steps_per_epoch, noise=flipout.NOISE if noise else 0,
                             seed=seed, noise_on=FLAGS.noise_on)
  adam = keras.optimizers.Adam(ADAM_LR)
  return ksf.tf_keras.with_gradient_noise(adam, flipout.NOISE, seed=seed,
                                          noise_on=FLAGS.noise_on) if noise else adam


def _compile(model, optimizer):
  model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])


def _wrap(method, model, sparsity, epochs, steps_per_epoch, seed, criterion=None):
  """The pruned model of a one-shot method: FlipOut's schedule for all
  (`criterion`, when given, ranks instead of the method's own)."""
  kwargs = flipout.prune_kwargs(sparsity, epochs, steps_per_epoch)
  if method == "tfmot":
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=kwargs["pruning_schedule"])
    return wrapped, tfmot.sparsity.keras.UpdatePruningStep()
  if criterion is None:
    criterion = {"magnitude": lambda: "magnitude", "magnitude_noise": lambda: "magnitude",
                 "hybrid": lambda: kwargs["criterion"], "flipout": lambda: kwargs["criterion"],
                 "random": lambda: ksf.criteria.Random(seed),
                 "recent_flips": ksf.criteria.RecentFlips,
                 "flip_triggered": ksf.criteria.RecentFlips,
                 "saliency": ksf.criteria.Saliency,
                 "movement_score": ksf.criteria.MovementScore}[method]()
  return ksf.prune_sign_flip(
      model, pruning_schedule=kwargs["pruning_schedule"], criterion=criterion, scope="global",
      min_flips=FLAGS.min_flips if method == "flip_triggered" else None), ksf.UpdatePruningStep()


def _sparse_start(method, model, data, sparsity, seed):
  """SNIP, SET and RigL start sparse: masks at `sparsity` before the first step
  (SNIP: its sensitivities on 10 batches; SET/RigL: random) and no schedule
  pruning after; SET/RigL then drop and regrow 30% (RigL: cosine-decayed) every
  quarter epoch until 3/4 of training. Plain: SNIP ranks all layers together,
  SET/RigL give every layer `sparsity`; "_erk": every layer its ERK sparsity
  (the model's total still `sparsity`), SNIP ranking inside each layer."""
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  base, erk = method.removesuffix("_erk"), method.endswith("_erk")
  distribution = "erk" if erk else None
  if base == "snip":
    model = ksf.prune_sign_flip(model, criterion="magnitude", scope="layer" if erk else "global",
                                sparsity_distribution=distribution,
                                pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                                    sparsity, begin_step=2**40))
    batches = data["train"](seed, 0).take(10)
    if erk:
      _snip_per_layer(model, batches, loss)
    else:
      ksf.snip(model, batches, sparsity, loss, batches=10)
    return model, [ksf.UpdatePruningStep()]
  model = ksf.prune_sign_flip(model, criterion=ksf.criteria.Random(seed),
                              sparsity_distribution=distribution,
                              pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                                  sparsity, begin_step=0, end_step=1, frequency=1))
  total = FLAGS.epochs * data["steps_per_epoch"]
  dynamic = ksf.DynamicSparsity(
      base, fraction=0.3, frequency=max(data["steps_per_epoch"] // 4, 1),
      end_step=max(int(0.75 * total), 2), data=data["train"](seed + 17, 0).repeat(), loss=loss,
      seed=seed)
  return model, [ksf.UpdatePruningStep(), dynamic]


def _snip_per_layer(model, batches, loss):
  """SNIP's |w * g| (10 batches) ranked inside each wrapped layer, each kept at its own
  schedule's sparsity (its ERK share), ties by |w|, as `ksf.snip` ranks globally."""
  # pylint: disable=g-import-not-at-top
  from keras_signflip.tf_keras.dynamic import set_masks
  from keras_signflip.tf_keras.schedules import max_sparsity
  from keras_signflip.tf_keras.selection import kept_count, select_top_k
  from keras_signflip.tf_keras.snip import sensitivities
  from keras_signflip.tf_keras.state import float32_value
  scores = sensitivities(model, batches, loss, batches=10)
  chosen = []
  for wrapper in ksf.collect_wrappers(model):
    target = max_sparsity(wrapper.pruning_schedule)
    for s in wrapper.flip_states:
      keep = select_top_k([tf.constant(scores[s.weight.name], tf.float32)],
                          kept_count(int(np.prod(s.weight.shape)), target),
                          [tf.abs(float32_value(s.weight))])[0]
      chosen.append((s, keep.numpy(), np.zeros(keep.shape, bool)))
  set_masks(chosen, getattr(model, "optimizer", None))


def _kernel_sparsity(model):
  kernels = [l.kernel.numpy() for l in model.submodules if hasattr(l, "kernel")]
  return sum(int((k == 0).sum()) for k in kernels) / max(sum(k.size for k in kernels), 1)


def run_one_shot(method, regime, builder, data, sparsity, seed, criterion=None):
  """One training run of `dense`, a one-shot method or a peer method; `criterion`
  (a `ksf.criteria.Criterion`) replaces a one-shot method's ranking (e.g. a variant's)."""
  keras.utils.set_random_seed(seed)
  model = builder()
  steps_per_epoch = data["steps_per_epoch"]
  callbacks = [_FlipHistory()]
  if method == "targeted_dropout":  # candidates: the `sparsity` smallest of each unit
    model = ksf.tf_keras.targeted_dropout.targeted_dropout(model, 0.5, sparsity, seed)
  elif method in SPARSE_START:
    model, extra = _sparse_start(method, model, data, sparsity, seed)
    callbacks += extra
  elif method != "dense":
    model, update = _wrap(method, model, sparsity, FLAGS.epochs, steps_per_epoch, seed, criterion)
    callbacks.append(update)
  noise = method in ("magnitude_noise", "flipout")
  optimizer = _optimizer(regime, FLAGS.epochs, steps_per_epoch, noise, seed)
  if method in GRADIENT and not ksf.tf_keras.noise.records_gradients(optimizer):
    optimizer = ksf.record_gradients(optimizer)
  _compile(model, optimizer)
  start = time.time()
  for epoch in range(FLAGS.epochs):
    model.fit(data["train"](seed, epoch), epochs=epoch + 1, initial_epoch=epoch, verbose=0,
              callbacks=callbacks)
  events = ([] if method == "dense" or method in SPARSE_START + ("targeted_dropout",)
            else flipout.event_steps(sparsity, FLAGS.epochs, steps_per_epoch))
  steps = int(model.optimizer.iterations.numpy())
  if method == "targeted_dropout":
    model = ksf.tf_keras.targeted_dropout.strip(model)
    _compile(model, "sgd")
    achieved = _kernel_sparsity(model)
  else:
    achieved = 0.0 if method == "dense" else ksf.sparsity_report(model)["overall"]
  test_loss, test_accuracy = model.evaluate(data["test"], verbose=0)[:2]
  out = {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
         # The validation split (held out of training): what a choice may read.
         "val_accuracy": float(model.evaluate(data["val"], verbose=0)[1]),
         "sparsity": achieved, "steps": steps, "event_steps": events,
         "wall_seconds": time.time() - start, "flips_per_epoch": callbacks[0].epochs}
  if method in ("set", "rigl", "set_erk", "rigl_erk"):
    out["regrown"] = callbacks[-1].regrown
  return out


def _regularized(method, model, strength, data, seed):
  """The model under the method's penalty, and its callbacks."""
  scale = 1.0 if method == "hoyer" else 1.0 / data["train_examples"]
  if method == "variational":
    total = FLAGS.epochs * data["steps_per_epoch"]
    return (ksf.tf_keras.variational.variational_dropout(model, strength * scale, seed),
            [ksf.tf_keras.variational.KLWarmup(max(int(KL_WARMUP * total), 1))])
  if method == "l0":
    return ksf.tf_keras.l0.l0_gates(model, strength * scale, seed=seed), []
  ksf.tf_keras.hoyer.add_hoyer_square(model, strength)
  return model, []


def _final_kernels(method, model):
  """(plain model, [(kernel variable, score, value)], natural sparsity): the
  method's test-time model, and per kernel its ranking score and kept value.
  Variational dropout: score -log alpha, value theta, natural = log alpha >= 3;
  L0: value theta * z_test, score |value|, natural = z_test == 0; Hoyer-Square:
  value w, score |w|, natural = |w| < HOYER_THRESHOLD."""
  if method == "hoyer":
    plain = model
    kernels = [l.kernel for l in model.layers if hasattr(l, "kernel")]
    parts = [(k, np.abs(k.numpy()), k.numpy()) for k in kernels]
    pruned = sum(int((np.abs(v) < HOYER_THRESHOLD).sum()) for _, _, v in parts)
  else:
    module = ksf.tf_keras.variational if method == "variational" else ksf.tf_keras.l0
    wrapper_class = module.VariationalDropout if method == "variational" else module.L0Gate
    wrappers = [l for l in model.layers if isinstance(l, wrapper_class)]
    plain = module.strip(model)
    kernels = [l.kernel for l in plain.layers if hasattr(l, "kernel")]
    parts, pruned = [], 0
    for w, k in zip(wrappers, kernels):
      theta = w.layer.kernel.numpy()
      if method == "variational":
        log_alpha = w.log_alpha().numpy()
        parts.append((k, -log_alpha, theta))
        pruned += int((log_alpha >= w.threshold).sum())
      else:
        value = theta * w.gates(False).numpy()
        parts.append((k, np.abs(value), value))
        pruned += int((value == 0).sum())
  return plain, parts, pruned / sum(v.size for _, _, v in parts)


def _cut(parts, target):
  """Keeps the round(n * (1 - target)) highest scores of all kernels together
  (ties by position), zeroing the rest; returns the sparsity reached."""
  scores = np.concatenate([score.ravel() for _, score, _ in parts])
  keep = np.zeros(scores.size, bool)
  keep[np.argsort(-scores, kind="stable")[:max(int(round(scores.size * (1 - target))), 1)]] = True
  start = 0
  for kernel, _, value in parts:
    kept = keep[start:start + value.size].reshape(value.shape)
    kernel.assign(np.where(kept, value, 0).astype(np.float32))
    start += value.size
  return 1 - float(np.mean(np.concatenate([k.numpy().ravel() for k, _, _ in parts]) != 0))


def run_regularizer(method, regime, builder, data, target, seed, strength):
  """Trains under the penalty at `strength`, then reports the method's own
  test-time model (natural sparsity and accuracy) and the model cut to
  `target` by the method's score (no further training: the same budget)."""
  keras.utils.set_random_seed(seed)
  model, callbacks = _regularized(method, builder(), strength, data, seed)
  _compile(model, _optimizer(regime, FLAGS.epochs, data["steps_per_epoch"], False, seed))
  start = time.time()
  for epoch in range(FLAGS.epochs):
    model.fit(data["train"](seed, epoch), epochs=epoch + 1, initial_epoch=epoch, verbose=0,
              callbacks=callbacks)
  steps = int(model.optimizer.iterations.numpy())
  plain, parts, natural = _final_kernels(method, model)
  if method == "hoyer":  # the paper's trimming at the threshold
    for kernel, _, value in parts:
      kernel.assign(np.where(np.abs(value) < HOYER_THRESHOLD, 0, value).astype(np.float32))
  else:
    _compile(plain, "sgd")
  out = {"strength": strength, "natural_sparsity": natural,
         "natural_accuracy": float(plain.evaluate(data["test"], verbose=0)[1]),
         "steps": steps, "event_steps": [], "wall_seconds": time.time() - start,
         "flips_per_epoch": []}
  if target is not None:
    out["sparsity"] = _cut(parts, target)
    out["test_accuracy"] = float(plain.evaluate(data["test"], verbose=0)[1])
  return out


def _calibration_path(model, regime, method, strength):
  return os.path.join(FLAGS.output_dir, "calibration",
                      f"{model}__{regime}__{method}__{strength:g}.json")


def calibration_jobs():
  return [(model, regime, method, strength) for model, regime, methods in PLAN
          for method in methods if method in REGULARIZERS
          if not (FLAGS.models and model not in FLAGS.models)
          and not (FLAGS.methods and method not in FLAGS.methods)
          for strength in STRENGTHS[method]]


def strength_for(model, regime, method, target):
  """The swept strength whose natural sparsity lies nearest `target` on a log(1 - s)
  scale. L0's cut cannot bring back a weight its gate shut (its value is 0), so
  for L0 only strengths that stopped at or below the target count (if any did)."""
  found = []
  for strength in STRENGTHS[method]:
    path = _calibration_path(model, regime, method, strength)
    if os.path.exists(path):
      natural = min(json.load(open(path))["natural_sparsity"], 1 - 1e-6)
      found.append((abs(math.log(1 - natural) - math.log(1 - target)), strength, natural))
  if len(found) < len(STRENGTHS[method]):
    raise ValueError(f"{model} {regime} {method}: the strength sweep is incomplete; run "
                     "python -m benchmarks.compare --calibrate first.")
  if method == "l0" and any(natural <= target for _, _, natural in found):
    found = [f for f in found if f[2] <= target]
  return min(found)[1]


def run_calibration(data):
  shard, shards = results_io.parse_shard(FLAGS.shard)
  todo = results_io.shard_jobs(calibration_jobs(), shard, shards,
                              lambda j: os.path.exists(_calibration_path(*j)))
  for i, (model_name, regime, method, strength) in enumerate(todo):
    print(f"[calibration {i + 1}/{len(todo)}] {model_name} {regime} {method} {strength:g}",
          flush=True)
    builder = lambda m=model_name: models_lib.get(m)(data["input_shape"], data["classes"])  # noqa: E731
    result = run_regularizer(method, regime, builder, data, None, 0, strength)
    results_io.write_json(_calibration_path(model_name, regime, method, strength),
                          dict(result, model=model_name, regime=regime, method=method))


def _lottery_rounds(sparsity=None):
  return lottery_rounds(max(float(s) for s in FLAGS.sparsities) if sparsity is None else sparsity)


def run_lottery(regime, builder, data, seed, output_dir, sparsity=None, mode="rewind",
                criterion="magnitude", extra_callbacks=lambda r: []):
  """Iterative magnitude pruning with rewinding to initialisation; returns the
  round rows. `sparsity` None: rounds of FLAGS.epochs each, up to the largest
  target; else the step-matched chain to `sparsity`: its R + 1 rounds share
  one one-shot run's steps, floor(steps / (R + 1)) each. `mode="lr_rewind"`:
  learning-rate rewinding (each round goes on from the last one's weights, its
  learning rate from the start); `criterion` ranks the weights between rounds."""
  rounds = _lottery_rounds(sparsity)
  per_epoch = data["steps_per_epoch"]
  if sparsity is None:
    epochs, steps = FLAGS.epochs, per_epoch
    train = lambda r, e: data["train"](seed * 1000 + r, e)  # noqa: E731
  else:  # one "epoch" of `steps` batches per round
    epochs, steps = 1, (FLAGS.epochs * per_epoch) // (len(rounds) + 1)
    train = lambda r, e: data["train"](seed * 1000 + r, e).repeat().take(steps)  # noqa: E731
  config = lottery.LotteryConfig(round_sparsities=rounds, scope="global",
                                 criterion=criterion, epochs=epochs, seed=seed,
                                 eval_every=steps * epochs, modes=(mode,))
  compile_fn = lambda m: _compile(m, _optimizer(regime, epochs, steps, False, seed))  # noqa: E731
  return lottery.run(builder, compile_fn, train, data["val"], data["test"], config, output_dir,
                     log=lambda *a: None, extra_callbacks=extra_callbacks)


def _load_data():
  source = ("idx" if os.path.exists(os.path.join(FLAGS.idx_dir, "train-images-idx3-ubyte.gz"))
            else "auto")
  d = data_lib.load("fashion_mnist", source, FLAGS.idx_dir, log=lambda *a: None)
  n = min(FLAGS.train_examples, d.train_size - 5000)
  train = d.train.skip(5000).take(n).cache()
  return {
      "train": lambda seed, epoch: data_lib.pipeline(train, BATCH, cache=False,
                                                     shuffle_seed=seed * 100 + epoch),
      "val": data_lib.pipeline(d.train.take(5000), 1000),
      "test": data_lib.pipeline(d.test, 1000, take=FLAGS.test_examples),
      "steps_per_epoch": math.ceil(n / BATCH), "train_examples": n,
      "source": d.source, "input_shape": d.input_shape, "classes": d.num_classes,
  }


def _raw_path(model, regime, method, sparsity, seed):
  return os.path.join(FLAGS.output_dir, "raw",
                      f"{model}__{regime}__{method}__{float(sparsity):g}__{seed}.json")


def jobs():
  """(model, regime, method, sparsity, seed) of the plan, filtered by the flags,
  in the plan's order: block, then seed, then method, then sparsity."""
  out = []
  for model, regime, methods in PLAN:
    if ((FLAGS.models and model not in FLAGS.models)
        or (FLAGS.regimes and regime not in FLAGS.regimes)):
      continue
    for seed in (int(s) for s in FLAGS.seeds):
      for method in methods:
        if FLAGS.methods and method not in FLAGS.methods:
          continue
        targets = ["0"] if method in ("dense", "lottery") else FLAGS.sparsities
        out += [(model, regime, method, float(s), seed) for s in targets]
  return out


def _finished(model_name, regime, method, s, seed):
  """Whether the job's raw result exists (a lottery chain: all its targets; a
  regulariser: at the strength its sweep now chooses, so a wider sweep reruns it)."""
  if method == "lottery":  # one chain serves every target
    return all(os.path.exists(_raw_path(model_name, regime, method, t, seed))
               for t in FLAGS.sparsities)
  path = _raw_path(model_name, regime, method, s, seed)
  if method in REGULARIZERS and os.path.exists(path):
    try:
      return json.load(open(path))["strength"] == strength_for(model_name, regime, method, s)
    except ValueError:  # the sweep is incomplete: keep what is there
      return True
  return os.path.exists(path)


def _write_unless_only_the_date_moved(path, text):
  """Writes the report, unless the one on disk differs from it in its Date line alone:
  regenerating an unchanged report then leaves no diff."""
  undated = lambda t: [line for line in t.splitlines() if not line.startswith("- Date: ")]  # noqa: E731
  if os.path.exists(path):
    with open(path) as f:
      if undated(f.read()) == undated(text):
        return
  results_io.write_text(path, text)


def run_grid(data):
  """Runs every missing job, printing progress; returns nothing."""
  shard, shards = results_io.parse_shard(FLAGS.shard)
  every = jobs()
  done = sum(_finished(*job) for job in every)
  todo = results_io.shard_jobs(every, shard, shards, lambda job: _finished(*job))
  started = time.time()
  for i, (model_name, regime, method, s, seed) in enumerate(todo):
    if _finished(model_name, regime, method, s, seed):  # a lottery chain wrote it
      continue
    builder = lambda m=model_name: models_lib.get(m)(data["input_shape"], data["classes"])  # noqa: E731
    print(f"[{i + 1}/{len(todo)}, {done} done before, {time.time() - started:.0f} s] "
          f"{model_name} {regime} {method} {s:g} seed {seed}", flush=True)
    meta = dict(model=model_name, regime=regime, method=method, seed=seed,
                epochs=FLAGS.epochs, train_examples=data["train_examples"], batch=BATCH)
    if method in ("lottery", "lottery_matched"):
      start = time.time()
      name = f"{model_name}__{regime}__{method}__{s:g}__{seed}"
      rows = run_lottery(regime, builder, data, seed,
                         os.path.join(FLAGS.output_dir, "lottery", name),
                         sparsity=None if method == "lottery" else s)
      targets = FLAGS.sparsities if method == "lottery" else [s]
      for t in targets:
        result = ticket_at(rows, float(t))
        if result is not None:
          result["wall_seconds"] = time.time() - start
          results_io.write_row(_raw_path(model_name, regime, method, t, seed),
                                dict(result, target=float(t), **meta))
      continue
    if method in REGULARIZERS:
      try:
        strength = strength_for(model_name, regime, method, s)
      except ValueError as e:
        print(f"  skipped: {e}", flush=True)
        continue
      result = run_regularizer(method, regime, builder, data, s, seed, strength)
    else:
      result = run_one_shot(method, regime, builder, data, s, seed)
    results_io.write_row(_raw_path(model_name, regime, method, s, seed),
                          dict(result, target=s, **meta))


load_raw = results_io.read_raw


def _save(fig, output_dir, name):
  """Writes `fig` as output_dir/name (PNG), closes it, returns the path."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  path = os.path.join(output_dir, name)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plots(rows, agg, output_dir):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  files = []
  for model, regime in sorted({k[:2] for k in agg}):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
      pts = sorted((k[2], v) for k, v in agg.items() if k[:2] == (model, regime) and k[3] == method)
      if not pts or method == "dense":
        continue
      ax.errorbar([100 * (1 - v["sparsity"]) for _, v in pts],
                  [100 * v["accuracy_mean"] for _, v in pts],
                  yerr=[100 * v["accuracy_std"] for _, v in pts], marker="o", capsize=2,
                  label=method)
    dense = [v for k, v in agg.items() if k[:2] == (model, regime) and k[3] == "dense"]
    if dense:
      ax.axhline(100 * dense[0]["accuracy_mean"], color="k", linestyle=":", label="dense")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("% of weights remaining")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{model}, {regime} regime, Fashion-MNIST (mean ± std over seeds)")
    files.append(_save(fig, output_dir, f"{model}_{regime}_accuracy.png"))
    runs = sorted((r for r in rows if r["model"] == model and r["regime"] == regime
                   and r["method"] in ("flipout", "hybrid") and r.get("flips_per_epoch")),
                  key=lambda r: (r["method"] != "flipout", -r["target"], r["seed"]))
    if runs:
      r = runs[0]
      fig, ax = plt.subplots(figsize=(7, 4))
      epochs = range(1, len(r["flips_per_epoch"]) + 1)
      for layer in r["flips_per_epoch"][0]:
        ax.plot(epochs, [max(e.get(layer, 0), 0.5) for e in r["flips_per_epoch"]], marker=".",
                label=layer)
      for step in r.get("event_steps", []):
        ax.axvline(step / math.ceil(r["train_examples"] / r["batch"]), color="grey", alpha=0.3)
      ax.set_xlabel("epoch (grey: pruning events)")
      ax.set_ylabel("flips of unpruned weights per epoch (0 at 0.5)")
      ax.set_yscale("log")
      ax.legend(fontsize=7)
      ax.grid(True, alpha=0.3)
      ax.set_title(f"{model}, {regime}: {r['method']} at {100 * r['target']:g}%, seed {r['seed']}")
      files.append(_save(fig, output_dir, f"{model}_{regime}_flips.png"))
  return files


def effect_plots(effects, output_dir):
  """Per model and regime: the paired effects (points, 95% CI) against the target."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  series = (("flips_no_noise", "hybrid − magnitude"),
            ("flips_with_noise", "flipout − magnitude_noise"),
            ("noise", "magnitude_noise − magnitude"), ("recent_flips", "recent_flips − magnitude"))
  files = []
  for model, regime in sorted({(e["model"], e["regime"]) for e in effects}):
    rows = [e for e in effects if (e["model"], e["regime"]) == (model, regime)]
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for offset, (key, label) in enumerate(series):
      pts = [(i, e[key]) for i, e in enumerate(rows) if e[key]]
      if not pts:
        continue
      drawn = True
      x = [i + (offset - 1.5) * 0.1 for i, _ in pts]
      mean = [100 * p["mean"] for _, p in pts]
      err = [[100 * (p["mean"] - p["low"]) for _, p in pts],
             [100 * (p["high"] - p["mean"]) for _, p in pts]]
      ax.errorbar(x, mean, yerr=err, marker="o", linestyle="", capsize=3, label=label)
    if not drawn:
      plt.close(fig)
      continue
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(rows)), [f"{100 * e['target']:g}%" for e in rows])
    ax.set_xlabel("target sparsity")
    ax.set_ylabel("paired difference, points (95% CI)")
    ax.set_title(f"{model}, {regime} regime: what flips and noise change")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    files.append(_save(fig, output_dir, f"{model}_{regime}_effects.png"))
  return files


def report(rows, commands, data):
  agg = aggregate(rows)
  effects = flip_term(agg)
  out_dir = FLAGS.output_dir
  files = plots(rows, agg, out_dir) + effect_plots(effects, out_dir)
  rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(FLAGS.report)) or ".")  # noqa: E731
  epochs = sorted({r["epochs"] for r in rows}) or [FLAGS.epochs]
  examples = sorted({r["train_examples"] for r in rows}) or [data["train_examples"]]
  lines = ["# BENCHMARKS", "",
           "Generated by `benchmarks/compare.py`; do not edit by hand. Raw per-run JSON: "
           f"`{rel(os.path.join(out_dir, 'raw'))}/`.", "",
           "## Answer", "", answer(effects), ""] + (
               [erk_start(agg), ""] if erk_start(agg) else []) + (
               studies.answer_lines(out_dir, rel)) + [
           "## Setup", "",
           "- Commands that produced the raw results, in order: "
           + ", ".join(f"`{c}`" for c in dict.fromkeys(commands)),
           f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
           f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
           f"{platform.release()}; Python {platform.python_version()}",
           f"- Versions: TensorFlow {tf.__version__}, tf_keras {keras.__version__}, "
           f"TF-MOT {tfmot.__version__}, keras_signflip {ksf.__version__}",
           f"- Data: {data['source']}; {'/'.join(map(str, examples))} training examples, "
           f"{FLAGS.test_examples} test examples, batch {BATCH}; "
           f"{'/'.join(map(str, epochs))} epochs per one-shot run and per lottery round.",
           "- Every one-shot method: FlipOut's schedule (50% of the remaining weights at "
           "m = ceil(log2(1/(1 − target))) events every round(epochs/(m + 1)) epochs or, in "
           "shorter runs, round(steps/(m + 1)) steps; the last capped at the target), the same "
           "data order per seed, the regime's optimizer. `flipout` regime: SGD 0.1, momentum 0.9, "
           "coupled weight decay 5e-4, ×0.1 at 3/7 and 5/7 of training; `adam` regime: Adam "
           f"{ADAM_LR}, constant. Noise: FlipOut's, λ = {flipout.NOISE:g}.",
           "", "## The flip term, isolated", "",
           "Paired by seed: mean difference in test accuracy (points) with its 95% t interval. "
           "`flips` = hybrid − magnitude (no noise) and flipout − magnitude_noise (with noise); "
           "`noise` = magnitude_noise − magnitude; last column: flipout − the best method "
           "without flips at the same budget.", "",
           "| model | regime | target | flips, no noise | flips, with noise | noise | "
           "recent_flips − magnitude | flipout − best without flips |",
           "|---|---|---|---|---|---|---|---|"]
  for e in effects:
    lines.append(f"| {e['model']} | {e['regime']} | {100 * e['target']:g}% | "
                 f"{ci_text(e['flips_no_noise'])} | {ci_text(e['flips_with_noise'])} | "
                 f"{ci_text(e['noise'])} | "
                 f"{ci_text(e['recent_flips'])} | "
                 f"{ci_text(e['flipout_vs_best'])} ({e['best_no_flips'] or '-'}) |")
  lines += ["", "## All results", "",
            "Mean ± std over seeds (n). n differs between methods where issue 28's studies "
            "added seeds 3-4 to some (benchmarks/results/length, .../variants): compare means "
            "of unequal n with care; the paired columns use the seeds both methods have. "
            "vs magnitude: paired mean difference [95% CI] in points. "
            "Steps: optimizer steps spent (all lottery rounds included). FLOPs: training "
            "compute of the prunable weights relative to one dense run (`analysis.training_flops`"
            ": kept fraction summed over steps; exact for MLPs, approximate for conv nets).", "",
            "| model | regime | target | method | sparsity | test accuracy % | vs magnitude | "
            "steps | FLOPs × dense | n |",
            "|---|---|---|---|---|---|---|---|---|---|"]
  for (model, regime, target, method), v in sorted(
      agg.items(), key=lambda kv: (kv[0][:3], METHODS.index(kv[0][3]))):
    lines.append(f"| {model} | {regime} | {100 * target:g}% | {method} | "
                 f"{100 * v['sparsity']:.2f}% | "
                 f"{100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} | "
                 f"{ci_text(v['vs_magnitude'])} | {v['steps']:.0f} | "
                 f"{'-' if v['flops'] is None else format(v['flops'], '.3f')} | {v['n']} |")
  regularized = [(k, v) for k, v in sorted(agg.items()) if k[3] in REGULARIZERS]
  if regularized:
    lines += ["", "## Regularisers: strength, natural sparsity, and the cut", "",
              "Variational dropout, L0 and Hoyer-Square do not set a sparsity: each trains under "
              "its penalty at the swept strength whose natural sparsity (seed 0, `--calibrate`) "
              "lay nearest the target, then is cut to the target by its own score (−log α; "
              "|θ·z|; |w|) with no further training. Natural: what the penalty reached alone "
              "(log α ≥ 3; shut gates; |w| < 1e-3) and the accuracy there. Strength: "
              "× 1/(training examples) for variational dropout and L0, as is for Hoyer.", "",
              "| model | regime | target | method | strength | natural sparsity | "
              "natural accuracy % | accuracy at target % | vs magnitude | n |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for (model, regime, target, method), v in regularized:
      lines.append(f"| {model} | {regime} | {100 * target:g}% | {method} | {v['strength']:g} | "
                   f"{100 * v['natural_sparsity']:.2f}% | {100 * v['natural_accuracy']:.2f} | "
                   f"{100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} | "
                   f"{ci_text(v['vs_magnitude'])} | {v['n']} |")
  lines += ["", "## Plots", ""] + [f"![{os.path.basename(f)}]({rel(f)})" for f in files]
  _write_unless_only_the_date_moved(FLAGS.report, "\n".join(lines) + "\n")
  results_io.write_json(os.path.join(out_dir, "aggregate.json"),
                        [dict(model=k[0], regime=k[1], target=k[2], method=k[3], **v)
                         for k, v in agg.items()])
  return agg


def main(argv):
  del argv
  # The run is planned whole (and checked so, where it can be) but fit one epoch
  # a call: the library's warning that one call ends before the target is moot.
  warnings.filterwarnings("ignore", category=schedule_checks.ScheduleWarning)
  logging.set_verbosity(logging.WARNING)
  tf.get_logger().setLevel("ERROR")  # each run's evaluate traces anew: expected here
  _apply_quick()
  bad = ([m for m in FLAGS.methods or [] if m not in METHODS]
         + [r for r in FLAGS.regimes or [] if r not in REGIMES]
         + [m for m in FLAGS.models or [] if m not in models_lib.MODELS])
  if bad:
    print(f"compare.py: error: unknown {bad}; methods are {list(METHODS)}, regimes "
          f"{list(REGIMES)}, models {sorted(models_lib.MODELS)}.", file=sys.stderr)
    sys.exit(2)
  if not FLAGS.report_only:
    results_io.refuse_off_spec(
        "compare.py", [f"--noise_on={FLAGS.noise_on} (the studies': prunable)"]
        if FLAGS.noise_on != "prunable" else [],
        {"output_dir": (FLAGS.output_dir,
                        os.path.join("benchmarks", "results", "quick" if FLAGS.quick else "grid"))})
  tf.config.experimental.enable_op_determinism()
  results_io.provenance()  # the code this process loaded, before the checkout moves on
  note = os.path.join(FLAGS.output_dir, "data.json")
  if FLAGS.report_only and os.path.exists(note):
    with open(note) as f:  # a report needs only the data's description: no data is read
      data = json.load(f)
  else:
    data = _load_data()
    if not FLAGS.report_only:
      results_io.write_json(note, {"source": data["source"],
                                   "train_examples": data["train_examples"]})
  if FLAGS.calibrate:
    run_calibration(data)
  elif not FLAGS.report_only:
    run_grid(data)
  if not FLAGS.report_only:
    results_io.log_command(FLAGS.output_dir, "benchmarks.compare")
  if FLAGS.calibrate:
    return
  if FLAGS.write_report:
    agg = report(load_raw(FLAGS.output_dir), results_io.commands(FLAGS.output_dir), data)
    print(f"Wrote {FLAGS.report} ({len(agg)} table rows) and plots in {FLAGS.output_dir}")


if __name__ == "__main__":
  app.run(main)
