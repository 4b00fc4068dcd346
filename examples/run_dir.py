"""A binary's --output_dir: one run, one configuration, one process at a time.

`open_run` checks the directory before anything is built or written:

- a file at the path, or a non-empty directory that no earlier run wrote
  (no `keras_signflip.owned_dir` marker of kind "run"), is refused: it may
  hold a user's files, which a run never writes into or removes;
- an earlier run there needs --resume (continue it) or --overwrite (start
  over: only the files a run writes are removed, see `RUN_FILES`);
- --resume compares the stored config.json with this invocation's flags and
  refuses on any difference, naming each key with its old and new value,
  except `EXTENDABLE` keys: more --epochs continue a finished run (its
  pruning schedule and learning-rate decays keep the length they were laid
  out for, `schedule_epochs`), and --test_examples only changes evaluation;
- a second process on the same directory is refused while the first holds
  its lock (an advisory `fcntl` lock, released by the kernel if the process
  dies, so kill -9 never leaves a stale lock).
"""
import fcntl
import json
import os
import shutil

from keras_signflip import models
from keras_signflip import owned_dir

from examples import common

CONFIG = "config.json"
LOCK = ".lock"
# What a train.py / train_keras3.py run writes; --overwrite removes only these.
RUN_FILES = ("checkpoints", "logs", CONFIG, "summary.json", LOCK, owned_dir.MARKER)
EXTENDABLE = ("epochs", "test_examples")
# The flags that change a run's results (config.json); `keras` and `backend`
# exist where examples/train.py defined them.
CONFIG_FLAGS = {
    "dataset", "data_source", "idx_dir", "data_dir", "train_examples", "test_examples",
    "model", "criterion", "power", "random_seed_criterion", "scope", "schedule",
    "target_sparsity", "begin_step", "end_step", "frequency", "prune_fraction",
    "min_flips", "noise_scale", "epochs", "batch_size", "optimizer", "learning_rate",
    "warmup_steps", "seed", "mixed_precision", "keras", "backend", "schedule_epochs",
    "noise_on"}
# Configuration flags added after runs were written without them: the value such
# a run had (a resumed run is held to it).
RECORDED_LATER = {"noise_on": "prunable", "model_revision": 1}



def _named(key):
  """A configuration key as the user sets it."""
  return ("the model's revision (keras_signflip.models.REVISIONS)" if key == "model_revision"
          else f"--{key}")


def differences(old, new):
  """[(key, old value, new value)] over the keys of either config that differ."""
  return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)]


def _read_config(path):
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, ValueError) as e:
    raise common.UsageError(f"{path} is unreadable ({e}); it is the run's configuration, so "
                            "the run cannot be resumed safely. Start a new run with another "
                            "--output_dir.") from None
  if not isinstance(config, dict):
    raise common.UsageError(f"{path} does not hold a run configuration (a JSON object).")
  return config


class Run:
  """An opened run directory: its path, lock, and the configuration it runs with."""

  def __init__(self, path, config, resumed_config, lock_file):
    self.path, self.config, self.resumed_config = path, config, resumed_config
    self._lock = lock_file

  def close(self):
    self._lock.close()


def check_export_dir(path, overwrite):
  """--export_dir before training: absent, empty, or (with --overwrite) an earlier export."""
  if path:
    try:
      owned_dir.check_target(path, "export", overwrite, flag_hint="--overwrite")
    except ValueError as e:
      raise common.UsageError(f"--export_dir: {e}") from None


def open_run(path, config, resume, overwrite):
  """Checks (`inspect`), locks and records run directory `path`; returns a `Run`."""
  config, resumed = inspect(path, config, resume, overwrite)
  exists = os.path.isdir(path) and bool(os.listdir(path))
  lock = _lock(path)
  try:
    if exists and overwrite and not resume:
      for name in RUN_FILES:
        target = os.path.join(path, name)
        if name == LOCK:
          continue
        if os.path.isdir(target) and not os.path.islink(target):
          shutil.rmtree(target)
        elif os.path.lexists(target):
          os.remove(target)
    owned_dir.write_marker(path, "run")
    common.dump_json(config, os.path.join(path, CONFIG))
  except BaseException:
    lock.close()
    raise
  return Run(path, config, resumed, lock)


def inspect(path, config, resume, overwrite):
  """(the run's configuration, the stored one on --resume or None); changes nothing.

  `config` maps the run's configuration flags to their values, with
  "schedule_epochs" None unless given (then: the run's stored value on
  --resume, else "epochs"). Raises common.UsageError when the run may not
  start or resume here.
  """
  if os.path.lexists(path) and not os.path.isdir(path):
    raise common.UsageError(f"--output_dir={path} is a file, not a directory; choose "
                            "another --output_dir.")
  config_path = os.path.join(path, CONFIG)
  exists = os.path.isdir(path) and bool(os.listdir(path))
  legacy = exists and os.path.isfile(config_path) and owned_dir.read_marker(path) is None
  if exists and not (owned_dir.is_owned(path, "run") or legacy):
    raise common.UsageError(
        f"--output_dir={path} is a non-empty directory that no keras_signflip run wrote "
        f"(no {owned_dir.MARKER}); a run never writes into or deletes a user's files. "
        "Choose another --output_dir, or an empty one.")
  if exists and not (resume or overwrite):
    raise common.UsageError(f"--output_dir={path} holds an earlier run; pass --resume to "
                            "continue it, --overwrite to start it over, or choose another "
                            "--output_dir.")
  resumed = _read_config(config_path) if exists and resume and os.path.isfile(config_path) else None
  config = dict(config)
  if config.get("schedule_epochs") is None:
    config["schedule_epochs"] = (resumed.get("schedule_epochs", resumed.get("epochs"))
                                 if resumed else config["epochs"])
  if resumed is not None:
    resumed.setdefault("schedule_epochs", resumed.get("epochs"))
    for key, value in RECORDED_LATER.items():
      resumed.setdefault(key, value)
    # Keys the stored config lacks were not recorded by the version that wrote it.
    changed = [d for d in differences(resumed, {k: config.get(k) for k in resumed})
               if d[0] not in EXTENDABLE]
    if changed:
      lines = "\n".join(f"  {_named(k)}: {old!r} in the run, {new!r} now"
                        for k, old, new in changed)
      raise common.UsageError(
          f"--resume: {path} was started with another configuration:\n{lines}\n"
          "A run keeps the configuration it started with: rerun with the run's values, or "
          "start a new run in another --output_dir (--overwrite replaces this one). Only "
          f"{', '.join('--' + k for k in EXTENDABLE)} may change on --resume.")
    if config["epochs"] < resumed["epochs"]:
      raise common.UsageError(f"--resume: --epochs={config['epochs']} is below the run's "
                              f"{resumed['epochs']}; a run is extended, never shortened.")
  return config, resumed


def _lock(path):
  os.makedirs(path, exist_ok=True)
  handle = open(os.path.join(path, LOCK), "a")  # pylint: disable=consider-using-with
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.close()
    raise common.UsageError(f"--output_dir={path} is in use by another running process; "
                            "wait for it to finish, or choose another --output_dir.") from None
  return handle


def config():
  """The run's configuration: the flags that change its results, and the revision of
  the model they build (a run of an older network never resumes in a newer one)."""
  config = {k: v.value for k, v in common.FLAGS.__flags.items() if k in CONFIG_FLAGS}  # pylint: disable=protected-access
  config["model_revision"] = models.revision(common.FLAGS.model)
  return config


def prepare(steps_per_epoch):
  """Checks the run directory and the schedule before anything is built or written;
  returns the opened `run_dir.Run` (None without --output_dir)."""
  if common.FLAGS.output_dir:
    resolved, _ = inspect(common.FLAGS.output_dir, config(), common.FLAGS.resume,
                          common.FLAGS.overwrite)
    common.FLAGS.schedule_epochs = resolved["schedule_epochs"]
  common.check_schedule(steps_per_epoch)
  if common.FLAGS.output_dir:
    return open_run(common.FLAGS.output_dir, config(), common.FLAGS.resume, common.FLAGS.overwrite)
  return None
