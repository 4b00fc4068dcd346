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

Every phase writes its artifact (masks_r.npz, rewind.npz, results.json/.csv),
atomically (a temporary sibling, then a rename), and is skipped when it
exists, so a killed run resumes in the round it stopped in and reproduces the
uninterrupted results (each round is seeded). Controls (`modes[1:]`) retrain
the primary mode's masks with another re-initialisation.

One configuration per directory: `config` records it in config.json and says
how a run may be extended; `run_dir` checks a directory before anything is
written (refusing a user's or another run's, adopting an older version's,
naming unreadable artifacts and the way out); `files` reads and writes the
artifacts; `plots` draws the results. Their public names are re-exported here.
"""
import dataclasses
import os
import time
from typing import Callable, Optional

import numpy as np

from keras_signflip import criteria as criteria_lib
from keras_signflip import families
from keras_signflip import inspection
from keras_signflip.callback_base import Callback
from keras_signflip.lottery import reinit as reinit_lib
from keras_signflip.lottery import rewind as rewind_lib
from keras_signflip.lottery.config import CONFIG_FORMAT  # noqa: F401  (defined here before)
from keras_signflip.lottery.config import (LotteryConfig, check_init_mask, config_record,
                                           kept_counts)
from keras_signflip.lottery.files import (RunFiles, load_masks, load_results, lr_rewind_source,
                                          remaining_pct_per_layer, rewrite_results_if_stale,
                                          save_masks, save_snapshot, write_results)
from keras_signflip.lottery.plots import plot
from keras_signflip.lottery.run_dir import (OutputDirError, StoredArtifacts, check_adoption,
                                            check_output_dir, claim_output_dir, read_config,
                                            read_results, rebuild_results)

__all__ = ["LotteryConfig", "kept_counts", "run", "RunFiles", "load_results", "plot",
           "save_masks", "load_masks", "OutputDirError", "check_output_dir", "read_config",
           "config_record"]


def run(make_model: Callable[[], object], compile_model: Callable[[object], None],
        train_data: Callable[[int, int], object], val_data, test_data,
        config: LotteryConfig, output_dir: str, init_mask=None, log=print,
        extra_callbacks: Callable[[int], list] = lambda r: [], context: Optional[dict] = None):
  """Runs, resumes or extends iterative pruning; returns the list of result rows.

  The directory's config.json must agree with `config`, `init_mask` and
  `context` (more rounds and appended control modes extend the run); see
  `keras_signflip.lottery.config` for what may change, and
  `keras_signflip.lottery.run_dir` for what is refused, adopted and recovered.

  Args:
    make_model: builds the unwrapped model (tf_keras or Keras 3, any
      backend), identically each call.
    compile_model: compiles a model with a fresh optimizer (and metrics
      loss + accuracy).
    train_data: (round, epoch) -> batched training dataset.
    val_data, test_data: batched datasets.
    config: a `LotteryConfig`.
    output_dir: run directory: new, empty, or this run's (its artifacts are
      reused).
    init_mask: None, or a list of arrays (masks_r.npz of another run) for
      round 0: ticket transfer (Morcos et al. 2019).
    extra_callbacks: round -> callbacks added to that round's `fit`.
    context: None, or a JSON-serialisable dict of settings outside `config`
      that change the results (model, data, optimizer, ...): recorded in
      config.json and compared like the config's fields.

  Raises:
    ValueError: a bad argument. `OutputDirError` (a ValueError): the
      directory cannot take this run (another configuration, a user's
      directory, a file, an unreadable artifact) -- raised before anything
      is written.
  """
  recorded, legacy, artifacts, record, extended = check_output_dir(
      config, output_dir, init_mask, context)
  files = RunFiles(output_dir)
  init_mask = check_init_mask(init_mask)
  results, csv_rows = read_results(files)
  model, family = _build_model(make_model, config)
  names, shapes, sizes = _prunable_tensors(model, family)
  masks0 = _starting_mask(init_mask, shapes)
  stored = StoredArtifacts(files, config, model, shapes)

  # Everything the run reads is checked before the directory is written.
  if recorded is None and (legacy is not None or artifacts):
    check_adoption(files, config, legacy, results if csv_rows is None else csv_rows, sizes,
                   masks0, stored.masks)
  if csv_rows is not None:  # results.json is unreadable: rebuilt from results.csv
    results = rebuild_results(csv_rows, files, stored.masks, names)
  done = {(row["mode"], row["round"]) for row in results}
  todo = _plan(config, files, done)
  inputs = _load_inputs(stored, todo)

  # Checked: from here on the directory is written.
  claim_output_dir(files, recorded, legacy, artifacts, record, extended, log)
  if csv_rows is not None:
    log(f"Rebuilt {files.results_json} from {files.results_csv}.")
    write_results(files, results)
  elif results:
    rewrite_results_if_stale(files, results)
  if not todo:
    return results
  _save_starting_point(model, files, inputs, masks0, log)
  again = [item for item in todo if item in done]
  if again:
    log("Recomputing " + ", ".join(f"{m} round {r}" for m, r in again) + ": artifacts that "
        "later rounds need are missing.")

  rounds = _RoundTrainer(model, family, config, stored, inputs, names, compile_model, train_data,
                         val_data, test_data, extra_callbacks, log)
  for mode, r in todo:
    row = rounds.train(mode, r)
    results = _with_row(results, row, config.modes)
    write_results(files, results)
    log(_summary(row))
  return results


def _build_model(make_model, config):
  """(the pruning-wrapped model, its family), built after seeding as every
  round's model is; the masks stay as set (`never` prunes)."""
  base = make_model()
  family = families.of(base)
  family.keras.utils.set_random_seed(config.seed)
  base = make_model()
  model = family.prune_sign_flip(base, pruning_schedule=family.never(), criterion=config.criterion)
  return model, family


def _prunable_tensors(model, family):
  """(weight names, mask shapes, sizes) of the model's prunable tensors."""
  states = family.flip_states(model)
  names = [families.weight_name(s.weight) for s in states]
  shapes = [tuple(s.mask.shape) for s in states]
  sizes = [int(np.prod(shape)) for shape in shapes]
  return names, shapes, sizes


def _starting_mask(init_mask, shapes):
  """Round 0's masks: `init_mask` (checked against the model's `shapes`), or ones."""
  if init_mask is not None and [m.shape for m in init_mask] != shapes:
    raise ValueError("The starting mask does not fit this model: shapes "
                     f"{[m.shape for m in init_mask]} vs {shapes}.")
  return init_mask if init_mask is not None else [np.ones(shape, np.float32) for shape in shapes]


def _plan(config, files, done):
  """The (mode, round)s to train, in order: every round without a result row
  (`done` has the others), and the rounds whose artifacts a later one needs but
  which are missing (deleted, or never kept by an older version): those are
  retrained, seeded as before."""
  primary = config.modes[0]
  plan = [(primary, r) for r in range(config.rounds + 1)]
  plan += [(mode, r) for mode in config.modes[1:] for r in range(1, config.rounds + 1)]
  todo = {item for item in plan if item not in done}
  while True:
    needs = set()
    for mode, r in todo:
      if r > 0 and not os.path.exists(files.masks(r)) and not os.path.exists(files.state(r - 1)):
        needs.add((primary, r - 1))
      if r > 0 and not os.path.exists(files.rewind):
        needs.add((primary, 0))
      if mode == "lr_rewind" and r > 0:
        source = lr_rewind_source(primary, mode, r)
        if not os.path.exists(files.trained(*source)):
          needs.add(source)
    if needs <= todo:
      break
    todo |= needs
  return sorted(todo, key=plan.index)


@dataclasses.dataclass
class _Inputs:
  """The stored artifacts the rounds to train read, loaded (so checked) before
  anything is written."""
  init: Optional[rewind_lib.Snapshot] = None  # init.npz; None: not stored yet
  rewind: Optional[rewind_lib.Snapshot] = None  # rewind.npz; None: round 0 takes it
  masks0_error: Optional[OutputDirError] = None  # masks_0.npz unreadable: it is rewritten
  states: dict = dataclasses.field(default_factory=dict)  # r -> state_<r-1>.npz, r's masks' source


def _load_inputs(stored, todo):
  """`_Inputs` of the plan `todo`; raises OutputDirError for an unreadable one."""
  inputs = _Inputs()
  if not todo:
    return inputs
  files, primary = stored.files, stored.primary
  if os.path.exists(files.init):
    inputs.init = stored.init()
  if os.path.exists(files.masks(0)):
    try:
      stored.masks(0)
    except OutputDirError as e:
      inputs.masks0_error = e
  if any(r > 0 for _, r in todo) and os.path.exists(files.rewind):
    inputs.rewind = stored.rewind()
  for mode, r in todo:
    if r > 0 and os.path.exists(files.masks(r)):
      stored.masks(r)
    elif r > 0 and (primary, r - 1) not in todo and r not in inputs.states:  # from the state
      inputs.states[r] = stored.state(r - 1)
    if mode == "lr_rewind" and r > 0 and lr_rewind_source(primary, mode, r) not in todo:
      stored.trained(mode, r)
  return inputs


def _save_starting_point(model, files, inputs, masks0, log):
  """Writes init.npz (the seeded model's initial weights) and masks_0.npz
  (`masks0`) unless they are stored and readable."""
  if inputs.init is None:
    save_snapshot(rewind_lib.snapshot(model, 0), files.init)
    inputs.init = rewind_lib.Snapshot.load(files.init)
  if inputs.masks0_error is not None:
    log(f"Rewriting {files.masks(0)} from the starting mask: {inputs.masks0_error}")
  if inputs.masks0_error is not None or not os.path.exists(files.masks(0)):
    save_masks(files.masks(0), masks0)


def _with_row(results, row, modes):
  """`results` with `row` in place of its (mode, round)'s, in `modes` order, then by round."""
  results = [x for x in results if (x["mode"], x["round"]) != (row["mode"], row["round"])] + [row]
  results.sort(key=lambda x: (modes.index(x["mode"]) if x["mode"] in modes else 99, x["round"]))
  return results


def _summary(row):
  """A round's log line."""
  return (f"[{row['mode']} round {row['round']}] {row['weights_remaining_pct']:6.2f}% remaining  "
          f"test acc {row['test_accuracy']:.4f}  early-stop step {row['early_stop_step']} "
          f"(acc {row['early_stop_test_accuracy']})  supermask {row['supermask_accuracy']:.4f}  "
          f"{row['wall_seconds']:.1f}s")


class _RoundTrainer:
  """Trains one round at a time on one model, keeping what later rounds read."""

  def __init__(self, model, family, config, stored, inputs, names, compile_model, train_data,
               val_data, test_data, extra_callbacks, log):
    self.model, self.family, self.config, self.stored = model, family, config, stored
    self.files, self.primary = stored.files, stored.primary
    self.init, self.rewind, self.states = inputs.init, inputs.rewind, inputs.states
    self.names, self.compile_model, self.train_data = names, compile_model, train_data
    self.val_data, self.test_data = val_data, test_data
    self.extra_callbacks, self.log = extra_callbacks, log

  def train(self, mode, r):
    """Round r of `mode`: its masks, re-initialised weights, training, and the
    artifacts later rounds read (round r + 1's masks among them); returns its row."""
    masks = self._masks(r)
    resume_at = self._start(mode, r, masks)
    supermask_accuracy = float(self.model.evaluate(self.test_data, verbose=0)[1])
    start = time.time()
    evaluator, rewinder = self._fit(r, resume_at)
    loss, accuracy = self.model.evaluate(self.test_data, verbose=0)
    self._keep_rewind_point(r, rewinder)
    self._keep_trained_model(mode, r)
    self._prune(mode, r)
    self._keep_final_state(mode, r)
    changed, kept = _sign_changes(self.model, self.rewind)
    return {
        "mode": mode, "round": r,
        "weights_remaining_pct": float(100.0 * sum(m.sum() for m in masks)
                                       / sum(m.size for m in masks)),
        "remaining_pct_per_layer": remaining_pct_per_layer(self.names, masks),
        "test_accuracy": float(accuracy), "test_loss": float(loss),
        "early_stop_step": evaluator.best[1] if evaluator.best else None,
        "early_stop_val_loss": evaluator.best[0] if evaluator.best else None,
        "early_stop_test_accuracy": evaluator.best[2] if evaluator.best else None,
        "supermask_accuracy": supermask_accuracy,
        "steps": int(self.model.optimizer.iterations.numpy()),
        "flips": int(sum(int(f.sum()) for f in inspection.flip_counts(self.model).values())),
        "sign_changed_since_rewind": changed,
        "sign_changed_since_rewind_pct": 100.0 * changed / max(kept, 1),
        "wall_seconds": time.time() - start,
    }

  def _masks(self, r):
    """masks_<r>.npz; an extended run first draws it from the stored state."""
    files, model = self.files, self.model
    if r > 0 and not os.path.exists(files.masks(r)):
      _restore_state(model, self.states.pop(r, None) or self.stored.state(r - 1))
      save_masks(files.masks(r), _next_masks(model, self.config, r))
      self.log(f"[{self.primary} round {r}] masks drawn from {files.state(r - 1)}")
    return self.stored.masks(r)

  def _start(self, mode, r, masks):
    """Seeds the round, sets its masks and weights (round 0: the initial ones;
    later: re-initialised by `mode`) and compiles; returns the step it resumes
    at (late rewinding)."""
    model, config = self.model, self.config
    self.family.keras.utils.set_random_seed(config.seed + r)
    _set_masks(model, masks)
    if r == 0:
      rewind_lib.restore(model, self.init)
    else:
      trained = self.stored.trained(mode, r) if mode == "lr_rewind" else None
      reinit_lib.reinitialize(model, mode, self.rewind, self.init, seed=config.seed + r,
                              trained_snapshot=trained)
    inspection.set_reference(model)  # reference criteria compare with the round's start
    self.compile_model(model)
    # Late rewinding: the optimizer (step, slots) goes back to step k too, so
    # the round trains steps k..T on the learning-rate schedule's steps k..T.
    resume_at = self.rewind.step if r > 0 else 0
    if resume_at:
      rewind_lib.restore_optimizer(model, self.rewind)
    return resume_at

  def _fit(self, r, resume_at):
    """Trains round r's epochs from step `resume_at`; returns its (`_Evaluator`, `RewindPoint`)."""
    model, config, keras = self.model, self.config, self.family.keras
    first = self.train_data(r, 0)
    steps_per_epoch = _steps_per_epoch(first)
    if resume_at and not steps_per_epoch:
      raise ValueError(f"Late rewinding (rewind_step={config.rewind_step!r}) needs the epoch "
                       "length: train_data must return a dataset of known length.")
    first_epoch, skip = divmod(resume_at, steps_per_epoch) if resume_at else (0, 0)
    evaluator = _Evaluator(self.val_data, self.test_data,
                           config.eval_every or steps_per_epoch or 100)
    rewinder = rewind_lib.RewindPoint(config.rewind_step)
    callbacks = ([self.family.update_pruning_step(), evaluator] + ([rewinder] if r == 0 else [])
                 + self.extra_callbacks(r))
    for epoch in range(first_epoch, config.epochs):
      data = first if epoch == 0 else self.train_data(r, epoch)
      if epoch == first_epoch and skip:
        data = _skip_batches(data, skip, keras)  # what round 0 saw before step k
      model.fit(data, epochs=epoch + 1, initial_epoch=epoch, verbose=0, callbacks=callbacks)
      if model.stop_training:
        break
    return evaluator, rewinder

  def _keep_rewind_point(self, r, rewinder):
    """Round 0 saves rewind.npz; every round then has it loaded."""
    if r == 0 and not os.path.exists(self.files.rewind):
      if rewinder.snapshot is None:
        raise ValueError(f"rewind_step={self.config.rewind_step!r} lies beyond round 0's "
                         f"{int(self.model.optimizer.iterations.numpy())} steps.")
      save_snapshot(rewinder.snapshot, self.files.rewind)
    if self.rewind is None:
      self.rewind = self.stored.rewind()

  def _keep_trained_model(self, mode, r):
    """The trained model `lr_rewind`'s next round starts from."""
    if "lr_rewind" in self.config.modes and (mode == "lr_rewind"
                                             or (mode == self.primary and r == 0)):
      save_snapshot(rewind_lib.snapshot(self.model), self.files.trained(mode, r))

  def _prune(self, mode, r):
    """The primary draws round r + 1's masks from the weights it trained."""
    if (mode == self.primary and r < self.config.rounds
        and not os.path.exists(self.files.masks(r + 1))):
      save_masks(self.files.masks(r + 1), _next_masks(self.model, self.config, r + 1))

  def _keep_final_state(self, mode, r):
    """The primary's last round keeps its whole state: an extension draws round r + 1 from it."""
    if mode == self.primary and r == self.config.rounds:
      save_snapshot(_state_snapshot(self.model), self.files.state(r))


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


def _state_snapshot(model):
  """Every variable of the model, pruning state included (`RunFiles.state`)."""
  model = families.synced(model)
  family = families.of(model)
  return rewind_lib.Snapshot([families.weight_name(v) for v in model.weights],
                             [family.to_numpy(v) for v in model.weights], 0)


def _restore_state(model, snap):
  """Puts a `_state_snapshot` back (shapes checked when it was loaded)."""
  model = families.synced(model)
  for v, value in zip(model.weights, snap.values):
    v.assign(value)
