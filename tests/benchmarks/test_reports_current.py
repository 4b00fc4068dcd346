"""The committed reports of issue 28's studies are what their committed raw rows give:
regenerated here from benchmarks/results/*/raw/ and compared with the files in the
repository (a raw row committed without `make report` fails this)."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _uncommitted_rows():
  """Raw rows in the checkout that git does not track (a study running here); [] where
  git cannot tell."""
  try:
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--",
                             "benchmarks/results"], cwd=ROOT, capture_output=True, text=True,
                            check=True, timeout=60).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [line[3:] for line in status.splitlines()
          if line.startswith("??") and "/raw/" in line and line.endswith(".json")]


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
  monkeypatch.chdir(ROOT)  # the studies name their directories relative to the checkout
  uncommitted = _uncommitted_rows()
  if uncommitted:  # the reports are checked against committed rows (as CI's clean clone has)
    pytest.skip(f"{len(uncommitted)} raw rows not committed yet (e.g. {uncommitted[0]}): "
                "`make report` and commit them with the reports")


def _committed(path):
  with open(os.path.join(ROOT, path)) as f:
    return f.read()


def test_length_report_is_its_raw_rows(tmp_path):
  from benchmarks import length_analysis as study  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "README.md")
  study.report(study.load_rows(), path,
               f"`{study.ROOT}/e*/raw/` and (10 epochs) `{study.GRID_RAW}/raw/`")
  with open(path) as f:
    assert f.read() == _committed(os.path.join(study.ROOT, "README.md")), (
        "benchmarks/results/length/README.md is stale: run `make report`")


def test_variants_report_is_its_raw_rows():
  from benchmarks import variants_analysis as study  # pylint: disable=g-import-not-at-top
  assert study.report() == _committed(os.path.join(study.ROOT, "README.md")), (
      "benchmarks/results/variants/README.md is stale: run `make report`")


def test_benchmarks_md_is_its_raw_rows(tmp_path):
  """The whole of BENCHMARKS.md (the grid's tables, answer and the studies' lines), made
  again by `benchmarks.compare --report_only` from a copy of the committed results (its
  plots land in the copy), without the data (a report reads only the raw rows and the
  data's description); only the lines that describe the machine writing it may
  differ."""
  import shutil  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  shutil.copytree(os.path.join(ROOT, "benchmarks", "results"),
                  tmp_path / "benchmarks" / "results")
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.compare", "--report_only",
       "--output_dir=benchmarks/results/grid", "--report=BENCHMARKS.md",
       "--idx_dir=/nonexistent/idx"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  machine = ("- Date: ", "- Machine: ", "- Versions: ")
  kept = lambda text: [l for l in text.splitlines() if not l.startswith(machine)]  # noqa: E731
  got, want = kept((tmp_path / "BENCHMARKS.md").read_text()), kept(_committed("BENCHMARKS.md"))
  stale = [l for l in got if l not in want] + [l for l in want if l not in got]
  assert got == want, "BENCHMARKS.md is stale (run `make report`); lines that differ:\n" + (
      "\n".join(stale[:10]))
