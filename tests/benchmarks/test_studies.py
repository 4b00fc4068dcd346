"""benchmarks/studies.py: issue 28's studies join the main grid's report only."""
import os

from benchmarks import length_analysis, studies, variants_analysis


def test_only_the_main_grids_report_carries_the_studies(tmp_path):
  assert studies.answer_lines(str(tmp_path), os.path.relpath) == []
  lines = studies.answer_lines(length_analysis.GRID_RAW, os.path.relpath)
  assert lines[0] == "## Beyond the 10-epoch grid"
  text = "\n".join(lines)
  assert "(benchmarks/results/length/README.md)" in text
  assert "(benchmarks/results/variants/README.md)" in text
  # One trend line per model of the length study, and every variant difference.
  models = {r["model"] for r in length_analysis.load_rows()}
  assert sum(line.startswith("- **") for line in lines) == len(models)
  for a, b, _ in variants_analysis.EFFECTS:
    assert sum(line.startswith(f"- {a} − {b} (") for line in lines) == 1, (a, b)
