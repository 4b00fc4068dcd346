"""Lottery tickets by iterative pruning with rewinding (Frankle & Carbin 2019).

Round 0 trains the dense network (or a given starting mask) from
initialisation for T steps and records the rewind point (step k). Each later
round r (late rewinding, k > 0: the optimizer's step and slots are rewound to
step k too, and the round trains steps k..T, Frankle et al. 2020):

    mask_r   = prune a fraction of mask_{r-1}'s survivors, ranked by the
               criterion on the weights trained in round r-1
    weights  = reinit(mode): rewind / signed_constant / random / shuffle
    train with mask_r fixed; record accuracies and the early-stopping step

Kept counts are exact: per layer, max(round(n * (1 - rate) ** r), 1) of each
prunable tensor's n weights (`prune_rate_output` for the last one); global
scope keeps max(round(N * (1 - rate) ** r), 1) of all N together. Rounding is
Python's round-half-to-even on the exact product. With `round_sparsities`
(s_1 < s_2 < ... per round) the rate is replaced by the listed targets:
round r keeps max(round(n * (1 - s_r)), 1) per tensor (or of all N), so the
tickets land exactly on the sparsities a comparison asks for.

Every phase writes its artifact (masks_r.npz, rewind.npz, results.json/.csv)
and is skipped when it exists, so a killed run resumes in the round it
stopped in and reproduces the uninterrupted results (each round is seeded).
Controls (`modes[1:]`) retrain the primary mode's masks with another
re-initialisation.
"""
import csv
import dataclasses
import json
import os
import time
from typing import Callable, Optional, Sequence

import numpy as np

from keras_signflip import criteria as criteria_lib
from keras_signflip import families
from keras_signflip.callback import Callback
from keras_signflip.lottery import reinit as reinit_lib
from keras_signflip.lottery import rewind as rewind_lib

__all__ = ["LotteryConfig", "kept_counts", "run", "RunFiles", "load_results", "plot",
           "save_masks", "load_masks"]


@dataclasses.dataclass(frozen=True)
class LotteryConfig:
  """Settings of an iterative-pruning run. See the module docstring.

  Attributes:
    rounds: pruning rounds after the dense round 0.
    prune_rate: fraction of survivors pruned per round (layers, or global).
    prune_rate_output: rate of the last prunable tensor (layer scope); None:
      same as `prune_rate`.
    scope: "layer" or "global".
    criterion: ranking criterion (name or Criterion).
    rewind_step: 0, an int, "500it" or "2ep".
    modes: re-initialisations; the first defines the masks.
    epochs: training epochs per round.
    eval_every: evaluate validation loss / test accuracy every N steps
      (None: once per epoch).
    seed: base seed; round r uses seed + r.
    round_sparsities: None, or the sparsity after each round (increasing, in
      (0, 1)); replaces `prune_rate`/`prune_rate_output` and sets `rounds`
      to its length.
  """
  rounds: int = 5
  prune_rate: float = 0.2
  prune_rate_output: Optional[float] = 0.1
  scope: str = "layer"
  criterion: object = "magnitude"
  rewind_step: object = 0
  modes: Sequence[str] = ("rewind",)
  epochs: int = 1
  eval_every: Optional[int] = None
  seed: int = 0
  round_sparsities: Optional[Sequence[float]] = None

  def __post_init__(self):
    if self.round_sparsities is not None:
      targets = list(self.round_sparsities)
      if (not targets or any(isinstance(t, bool) or not isinstance(t, (int, float))
                             or not 0.0 < t < 1.0 for t in targets)
          or any(b <= a for a, b in zip(targets, targets[1:]))):
        raise ValueError("`round_sparsities` must be a non-empty increasing list of "
                         f"sparsities in (0, 1). Received: round_sparsities={targets!r}")
      default = type(self).__dataclass_fields__["rounds"].default
      if self.rounds not in (0, default, len(targets)):
        raise ValueError(f"`rounds` ({self.rounds}) disagrees with the {len(targets)} "
                         "`round_sparsities`; leave `rounds` out.")
      object.__setattr__(self, "round_sparsities", tuple(float(t) for t in targets))
      object.__setattr__(self, "rounds", len(targets))
    if self.rounds < 0:
      raise ValueError(f"`rounds` must be >= 0. Received: rounds={self.rounds!r}")
    for name in ("prune_rate", "prune_rate_output"):
      rate = getattr(self, name)
      if rate is not None and not 0.0 < rate < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1). Received: {name}={rate!r}")
    if self.scope not in ("layer", "global"):
      raise ValueError(f"`scope` must be 'layer' or 'global'. Received: scope={self.scope!r}")
    bad = [m for m in self.modes if m not in reinit_lib.MODES]
    if bad or not self.modes:
      raise ValueError(f"`modes` must be a non-empty list of {list(reinit_lib.MODES)}. "
                       f"Received: modes={list(self.modes)!r}")
    criteria_lib.get(self.criterion)
    rewind_lib.steps(self.rewind_step, steps_per_epoch=1)


def kept_counts(sizes, config, round_index):
  """Kept weights per tensor after `round_index` rounds (layer scope), or the
  total kept (global scope, returned as a one-element list)."""
  r = round_index
  if config.round_sparsities is not None:
    keep = 1.0 - config.round_sparsities[r - 1] if r > 0 else 1.0
    total = [sum(sizes)] if config.scope == "global" else sizes
    return [max(round(n * keep), 1) for n in total]
  if config.scope == "global":
    return [max(round(sum(sizes) * (1 - config.prune_rate) ** r), 1)]
  rates = [config.prune_rate] * len(sizes)
  if config.prune_rate_output is not None and sizes:
    rates[-1] = config.prune_rate_output
  return [max(round(n * (1 - rate) ** r), 1) for n, rate in zip(sizes, rates)]


class RunFiles:
  """Every file of a run directory, in one place."""

  def __init__(self, root):
    self.root = root

  def masks(self, r):
    return os.path.join(self.root, f"masks_{r}.npz")

  init = property(lambda self: os.path.join(self.root, "init.npz"))
  rewind = property(lambda self: os.path.join(self.root, "rewind.npz"))

  def trained(self, mode, r):
    """The model at the end of round r of `mode` (kept for `lr_rewind`)."""
    return os.path.join(self.root, f"trained_{mode}_{r}.npz")
  results_json = property(lambda self: os.path.join(self.root, "results.json"))
  results_csv = property(lambda self: os.path.join(self.root, "results.csv"))
  plot_accuracy = property(lambda self: os.path.join(self.root, "accuracy_vs_remaining.png"))
  plot_early_stop = property(lambda self: os.path.join(self.root, "early_stop_vs_remaining.png"))


def save_masks(path, masks):
  """Writes a list of masks as .npz, atomically."""
  tmp = path + ".tmp.npz"
  np.savez(tmp, *masks)
  os.replace(tmp, path)


def load_masks(path):
  """The list of masks in a masks_<r>.npz file."""
  with np.load(path) as f:
    return [f[f"arr_{i}"] for i in range(len(f.files))]


def load_results(path):
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


def _write_results(files, results):
  tmp = files.results_json + ".tmp"
  with open(tmp, "w") as f:
    json.dump(results, f, indent=2, sort_keys=True)
  os.replace(tmp, files.results_json)
  scalar_keys = sorted({k for r in results for k, v in r.items() if not isinstance(v, (dict, list))})
  tmp = files.results_csv + ".tmp"
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=scalar_keys)
    writer.writeheader()
    for r in results:
      writer.writerow({k: r.get(k) for k in scalar_keys})
  os.replace(tmp, files.results_csv)


class _Evaluator(Callback):
  """Validation loss and test accuracy every `every` steps; tracks the minimum."""

  def __init__(self, val, test, every):
    super().__init__()
    self.val, self.test, self.every = val, test, every
    self.best = None  # (val_loss, step, test_accuracy)

  def _evaluate(self):
    model = families.synced(self.model)
    val_loss = model.evaluate(self.val, verbose=0)[0]
    test_acc = model.evaluate(self.test, verbose=0)[1]
    if self.best is None or val_loss < self.best[0]:
      self.best = (float(val_loss), self._step, float(test_acc))

  def on_train_begin(self, logs=None):
    self._step = int(families.synced(self.model).optimizer.iterations.numpy())

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1  # counted here: on JAX, reading the model syncs its state
    if self._step % self.every == 0:
      self._evaluate()


def _set_masks(model, masks):
  for s, m in zip(families.of(model).flip_states(model), masks):
    s.mask.assign(m.astype(np.float32))
    s.flips.assign(np.zeros(tuple(s.flips.shape), np.int32))
    if getattr(s, "flips_at_update", None) is not None:  # RecentFlips' window restarts too
      s.flips_at_update.assign(np.zeros(tuple(s.flips.shape), np.int32))


def _sign_changes(model, rewind_snapshot):
  """(surviving prunable weights whose sign differs from the rewind point's, survivors):
  sign(w) * sign(w_rewind) < 0, so a weight at exactly 0 has not changed sign."""
  family = families.of(model)
  position = {id(v): i for i, v in enumerate(rewind_lib.variables(model))}
  changed = kept = 0
  for s in family.flip_states(model):
    alive = family.to_numpy(s.mask) > 0
    w = family.to_numpy(s.weight).astype(np.float32)
    w0 = np.asarray(rewind_snapshot.values[position[id(s.weight)]], np.float32)
    changed += int(((np.sign(w) * np.sign(w0) < 0) & alive).sum())
    kept += int(alive.sum())
  return changed, kept


def _next_masks(model, config, round_index):
  family = families.of(model)
  states = family.flip_states(model)
  criterion = criteria_lib.get(config.criterion)
  sizes = [int(np.prod(s.weight.shape)) for s in states]
  kept = kept_counts(sizes, config, round_index)
  if config.scope == "global":
    masks, _ = family.compute_masks(states, None, criterion, kept=kept[0])
  else:
    masks = [family.compute_masks([s], None, criterion, kept=k)[0][0]
             for s, k in zip(states, kept)]
  return [family.to_numpy(m).astype(np.float32) for m in masks]


def _steps_per_epoch(data):
  """Batches per epoch of a tf.data.Dataset or a sized (Py)Dataset, else None."""
  if hasattr(data, "cardinality"):
    count = int(data.cardinality())
    return count if count > 0 else None
  try:
    return len(data) or None
  except TypeError:
    return None


def _skip_batches(data, count, keras):
  """`data` without its first `count` batches: tf.data's `skip`, else a view of a
  `keras.utils.Sequence` / `PyDataset` that starts at batch `count`."""
  if hasattr(data, "skip"):
    return data.skip(count)

  class Rest(keras.utils.Sequence):

    def __len__(self):
      return len(data) - count

    def __getitem__(self, index):
      return data[index + count]

  return Rest()


def run(make_model: Callable[[], object], compile_model: Callable[[object], None],
        train_data: Callable[[int, int], object], val_data, test_data,
        config: LotteryConfig, output_dir: str, init_mask=None, log=print,
        extra_callbacks: Callable[[int], list] = lambda r: []):
  """Runs (or resumes) iterative pruning; returns the list of result rows.

  Args:
    make_model: builds the unwrapped model (tf_keras or Keras 3, any
      backend), identically each call.
    compile_model: compiles a model with a fresh optimizer (and metrics
      loss + accuracy).
    train_data: (round, epoch) -> batched training dataset.
    val_data, test_data: batched datasets.
    config: a `LotteryConfig`.
    output_dir: run directory; existing artifacts are reused.
    init_mask: None, or a list of arrays (masks_r.npz of another run) for
      round 0: ticket transfer (Morcos et al. 2019).
    extra_callbacks: round -> callbacks added to that round's `fit`.
  """
  os.makedirs(output_dir, exist_ok=True)
  files = RunFiles(output_dir)
  results = load_results(files.results_json)
  done = {(r["mode"], r["round"]) for r in results}
  base = make_model()
  family = families.of(base)
  family.keras.utils.set_random_seed(config.seed)
  base = make_model()  # built after seeding, as every round's model is
  model = family.prune_sign_flip(base, pruning_schedule=family.never(), criterion=config.criterion)
  states = family.flip_states(model)
  names = [families.weight_name(s.weight) for s in states]
  if not os.path.exists(files.init):
    rewind_lib.snapshot(model, 0).save(files.init)
  init_snap = rewind_lib.Snapshot.load(files.init)
  if not os.path.exists(files.masks(0)):
    masks0 = init_mask if init_mask is not None else [np.ones(s.mask.shape, np.float32) for s in states]
    if [tuple(m.shape) for m in masks0] != [tuple(s.mask.shape) for s in states]:
      raise ValueError("The starting mask does not fit this model: shapes "
                       f"{[m.shape for m in masks0]} vs {[tuple(s.mask.shape) for s in states]}.")
    save_masks(files.masks(0), masks0)

  primary = config.modes[0]
  plan = [(primary, r) for r in range(config.rounds + 1)]
  plan += [(mode, r) for mode in config.modes[1:] for r in range(1, config.rounds + 1)]
  for mode, r in plan:
    if (mode, r) in done:
      continue
    masks = load_masks(files.masks(r))
    family.keras.utils.set_random_seed(config.seed + r)
    _set_masks(model, masks)
    rewind_snap = None if r == 0 else rewind_lib.Snapshot.load(files.rewind)
    if r == 0:
      rewind_lib.restore(model, init_snap)
    else:
      trained = None
      if mode == "lr_rewind":  # from the previous round of this mode (round 0: the dense one)
        trained = rewind_lib.Snapshot.load(files.trained(mode if r > 1 else primary, r - 1))
      reinit_lib.reinitialize(model, mode, rewind_snap, init_snap, seed=config.seed + r,
                              trained_snapshot=trained)
    family.set_reference(model)  # reference criteria compare with the round's start
    compile_model(model)
    # Late rewinding: the optimizer (step, slots) goes back to step k too, so
    # the round trains steps k..T on the learning-rate schedule's steps k..T.
    resume_at = rewind_snap.step if rewind_snap is not None else 0
    if resume_at:
      rewind_lib.restore_optimizer(model, rewind_snap)
    supermask_accuracy = float(model.evaluate(test_data, verbose=0)[1])
    start = time.time()
    first = train_data(r, 0)
    steps_per_epoch = _steps_per_epoch(first)
    if resume_at and not steps_per_epoch:
      raise ValueError(f"Late rewinding (rewind_step={config.rewind_step!r}) needs the epoch "
                       "length: train_data must return a dataset of known length.")
    first_epoch, skip = divmod(resume_at, steps_per_epoch) if resume_at else (0, 0)
    evaluator = _Evaluator(val_data, test_data, config.eval_every or steps_per_epoch or 100)
    rewinder = rewind_lib.RewindPoint(config.rewind_step)
    callbacks = [family.update_pruning_step(), evaluator] + ([rewinder] if r == 0 else []) + extra_callbacks(r)
    for epoch in range(first_epoch, config.epochs):
      data = first if epoch == 0 else train_data(r, epoch)
      if epoch == first_epoch and skip:
        data = _skip_batches(data, skip, family.keras)  # what round 0 saw before step k
      model.fit(data, epochs=epoch + 1, initial_epoch=epoch, verbose=0, callbacks=callbacks)
      if model.stop_training:
        break
    loss, accuracy = model.evaluate(test_data, verbose=0)
    if r == 0 and not os.path.exists(files.rewind):
      if rewinder.snapshot is None:
        raise ValueError(f"rewind_step={config.rewind_step!r} lies beyond round 0's "
                         f"{int(model.optimizer.iterations.numpy())} steps.")
      rewinder.snapshot.save(files.rewind)
    if "lr_rewind" in config.modes and r < config.rounds:
      rewind_lib.snapshot(model).save(files.trained(mode, r))
    if mode == primary and r < config.rounds:
      save_masks(files.masks(r + 1), _next_masks(model, config, r + 1))
    changed, kept = _sign_changes(model, rewind_lib.Snapshot.load(files.rewind))
    remaining = [float(m.mean()) for m in masks]
    row = {
        "mode": mode, "round": r,
        "weights_remaining_pct": float(100.0 * sum(m.sum() for m in masks) / sum(m.size for m in masks)),
        "remaining_pct_per_layer": {n: 100 * x for n, x in zip(names, remaining)},
        "test_accuracy": float(accuracy), "test_loss": float(loss),
        "early_stop_step": evaluator.best[1] if evaluator.best else None,
        "early_stop_val_loss": evaluator.best[0] if evaluator.best else None,
        "early_stop_test_accuracy": evaluator.best[2] if evaluator.best else None,
        "supermask_accuracy": supermask_accuracy,
        "steps": int(model.optimizer.iterations.numpy()),
        "flips": int(sum(int(f.sum()) for f in family.flip_counts(model).values())),
        "sign_changed_since_rewind": changed,
        "sign_changed_since_rewind_pct": 100.0 * changed / max(kept, 1),
        "wall_seconds": time.time() - start,
    }
    results = [x for x in results if (x["mode"], x["round"]) != (mode, r)] + [row]
    results.sort(key=lambda x: (config.modes.index(x["mode"]) if x["mode"] in config.modes else 99,
                                x["round"]))
    _write_results(files, results)
    log(f"[{mode} round {r}] {row['weights_remaining_pct']:6.2f}% remaining  "
        f"test acc {accuracy:.4f}  early-stop step {row['early_stop_step']} "
        f"(acc {row['early_stop_test_accuracy']})  supermask {supermask_accuracy:.4f}  "
        f"{row['wall_seconds']:.1f}s")
  return results


def plot(results, files, title=""):
  """PNG plots: test accuracy and early-stop step vs % weights remaining (log)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  modes = sorted({r["mode"] for r in results}, key=lambda m: reinit_lib.MODES.index(m))
  dense = [r for r in results if r["round"] == 0]
  for key, filename, label in (("test_accuracy", files.plot_accuracy, "test accuracy"),
                           ("early_stop_step", files.plot_early_stop, "early-stopping step")):
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in modes:
      rows = sorted(dense + [r for r in results if r["mode"] == mode and r["round"] > 0],
                    key=lambda r: -r["weights_remaining_pct"])
      ax.plot([r["weights_remaining_pct"] for r in rows], [r[key] for r in rows],
              marker="o", label=mode)
    ax.set_xscale("log")
    ticks = sorted({round(r["weights_remaining_pct"], 1) for r in results}, reverse=True)
    ax.set_xticks(ticks[::max(len(ticks) // 8, 1)])
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.invert_xaxis()
    ax.set_xlabel("% of weights remaining")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(filename, dpi=110)
    plt.close(fig)
