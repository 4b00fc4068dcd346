"""Issue 28's studies in BENCHMARKS.md: their answer lines, from their raw rows alone
(no TensorFlow). Both pair their runs with the main grid's rows, so only that grid's
report carries them."""
import os

from benchmarks import length_analysis, variants_analysis


def answer_lines(out_dir, rel):
  """The studies' section of the report of the grid at `out_dir` ([] for any grid but
  `benchmarks/results/grid`); `rel` turns a repository path into a link from the report."""
  if os.path.abspath(out_dir) != os.path.abspath(length_analysis.GRID_RAW):
    return []
  length = length_analysis.answer(length_analysis.load_rows())
  variants = variants_analysis.answer(variants_analysis.effects(variants_analysis.report_rows()))
  length_md = os.path.join(length_analysis.ROOT, "README.md")
  variants_md = os.path.join(variants_analysis.ROOT, "README.md")
  return (["## Beyond the 10-epoch grid", "",
           f"**[The flip term against training length]({rel(length_md)})** (FlipOut's regime, "
           "10 to 100 epochs, 5 seeds a cell; ahead / behind: 95% interval above / below 0):", ""]
          + [line for line in length if line.startswith("- **")]
          + ["", f"**[Flip-aware variants]({rel(variants_md)})** (10 epochs, p chosen on a "
             "validation split, paired with this grid's rows on the test set):", ""]
          + variants + [""])
