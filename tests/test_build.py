"""BUILD names every module, test and example."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _srcs():
  """Every src of every BUILD file, as a path from the repository root."""
  out = set()
  for build in ROOT.rglob("BUILD"):
    if ".venv" in build.parts:
      continue
    package = build.parent.relative_to(ROOT)
    for src in re.findall(r'"([\w/]+\.py)"', build.read_text()):
      out.add(str(package / src) if str(package) != "." else src)
  return out


def test_build_lists_every_python_file():
  listed = _srcs()
  files = {str(p.relative_to(ROOT)) for d in ("keras_signflip", "tests", "examples", "benchmarks")
           for p in (ROOT / d).rglob("*.py")}
  missing = sorted(files - listed)
  assert not missing, f"BUILD does not name: {missing}"
  stale = sorted(f for f in listed if not (ROOT / f).exists())
  assert not stale, f"BUILD names missing files: {stale}"


def test_every_test_file_has_a_py_test():
  text = (ROOT / "BUILD").read_text()
  for p in (ROOT / "tests").rglob("test_*.py"):
    if p.parent.name == "keras3":  # run inside each backend's process, not by Bazel
      continue
    assert re.search(r'py_test\(\s*name = "%s"' % p.stem, text), p.stem
