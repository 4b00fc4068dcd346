"""MkDocs hooks: the generated reports outside docs/ join the site at their repo paths.

BENCHMARKS.md and the studies' READMEs (benchmarks/results/{length,variants}) are
written by `make report` from raw JSON; the site shows them as they are (with the
figures they link), so no guide restates their numbers. Inside the site each sits at its path in the
repository, so its own relative links hold; a docs page links to it as it would
on disk (`../BENCHMARKS.md` from docs/guides/x.md is `../../BENCHMARKS.md`), and
`on_page_markdown` turns such a link into the site's path.
"""
import ast
import os
import pathlib
import posixpath
import re

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORTS = ["BENCHMARKS.md", "benchmarks/results/length/README.md",
           "benchmarks/results/variants/README.md"]
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s#]+)(#[^)\s]*)?\)")


def _linked_files(report):
  """The report and the relative targets of its links that exist (its figures)."""
  text = (ROOT / report).read_text(encoding="utf-8")
  out = [report]
  for _, target, _ in _LINK.findall(text):
    if "://" in target:
      continue
    path = posixpath.normpath(posixpath.join(posixpath.dirname(report), target))
    if (ROOT / path).is_file():
      out.append(path)
  return out


def _included():
  return sorted({p for report in REPORTS for p in _linked_files(report)})


def on_files(files, config):
  for path in _included():
    files.append(File(path, str(ROOT), config["site_dir"], config["use_directory_urls"]))
  return files


def package_layout():
  """A table of every module of keras_signflip and the first line of its docstring."""
  rows = ["| module | what |", "|---|---|"]
  for path in sorted((ROOT / "keras_signflip").rglob("*.py")):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    rows.append(f"| `{'.'.join(parts)}` | {first.replace('|', chr(92) + '|')} |")
  return "\n".join(rows) + "\n"


def on_page_markdown(markdown, page, config, files):
  """Links from a docs page to an included report: its repo path becomes its site path;
  the `package-layout` marker becomes the table of modules."""
  markdown = markdown.replace("<!-- package-layout -->", package_layout())
  if not page.file.abs_src_path:
    return markdown
  docs_dir = pathlib.Path(config["docs_dir"]).resolve()
  here = pathlib.Path(page.file.abs_src_path).resolve().parent
  if docs_dir not in (here, *here.parents):
    return markdown  # a report itself: its links are repo-relative, so site-relative
  included = set(_included())

  def rewrite(match):
    prefix, target, anchor = match.group(1), match.group(2), match.group(3) or ""
    if "://" in target:
      return match.group(0)
    repo_path = os.path.relpath((here / target).resolve(), ROOT).replace(os.sep, "/")
    if repo_path not in included:
      return match.group(0)
    site_here = os.path.relpath(here, docs_dir)
    return f"{prefix}{posixpath.relpath(repo_path, site_here)}{anchor})"

  return _LINK.sub(rewrite, markdown)
