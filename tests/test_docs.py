"""Docs tested like code: README.md and docs/**/*.md run, name real flags, quote real figures.

- Every ```python block runs. The blocks of one page run in order in one namespace, in a
  fresh working directory, on the tiny data of the page's hidden setup. Comments in the
  page's source steer the next python block (the reader sees none of them rendered):
    <!-- docs-test: setup ... -->     code run first (tiny arrays, a model to prune);
    <!-- docs-test: keras3 -->        the block runs in a Keras 3 process (JAX backend);
    <!-- docs-test: replace A -> B ; C -> D -->   the block runs with A replaced by B
                                      (a shorter schedule, fewer rounds: same calls).
  tf_keras blocks run in this process; the Keras 3 blocks of every page run in one JAX
  subprocess (a namespace per page), since tf_keras and Keras 3 cannot share a process
  here (see tests/test_keras3.py). A small collector rather than pytest-markdown-docs or
  mktestdocs: those run each block as written, and the hidden setups, the Keras 3 process
  and the replace step would need hooks of our own anyway (and one more dependency).
- Every `--flag` on those pages is a flag an example or benchmark binary defines; every
  `make X` a Makefile target; every `keras_signflip[extra]` an extra of setup.py.
- A paragraph that names a results file (a code span or link to a .json, .csv or .md
  under benchmarks/ or docs/, BENCHMARKS.md, or benchmarks/anchors.py for the papers'
  published figures) quotes figures from it: each decimal number in it must appear in one
  of the files it names (JSON/CSV: a value that rounds to it, as a fraction or in
  percent). A measured figure (a decimal with ×, %, s, ms or points) in a paragraph that
  names no such file fails on results pages.
- Every name in a docstring's Args section is a parameter of its function (the API
  reference renders them; mkdocs.yml leaves that check to this test).
"""
import csv
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORTS = {"BENCHMARKS.md", "benchmarks/results/length/README.md"}
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
# Pages whose measured figures must all name their source file.
RESULTS_PAGES = {"docs/guides/results.md", "docs/guides/performance.md",
                 "docs/guides/lottery.md", "README.md"}
# Flags of absl itself (every binary has them) and of other tools the pages name.
OTHER_FLAGS = {"help", "helpfull", "verbosity", "flagfile", "strict", "noise_only_prunable"}

_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(\w+)(.*?)-->", re.S)


def _rel(path):
  return path.relative_to(ROOT).as_posix()


def parse_page(path):
  """[(kind, line, code, directives)] for the fenced blocks of a page, in order.

  `directives` holds the docs-test comments seen since the previous python block:
  {"setup": [code, ...], "keras3": True, "replace": [(old, new), ...]}.
  """
  text = path.read_text(encoding="utf-8")
  lines = text.splitlines()
  blocks, pending, i = [], {"setup": [], "replace": []}, 0
  while i < len(lines):
    start = i
    fence = _FENCE.match(lines[i])
    if fence:
      j = i + 1
      while j < len(lines) and not lines[j].startswith("```"):
        j += 1
      code = "\n".join(lines[i + 1:j]) + "\n"
      blocks.append((fence.group(1), start + 1, code, pending))
      if fence.group(1) == "python":
        pending = {"setup": [], "replace": []}
      i = j + 1
      continue
    if "<!--" in lines[i] and "docs-test:" in lines[i]:
      j = i
      while "-->" not in lines[j]:
        j += 1
      comment = "\n".join(lines[i:j + 1])
      for name, body in _DIRECTIVE.findall(comment):
        if name == "setup":
          pending["setup"].append(textwrap.dedent(body.strip("\n")) + "\n")
        elif name == "keras3":
          pending["keras3"] = True
        elif name == "replace":
          for pair in body.split(" ; "):
            old, new = (s.strip() for s in pair.split(" -> "))
            pending["replace"].append((old, new))
        else:
          raise ValueError(f"{_rel(path)}:{start + 1}: unknown docs-test directive {name!r}")
      i = j + 1
      continue
    i += 1
  return blocks


def runnable(path, keras3):
  """[(line, code)] of the page's python blocks for one process kind, setups included."""
  out = []
  for kind, line, code, directives in parse_page(path):
    if kind != "python" or bool(directives.get("keras3")) != keras3:
      continue
    for old, new in directives["replace"]:
      assert old in code, f"{_rel(path)}:{line}: replace target {old!r} not in the block"
      code = code.replace(old, new)
    out.append((line, "".join(directives["setup"]) + code))
  return out


def run_blocks(blocks, label):
  """Runs (line, code) blocks in order in one namespace; raises naming the failing block."""
  namespace = {"__name__": "__docs__"}
  for line, code in blocks:
    try:
      exec(compile(code, f"{label}:{line}", "exec"), namespace)  # pylint: disable=exec-used
    except Exception as e:  # noqa: BLE001  (re-raised with the block's place)
      raise AssertionError(f"the python block at {label}:{line} failed: "
                           f"{type(e).__name__}: {e}") from e


def _pages_with(keras3):
  return [p for p in PAGES if runnable(p, keras3)]


@pytest.mark.parametrize("page", _pages_with(False), ids=_rel)
def test_python_blocks_run(page, tmp_path, monkeypatch):
  import tf_keras  # pylint: disable=g-import-not-at-top
  tf_keras.backend.clear_session()
  monkeypatch.chdir(tmp_path)
  run_blocks(runnable(page, keras3=False), _rel(page))


def test_keras3_python_blocks_run(tmp_path):
  """Every page's Keras 3 blocks, in one JAX process (one start-up), a namespace per page."""
  pytest.importorskip("jax")
  pages = {_rel(p): runnable(p, keras3=True) for p in _pages_with(True)}
  (tmp_path / "pages.json").write_text(json.dumps(pages))
  code = ("import json, os, sys\n"
          f"sys.path.insert(0, {str(ROOT)!r})\n"
          "from tests.test_docs import run_blocks\n"
          "for n, (label, blocks) in enumerate(json.load(open('pages.json')).items()):\n"
          "  os.makedirs(f'page{n}'); os.chdir(f'page{n}')\n"
          "  run_blocks(blocks, label)\n"
          "  os.chdir('..')\n")
  env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TF_USE_LEGACY_KERAS", None)
  result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-4000:]


def test_every_page_with_python_is_tested():
  """No python block escapes: each runs in exactly one of the two tests above."""
  for page in PAGES:
    count = sum(kind == "python" for kind, _, _, _ in parse_page(page))
    assert count == len(runnable(page, False)) + len(runnable(page, True)), _rel(page)
  assert _pages_with(False) and _pages_with(True)


# Flags, make targets and extras named on the pages.

def _defined_flags():
  names = set()
  for path in [*(ROOT / "examples").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
    names.update(re.findall(r"DEFINE_\w+\(\s*[\"'](\w+)[\"']", path.read_text()))
  return names


def _flag_uses(path):
  """--names in shell blocks and in code spans (python blocks excluded)."""
  text = path.read_text(encoding="utf-8")
  out = set()
  for kind, _, code, _ in parse_page(path):
    if kind in ("sh", "bash", "shell", ""):
      out.update(re.findall(r"(?<![\w-])--([a-z][a-z0-9_]*)", code))
  prose = re.sub(r"```.*?```", "", text, flags=re.S)
  for span in re.findall(r"`([^`\n]+)`", prose):
    out.update(re.findall(r"(?<![\w-])--([a-z][a-z0-9_]*)", span))
  return out


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_flags_exist(page):
  defined = _defined_flags()
  assert "target_sparsity" in defined  # the parse works
  unknown = {f for f in _flag_uses(page) - OTHER_FLAGS
             if f not in defined and not (f.startswith("no") and f[2:] in defined)}
  assert not unknown, f"{_rel(page)} names flags no binary defines: {sorted(unknown)}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_make_targets_and_extras_exist(page):
  text = page.read_text(encoding="utf-8")
  targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
  code = [span for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))]
  code += [c for kind, _, c, _ in parse_page(page) if kind in ("sh", "bash", "shell", "")]
  named = {t for c in code for t in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", c)}
  assert named <= targets, f"{_rel(page)}: no Makefile target {sorted(named - targets)}"
  setup = (ROOT / "setup.py").read_text()
  extras_block = setup[setup.index("extras_require"):]
  extras = set(re.findall(r"^\s*\"([\w-]+)\":", extras_block, re.M))
  for group in re.findall(r"keras_signflip\[([\w,-]+)\]", text):
    assert set(group.split(",")) <= extras, f"{_rel(page)}: unknown extra in [{group}]"


# Figures quoted from results files.

_NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\d.]|e-?\d)")
_MEASURED = re.compile(r"(?<![\w.])\d+\.\d+\s?(?:×|%|s\b|ms\b|µs\b|points\b)")
_SOURCE_SUFFIXES = (".json", ".csv", ".md")
SOURCE_MODULES = {"benchmarks/anchors.py"}  # holds the papers' published figures


def _paragraphs(path):
  """(line, text) of each paragraph or list item outside fenced blocks and comments."""
  text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), path.read_text("utf-8"),
                flags=re.S)
  out, current, start, in_fence = [], [], 0, False
  for n, line in enumerate(text.splitlines(), 1):
    if line.startswith("```"):
      in_fence = not in_fence
      line = ""
    if in_fence:
      continue
    new_item = re.match(r"\s*(?:[-*]|\d+\.)\s", line) and not line.startswith("  ")
    if (not line.strip() or new_item or line.startswith("|")) and current:
      out.append((start, " ".join(current)))
      current = []
    if line.strip():
      if not current:
        start = n
      current.append(line)
  if current:
    out.append((start, " ".join(current)))
  return out


def _sources(paragraph, page):
  named = re.findall(r"`([^`\s]+)`", paragraph) + re.findall(r"\]\(([^)#\s]+)", paragraph)
  out = []
  for name in named:
    for candidate in (ROOT / name, page.parent / name):
      candidate = candidate.resolve()
      rel = candidate.relative_to(ROOT).as_posix() if ROOT in candidate.parents else ""
      if candidate.is_file() and (rel in SOURCE_MODULES or rel.endswith(_SOURCE_SUFFIXES)
                                  and rel.startswith(("benchmarks/", "docs/", "BENCHMARKS"))):
        out.append(candidate)
        break
  return out


def _numbers_in(source):
  if source.suffix == ".json":
    values = []

    def walk(node):
      if isinstance(node, dict):
        for v in node.values():
          walk(v)
      elif isinstance(node, list):
        for v in node:
          walk(v)
      elif isinstance(node, (int, float)) and not isinstance(node, bool):
        values.append(float(node))
    walk(json.loads(source.read_text()))
    return values
  with open(source, newline="") as f:
    values = []
    for row in csv.reader(f):
      for cell in row:
        try:
          values.append(float(cell))
        except ValueError:
          pass
    return values


def _found(figure, source):
  if source.suffix in (".json", ".csv"):
    tolerance = 0.5 * 10 ** -len(figure.split(".")[1]) + 1e-9
    q = float(figure)
    return any(abs(v - q) <= tolerance or abs(100 * v - q) <= tolerance
               for v in _numbers_in(source))
  text = source.read_text(encoding="utf-8")
  return re.search(rf"(?<![\d.]){re.escape(figure)}(?!\d)", text) is not None


def _figure_pages():
  return [p for p in PAGES if _rel(p) not in REPORTS]


@pytest.mark.parametrize("page", _figure_pages(), ids=_rel)
def test_quoted_figures_are_in_their_sources(page):
  problems = []
  for line, paragraph in _paragraphs(page):
    sources = _sources(paragraph, page)
    prose = re.sub(r"`[^`]*`", "", paragraph)
    prose = re.sub(r"\]\([^)]*\)", "]", prose)
    if not sources:
      if _rel(page) in RESULTS_PAGES and _MEASURED.search(prose):
        problems.append(f"line {line}: figures {_MEASURED.findall(prose)} name no source file")
      continue
    for figure in _NUMBER.findall(prose):
      if not any(_found(figure, s) for s in sources):
        problems.append(f"line {line}: {figure} is in none of "
                        f"{[_rel(s) for s in sources]}")
  assert not problems, f"{_rel(page)}:\n" + "\n".join(problems)


def test_figure_check_catches_a_drifted_figure(tmp_path):
  """The check itself: a number absent from the named file is reported, a present one not."""
  source = ROOT / "benchmarks/results/overhead.json"
  value = _numbers_in(source)[0]
  assert _found(f"{value:.2f}", source)
  assert not _found("123456.78", source)


# Docstrings: the API reference renders their Args sections.

def _documented_args(doc):
  """Names in a Google-style Args section; "a, b: ..." documents a and b together."""
  names, in_args = [], False
  for line in (doc or "").splitlines():
    stripped = line.strip()
    if stripped in ("Args:", "Arguments:"):
      in_args, indent = True, None
      continue
    if in_args:
      if not stripped:
        continue
      width = len(line) - len(line.lstrip())
      if indent is None:
        indent = width
      if width < indent or (width == indent and stripped.endswith(":") and " " not in stripped):
        in_args = stripped in ("Args:", "Arguments:")
        continue
      match = re.match(r"([*\w][\w, *]*?)(?:\s*\([^)]*\))?:", stripped)
      if width == indent and match:
        names += [n.strip().lstrip("*") for n in match.group(1).split(",")]
  return names


def test_docstring_args_name_real_parameters():
  """A renamed argument whose docstring was not updated fails here (and in the reference)."""
  import ast  # pylint: disable=g-import-not-at-top
  problems, checked = [], 0
  for path in sorted((ROOT / "keras_signflip").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
      if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef)
                     and n.name == "__init__"), None)
        funcs = [(node, init)] if init else []
      elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        funcs = [(node, node)]
      else:
        continue
      for owner, func in funcs:
        names = _documented_args(ast.get_docstring(owner))
        if not names:
          continue
        a = func.args
        params = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
        params |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
        checked += 1
        unknown = [n for n in names if n not in params]
        if unknown:
          problems.append(f"{_rel(path)}:{owner.lineno} {owner.name}: {unknown}")
  assert checked > 20, checked  # the parse finds the Args sections
  assert not problems, "Args that are not parameters:\n" + "\n".join(problems)


def test_documented_args_reads_grouped_and_typed_names():
  doc = ("Summary.\n\n  Args:\n    model: a model.\n    data, loss (str): the batches\n"
         "      and the loss: continued.\n    **kwargs: the rest.\n\n  Returns:\n    x: y.\n")
  assert _documented_args(doc) == ["model", "data", "loss", "kwargs"]
