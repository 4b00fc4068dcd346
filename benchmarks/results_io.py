"""Writing benchmark results: one JSON file, atomically (shared by the benchmark
binaries, which cannot import each other: each defines its own absl flags)."""
import contextlib
import fcntl
import functools
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import zlib

__all__ = ["write_json", "write_row", "update_json", "write_text", "read_raw", "shard_jobs",
           "parse_shard", "refuse_off_spec", "commands", "log_command", "provenance"]


def parse_shard(text):
  """'i/n' -> (i, n) with 0 <= i < n; a ValueError naming the form otherwise."""
  try:
    shard, shards = (int(x) for x in text.split("/"))
  except ValueError:
    shard = shards = 0
  if not 0 <= shard < shards:
    raise ValueError(f"--shard={text!r} must be i/n with 0 <= i < n (e.g. 0/2 and 1/2 for "
                     "two processes).")
  return shard, shards


def refuse_off_spec(program, differences, directories):
  """Exits, before anything runs, when a run off a study's specification would write into
  the study's own directories: its rows would join cells of another configuration.

  differences: what is off spec ("--epochs=3 (the study's: 10)"), empty when nothing is;
  directories: {flag name: (value, the study's default)}.
  """
  shared = [name for name, (value, default) in directories.items()
            if os.path.abspath(value) == os.path.abspath(default)]
  if differences and shared:
    sys.exit(f"{program}: error: {', '.join(differences)}: its rows would join cells of "
             f"another configuration in {' and '.join('--' + n for n in shared)}, the "
             f"study's own. Pass {' and '.join('--' + n for n in directories)} of their own, "
             "or keep the study's values.")


def shard_jobs(jobs, shard, shards, finished):
  """Shard `shard` of `shards`: the unfinished jobs whose key hashes to it (CRC-32 of
  the job's repr, modulo `shards`), in list order. A job's shard depends on the job
  alone, never on what else the list holds or what has finished, so shards started at
  different times, or on a list that grows as runs finish, cover every job between
  them; shares are equal only on average."""
  return [job for job in jobs
          if zlib.crc32(repr(job).encode()) % shards == shard and not finished(job)]


def _replace_with(path, write):
  """Runs write(file) on a temporary file of its own beside `path`, then renames it to
  `path`: an interrupted writer never leaves a half-written file, and two processes
  writing at once never share a temporary file."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                             prefix=os.path.basename(path) + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def write_json(path, value):
  """Writes `value` to `path` as JSON, atomically (`_replace_with`)."""
  _replace_with(path, lambda f: json.dump(value, f, indent=1, sort_keys=True))


def update_json(path, entries):
  """Writes `path`'s JSON object with its top-level `entries` replaced or
  added, keeping the others (a run that measured only some of them)."""
  previous = {}
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
  write_json(path, {**previous, **entries})


def write_text(path, text):
  """Writes `text` to `path`, atomically (`_replace_with`)."""
  _replace_with(path, lambda f: f.write(text))


def read_raw(directory):
  """Every JSON row under directory/raw/, in file-name order ([] if there is none)."""
  raw = os.path.join(directory, "raw")
  rows = []
  for name in sorted(os.listdir(raw)) if os.path.isdir(raw) else []:
    if name.endswith(".json"):
      with open(os.path.join(raw, name)) as f:
        rows.append(json.load(f))
  return rows


def commands(directory):
  """The commands logged as having written `directory`'s raw results, oldest first."""
  path = os.path.join(directory, "commands.json")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


@contextlib.contextmanager
def _locked(path):
  """An exclusive lock on `path` (created if missing) for the block: shards that start
  together take turns at a read-modify-write."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def log_command(directory, module):
  """Appends this process's command line (`python -m module` and its arguments) to
  `directory`'s commands.json, the provenance its report lists (under a lock: two
  shards starting together both get their line)."""
  command = (f"python -m {module} " + " ".join(sys.argv[1:])).strip()
  with _locked(os.path.join(directory, ".commands.lock")):
    write_json(os.path.join(directory, "commands.json"), commands(directory) + [command])


@functools.lru_cache(maxsize=None)
def provenance():
  """{"keras_signflip": installed version, "commit": this checkout's git commit, "dirty":
  whether its code (keras_signflip/, benchmarks/ but results, examples/) had uncommitted
  changes}; None where unknown (no git, not installed). Cached: a binary calls it when it
  starts, so its rows name the code it loaded even if the checkout moves on meanwhile."""
  try:
    version = importlib.metadata.version("keras_signflip")
  except importlib.metadata.PackageNotFoundError:
    version = None
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  def git(*args):
    try:
      return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                            check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
      return None
  commit = git("rev-parse", "HEAD")
  status = (git("status", "--porcelain", "--untracked-files=no", "--", "keras_signflip",
                "benchmarks", "examples", ":(exclude)benchmarks/results") if commit else None)
  return {"keras_signflip": version, "commit": commit,
          "dirty": None if status is None else bool(status)}


def write_row(path, row):
  """Writes one run's raw row (`write_json`) with the code that produced it (`provenance`),
  so rows of different dates can be audited against each other."""
  write_json(path, dict(row, code=provenance()))
