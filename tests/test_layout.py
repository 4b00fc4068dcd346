"""The tree shows the design: dependencies point one way, generic code imports no framework.

Checked on the source (ast), independently of whether the modules import:
- keras_signflip's modules form no import cycle (lazy imports included);
- the framework-free core and `lottery/` import no framework at module level;
- `keras3/` never imports TensorFlow, tf_keras or TF-MOT;
- no module installs anything (no subprocess, pip or apt-get);
- every name the README and the guides under docs/ document still imports, and every
  `ksf.x.y` / `keras_signflip.x.y` they name resolves.
"""
import ast
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_signflip"
FRAMEWORKS = {"tensorflow", "tf_keras", "tensorflow_model_optimization", "keras", "jax", "torch"}
TF_FAMILY = {"tensorflow", "tf_keras", "tensorflow_model_optimization"}
# Framework-free: the core and the lottery package. (tf_keras/ and keras3/ are
# the families; data and models serve the binaries.)
GENERIC = ["__init__.py", "_old_names.py", "api.py", "arguments.py", "array_namespace.py",
           "callback_base.py", "callbacks.py", "connection_sensitivity.py", "criteria.py",
           "custom_loop.py",
           "distributions.py", "dropout_candidates.py", "dynamic.py", "families.py",
           "flipout.py", "hard_concrete.py", "hoyer_square.py", "inspection.py",
           "kernel_methods.py", "mask_rules.py", "owned_dir.py", "pruner_hooks.py",
           "schedule_checks.py",
           "sparsity_schedules.py", "summaries.py", "shrinking.py", "units.py",
           "variational_dropout.py", "wrapper_config.py",
           "lottery/__init__.py", "lottery/config.py", "lottery/early_bird.py",
           "lottery/files.py", "lottery/loop.py", "lottery/plots.py", "lottery/reinit.py",
           "lottery/rewind.py", "lottery/run_dir.py"]


def _module_name(path):
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, top_level_only=False):
  """Absolute module names imported by `path` (all, or at module level only)."""
  tree = ast.parse(path.read_text())
  nodes = tree.body if top_level_only else list(ast.walk(tree))
  out = set()
  for node in nodes:
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      out.add(node.module)
      out.update(f"{node.module}.{a.name}" for a in node.names)
  return out


def _own_modules():
  return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_no_import_cycles():
  modules = _own_modules()
  graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
  # A module importing a package it lives in is not an edge back (Python runs
  # the package's __init__ first): only count edges into a package's __init__
  # from outside that package.
  for m in graph:
    graph[m] = {i for i in graph[m] if not (m.startswith(i + ".") and i != "keras_signflip")
                and i != "keras_signflip"}
  state = {}

  def visit(node, trail):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        pytest.fail("import cycle: " + " -> ".join(trail + [node, nxt]))
      if nxt not in state:
        visit(nxt, trail + [node])
    state[node] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [])


@pytest.mark.parametrize("relative", GENERIC)
def test_generic_modules_import_no_framework_at_module_level(relative):
  imported = {name.split(".")[0] for name in _imports(PACKAGE / relative, top_level_only=True)}
  assert not imported & FRAMEWORKS, f"{relative} imports {sorted(imported & FRAMEWORKS)}"
  family_modules = {n for n in _imports(PACKAGE / relative, top_level_only=True)
                    if n.startswith(("keras_signflip.tf_keras", "keras_signflip.keras3"))}
  assert not family_modules, f"{relative} imports a family at module level: {family_modules}"


def test_keras3_family_never_imports_tensorflow():
  for path in (PACKAGE / "keras3").glob("*.py"):
    imported = {name.split(".")[0] for name in _imports(path)}
    assert not imported & TF_FAMILY, f"{path.name} imports {sorted(imported & TF_FAMILY)}"
    assert not any(n.startswith("keras_signflip.tf_keras") for n in _imports(path)), path.name


def test_library_installs_nothing():
  for path in PACKAGE.rglob("*.py"):
    text = path.read_text()
    assert "subprocess" not in _imports(path) and "os.system" not in text, path
    assert not re.search(r"apt-get\"|\"pip\"|'pip'|ensurepip", text), path


DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DOCUMENTED = [  # (module, names) README.md and docs/ document (test_documented_names_in_docs)
    ("keras_signflip", ["prune_sign_flip", "strip_pruning", "UpdatePruningStep", "Pruner",
                        "SignFlipSummaries", "flip_counts", "masks", "set_reference",
                        "sparsity_report", "prune_scope", "link_global", "with_gradient_noise",
                        "PruneSignFlip", "EarlyBird", "RewindPoint", "export_saved_model",
                        "collect_wrappers", "flip_states", "criteria"]),
    ("keras_signflip.criteria", ["Magnitude", "SignFlip", "Hybrid", "LargeFinalSameSign",
                                 "MagnitudeIncrease", "Movement", "Random"]),
    ("keras_signflip.lottery", ["LotteryConfig", "run", "load_masks", "save_masks", "plot",
                                "RunFiles", "rewind", "reinit", "early_bird"]),
    ("keras_signflip.lottery.rewind", ["RewindPoint", "snapshot", "restore", "steps"]),
    ("keras_signflip.lottery.reinit", ["reinitialize", "MODES"]),
    ("keras_signflip.lottery.early_bird", ["EarlyBird"]),
    ("keras_signflip.tf_keras", ["prune_sign_flip", "UpdatePruningStep", "PruneSignFlip",
                                 "PruningState", "schedules", "export"]),
    ("keras_signflip.tf_keras.schedules", ["GeometricSparsity"]),
    ("keras_signflip.tf_keras.export", ["export_saved_model", "export_tflite", "gzip_size"]),
    ("keras_signflip.keras3", ["prune_sign_flip", "UpdatePruningStep", "PruneSignFlip",
                               "PruningState", "schedules", "export"]),
    ("keras_signflip.keras3.schedules", ["ConstantSparsity", "PolynomialDecay",
                                         "GeometricSparsity"]),
    ("keras_signflip.data", ["load", "pipeline"]),
    ("keras_signflip.models", ["lenet_300_100", "lenet5", "conv2", "conv4", "conv6",
                               "resnet20"]),
    # 0.2 paths, kept working (keras_signflip._old_names):
    ("keras_signflip.rewind", ["RewindPoint"]),
    ("keras_signflip.reinit", ["reinitialize"]),
    ("keras_signflip.early_bird", ["EarlyBird"]),
    ("keras_signflip.schedules", ["GeometricSparsity"]),
    ("keras_signflip.export", ["export_saved_model"]),
    ("keras_signflip.callbacks", ["UpdatePruningStep", "SignFlipSummaries"]),
]


@pytest.mark.parametrize("module,names", DOCUMENTED, ids=[m for m, _ in DOCUMENTED])
def test_documented_names_import(module, names):
  code = f"from {module} import {', '.join(names)}"
  exec(code, {})  # pylint: disable=exec-used


def _docs_text():
  return "\n".join(p.read_text(encoding="utf-8") for p in DOC_PAGES)


def test_documented_names_in_docs():
  """The list above follows the docs: each of its names appears on some page."""
  text = _docs_text()
  missing = [(m, n) for m, names in DOCUMENTED for n in names
             if not re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", text)]
  assert not missing, f"names in DOCUMENTED that no page of README.md or docs/ mentions: {missing}"


# Dotted names the docs mention that are documented as failing on purpose.
FAILING_ON_PURPOSE = {"keras_signflip.paths"}


def test_dotted_names_in_docs_resolve():
  """`ksf.a.b` and `keras_signflip.a.b` on any page: a module, or an attribute of one."""
  import importlib  # pylint: disable=g-import-not-at-top
  text = re.sub(r"```python.*?```", "", _docs_text(), flags=re.S)  # those blocks run
  names = {("keras_signflip." + m.group(2)).rstrip(".")
           for m in re.finditer(r"(?<![\w/.])(ksf|keras_signflip)\.([A-Za-z_][\w.]*)", text)
           if not m.group(2).endswith(("md", "json"))}  # file names: reference pages, markers
  unresolved = []
  for name in sorted(names - FAILING_ON_PURPOSE):
    parts = name.split(".")
    obj, i = None, len(parts)
    while i > 0:  # the longest importable module prefix, then attributes
      try:
        obj = importlib.import_module(".".join(parts[:i]))
        break
      except ImportError:
        i -= 1
    try:
      for attr in parts[i:]:
        obj = getattr(obj, attr)
    except AttributeError:
      unresolved.append(name)
  assert len(names) > 30, sorted(names)  # the scan finds the docs' names
  assert not unresolved, f"names on the docs' pages that do not resolve: {unresolved}"


def test_old_module_is_the_new_module_object():
  import keras_signflip.rewind as old  # pylint: disable=g-import-not-at-top
  from keras_signflip.lottery import rewind as new  # pylint: disable=g-import-not-at-top
  assert old is new and new.__spec__.name == "keras_signflip.lottery.rewind"
  import keras_signflip as ksf  # pylint: disable=g-import-not-at-top
  assert ksf.schedules is sys.modules["keras_signflip.tf_keras.schedules"]


def test_renamed_module_names_the_new_one():
  with pytest.raises(ImportError, match="keras_signflip.families"):
    import keras_signflip.paths  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import


def test_import_sets_nothing_and_imports_no_framework():
  code = ("import os, sys\n"
          "before = dict(os.environ)\n"
          "import keras_signflip as ksf\n"
          "from keras_signflip import lottery, callbacks, summaries\n"
          "loaded = sorted(m for m in ('tensorflow', 'tf_keras', 'keras', 'jax', 'torch',\n"
          "                'tensorflow_model_optimization') if m in sys.modules)\n"
          "assert not loaded, loaded\n"
          "assert dict(os.environ) == before\n"
          "print('ok')\n")
  env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_tf_keras_family_without_tf_keras_names_the_install():
  """TensorFlow present, its tf.keras Keras 3, tf_keras missing: one line saying what to install."""
  code = ("import importlib.abc, sys\n"
          "class Block(importlib.abc.MetaPathFinder):\n"
          "  def find_spec(self, name, path=None, target=None):\n"
          "    if name.split('.')[0] == 'tf_keras':\n"
          "      raise ImportError('blocked: ' + name)\n"
          "sys.meta_path.insert(0, Block())\n"
          "import keras_signflip.tf_keras\n")
  env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("ImportError: keras_signflip's tf_keras family (TF-MOT) needs Keras 2")
  assert "pip install 'tf-keras==" in last
