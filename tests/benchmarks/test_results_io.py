"""benchmarks/results_io.py: how shards split a study's jobs, and what a raw row records."""
import json
import os

import pytest

from benchmarks import results_io


def test_shards_started_at_different_times_cover_every_job():
  jobs = list(range(11))
  finished = set()
  # Shard 0 starts on a fresh study and finishes three of its jobs...
  first = results_io.shard_jobs(jobs, 0, 2, finished.__contains__)
  finished.update(first[:3])
  # ...then shard 1 starts: it must take every job shard 0 will not run.
  second = results_io.shard_jobs(jobs, 1, 2, finished.__contains__)
  assert sorted(set(first) | set(second)) == jobs
  assert not set(first) & set(second)
  # A shard started again later runs only what is still missing of its share.
  finished.update(second)
  assert results_io.shard_jobs(jobs, 1, 2, finished.__contains__) == []
  assert results_io.shard_jobs(jobs, 0, 2, finished.__contains__) == first[3:]
  assert results_io.shard_jobs(jobs, 0, 1, finished.__contains__) == first[3:]


def test_a_raw_row_carries_the_code_that_wrote_it(tmp_path):
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                        text=True, check=False).stdout.strip() or None
  path = str(tmp_path / "raw" / "run.json")
  results_io.write_row(path, {"seed": 3, "test_accuracy": 0.5})
  with open(path) as f:
    row = json.load(f)
  assert row["seed"] == 3 and row["test_accuracy"] == 0.5
  assert row["code"]["commit"] == head
  assert row["code"]["keras_signflip"] == importlib.metadata.version("keras_signflip")
  assert row["code"]["dirty"] in ((True, False) if head else (None,))


_LOGGER = r"""
import sys
from benchmarks import results_io
name, directory = sys.argv[1], sys.argv[2]
for i in range(60):
  sys.argv = ["x", f"--writer={name}", f"--i={i}"]
  results_io.log_command(directory, "m")
"""


def test_two_processes_logging_at_once_keep_every_line(tmp_path):
  """The commands log is read, extended and rewritten under a lock, through a temporary
  file of each writer's own: two shards starting together both keep their line."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=root)
  writers = [subprocess.Popen([sys.executable, "-c", _LOGGER, name, str(tmp_path)], env=env,
                              cwd=root) for name in ("a", "b")]
  assert [w.wait(timeout=120) for w in writers] == [0, 0]
  logged = results_io.commands(str(tmp_path))
  assert sorted(logged) == sorted(f"python -m m --writer={w} --i={i}" for w in "ab"
                                  for i in range(60))
  assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]  # none left behind


def test_shard_text_is_checked_with_a_message_naming_the_form():
  assert results_io.parse_shard("1/2") == (1, 2)
  for bad in ("2/2", "-1/2", "1", "a/b", "0/0", "1/2/3"):
    with pytest.raises(ValueError, match=r"must be i/n with 0 <= i < n"):
      results_io.parse_shard(bad)


def test_an_off_spec_run_is_refused_only_into_the_studys_own_directories(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  own = {"length_dir": (str(tmp_path / "x" / "length"), "x/length"),
         "grid_dir": (str(tmp_path / "g"), "x/grid")}
  with pytest.raises(SystemExit) as exit_:
    results_io.refuse_off_spec("p.py", ["--epochs=3 (the study's: 10)"], own)
  message = str(exit_.value)
  assert message.startswith("p.py: error: --epochs=3 (the study's: 10): ")
  assert "in --length_dir, the study's own" in message  # a relative and its absolute path agree
  assert "Pass --length_dir and --grid_dir of their own" in message
  # Directories of its own, or nothing off spec: nothing is refused.
  results_io.refuse_off_spec("p.py", ["--epochs=3"], {"length_dir": ("y", "x/length")})
  results_io.refuse_off_spec("p.py", [], own)
