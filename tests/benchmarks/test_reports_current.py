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


def test_benchmarks_md_carries_the_studies_current_lines():
  from benchmarks import length_analysis, studies  # pylint: disable=g-import-not-at-top
  rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731
  lines = studies.answer_lines(length_analysis.GRID_RAW, rel)
  assert lines, "the main grid's report carries the studies"
  text = _committed("BENCHMARKS.md")
  stale = [line for line in lines if line and line not in text.splitlines()]
  assert not stale, "BENCHMARKS.md is stale (run `make report`):\n" + "\n".join(stale)
