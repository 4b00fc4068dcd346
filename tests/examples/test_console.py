"""examples/console.py: what the binaries print, and what framework output they let through.

The binaries themselves run in tests/examples/test_faults_binaries.py (default output: only
their own lines) and tests/test_keras3_flipout.py (-v brings Keras' lines back).
"""
import importlib
import io
import os
import subprocess
import sys

import pytest
from absl import flags

from examples import console

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("argv,expected", [
    (["train"], None),
    (["train", "-v", "0"], 0),
    (["train", "-v=1"], 1),
    (["train", "--verbosity=-2"], -2),
    (["train", "--verbosity", "-1", "--epochs=2"], -1),
    (["train", "-v", "0", "--verbosity=-3"], -3),  # absl keeps the last
    (["train", "--verbose=2"], None),  # Keras' flag, not absl's
    (["train", "--", "-v", "0"], None),  # after "--": arguments, not flags
    (["train", "-v"], None),
])
def test_requested_verbosity_reads_the_command_line_as_absl_would(argv, expected):
  assert console.requested_verbosity(argv) == expected


def test_cpp_log_level_follows_absl_severities():
  # absl: 0 info, -1 warning, -2 error, -3 fatal; TF_CPP_MIN_LOG_LEVEL: 0, 1, 2, 3.
  assert [console.cpp_log_level(v) for v in (2, 0, -1, -2, -3, -9)] == [0, 0, 1, 2, 3, 3]
  assert console.cpp_log_level(None) == 3


_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796571045.804476   18246 port.cc:153] oneDNN custom operations are on.\n",
    "W0000 00:00:1796571053.114565   18246 google_auth_provider.cc:196] no token\n",
    "E0000 00:00:1796571052.519873   18246 cuda_platform.cc:52] failed call to cuInit\n",
    "F0000 00:00:1796571052.519873   18246 x.cc:1] fatal\n",
    "/a/b.py:74: UserWarning: a Python warning\n",
    "  its source line\n",
]

# Writes _LINES to file descriptor 2 (as C++ code does) and to sys.stderr inside
# quiet_imports, then a line after it; argv[1] is "fail" to raise inside.
_SCRIPT = """
import os, sys
from examples import console
lines = {lines!r}
try:
  with console.quiet_imports(argv=["x"] + sys.argv[2:]):
    os.write(2, "".join(lines[:5]).encode())
    sys.stderr.write("".join(lines[5:]))
    if sys.argv[1] == "fail":
      raise ImportError("no module")
except ImportError:
  pass
print(os.environ["TF_CPP_MIN_LOG_LEVEL"])
sys.stderr.write("after\\n")
"""


def _run(*args, **env):
  environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  environ.update(env, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-c", _SCRIPT.format(lines=_LINES), *args],
                        cwd=ROOT, env=environ, capture_output=True, text=True, check=True)


@pytest.mark.parametrize("args,env,level", [
    (("ok",), {}, 3),  # default: C++ lines below fatal held back
    (("ok", "-v", "-1"), {}, 1),  # warnings and above
    (("ok", "-v", "0"), {}, 0),  # everything
    (("ok", "-v", "0"), {"TF_CPP_MIN_LOG_LEVEL": "2"}, 2),  # the user's setting wins
])
def test_quiet_imports_passes_on_what_the_level_lets_through(args, env, level):
  result = _run(*args, **env)
  assert result.stdout.strip() == str(level)
  severity = {"I": 0, "W": 1, "E": 2, "F": 3}
  expected = [line for line in _LINES[1:5] if severity[line[0]] >= level] + _LINES[5:]
  if level == 0:
    expected = _LINES[:1] + expected  # nothing held: absl's banner too
  assert result.stderr == "".join(expected) + "after\n"


def test_quiet_imports_passes_on_everything_when_an_import_fails():
  assert _run("fail").stderr == "".join(_LINES) + "after\n"


def test_quiet_imports_inactive_changes_nothing():
  environ = {}
  with console.quiet_imports(active=False, argv=["x"], environ=environ):
    pass
  assert environ == {}


@pytest.mark.parametrize("argv,verbose", [
    (["train"], 0),  # the binary's own lines only
    (["train", "-v", "0"], 2),  # Keras' line per epoch back
    (["train", "-v", "-1"], 0),  # warnings only: Keras' line is info
    (["train", "-v", "0", "--verbose=1"], 1),
    (["train", "--verbose=2"], 2),  # the old flag still works
])
def test_keras_verbose(argv, verbose):
  importlib.import_module("examples.train")  # defines --verbose
  FLAGS.unparse_flags()
  FLAGS(argv)
  try:
    assert console.keras_verbose() == verbose
  finally:
    FLAGS.unparse_flags()
    FLAGS(["train"])


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_bar_only_on_a_terminal_and_erased_before_the_epoch_line():
  FLAGS.unparse_flags()
  FLAGS(["train"])
  assert console.progress_bar(object, 4, str, io.StringIO()) == []  # a file or pipe
  screen = _Terminal()
  [bar] = console.progress_bar(object, 4, lambda e: f"epoch {e + 1}/1", screen)
  bar.interval = 0.0
  bar.on_epoch_begin(0)
  for step in range(4):
    bar.on_train_batch_end(step, {"loss": 1.0 / (step + 1)})
  drawn = screen.getvalue().split("\r")[1:]
  assert drawn == [f"epoch 1/1 [{'=' * (30 * k // 4)}{'.' * (30 - 30 * k // 4)}] {k}/4 "
                   f"loss {1 / k:.4f}" for k in (1, 2, 3, 4)]
  bar.on_epoch_end(0)
  # Erased: blanks over the bar, and the cursor back at the start of the line.
  assert screen.getvalue().endswith("\r" + " " * len(drawn[3]) + "\r")
  before = screen.getvalue()
  bar.on_train_end()
  assert screen.getvalue() == before  # nothing left to erase
