"""What the binaries print: their own lines by default, framework output with -v.

By default a binary prints where its data came from, one line per epoch (with
a live bar during the epoch when stdout is a terminal, none in a log file or
pipe) and its final report. absl's own -v/--verbosity flag brings back the
frameworks' output at that level: TensorFlow's C++ and Python logs, Keras'
per-epoch lines and its warnings (-v 0: everything, info included).

Only the binaries use this module, never `keras_signflip`: a library leaves
the log levels to its caller. It imports no TensorFlow, so a binary can enter
`quiet_imports` before anything imports TensorFlow.
"""
import contextlib
import logging
import os
import re
import sys
import tempfile
import time

from absl import flags
from absl import logging as absl_logging

FLAGS = flags.FLAGS
LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# A line of absl's C++ log: "I0000 00:00:1796571045.804476   18246 port.cc:153] oneDNN ..."
# (before absl's logging is initialised the time is seconds since the epoch).
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\s\]]+:\d+\] ")
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
# tf_keras logs this when saving a model that was never compiled (its check of the
# compiled metrics fails on the missing loss), which every export's size comparison
# does by design: TF-MOT's path saves the uncompiled stripped model.
_UNCOMPILED_SAVE = "Compiled the loaded model, but the compiled metrics have yet to be built"


def requested_verbosity(argv):
  """absl's -v/--verbosity as given on the command line `argv` (the last one wins), or None.

  Read before absl parses the flags: TensorFlow takes its C++ log level from the
  environment when it is imported, which is before `app.run` parses anything.
  """
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg == "--":
      break
    name, has_value, text = arg.partition("=")
    if not arg.startswith("-") or name.lstrip("-") not in ("v", "verbosity"):
      continue
    if not has_value:
      text = argv[i + 1] if i + 1 < len(argv) else ""
    try:
      value = int(text)
    except ValueError:
      pass  # absl reports the bad value when it parses the flags
  return value


def cpp_log_level(verbosity):
  """TF_CPP_MIN_LOG_LEVEL for absl's verbosity: not given -> 3 (fatal only: no device
  probing), else the same severity (0 info and above -> 0, -1 warning -> 1, -2 error -> 2)."""
  return 3 if verbosity is None else min(max(-verbosity, 0), 3)


def held_back(line, level):
  """Whether a captured stderr `line` is absl C++ logging below `level` (or its banner)."""
  match = _ABSL_LINE.match(line)
  return line.startswith(_ABSL_BANNER) or bool(match and _SEVERITY[match.group(1)] < level)


@contextlib.contextmanager
def quiet_imports(active=True, argv=None, environ=None):
  """Wraps a binary's imports of TensorFlow, Keras and the package.

  Sets TF_CPP_MIN_LOG_LEVEL from -v (`cpp_log_level`) unless the user has set it.
  TensorFlow 2.21 logs oneDNN and CUDA probing while it loads, before absl's C++
  logging reads any level, so those lines ignore TF_CPP_MIN_LOG_LEVEL: stderr is
  held in a temporary file meanwhile and passed on without the absl lines below the
  level. Everything else (Python warnings, errors) is passed on; all of it when an
  import fails. `active=False` (a binary imported as a module) changes nothing.
  """
  environ = os.environ if environ is None else environ
  if not active:
    yield
    return
  if LOG_LEVEL_ENV not in environ:
    environ[LOG_LEVEL_ENV] = str(cpp_log_level(requested_verbosity(
        sys.argv if argv is None else argv)))
  try:
    level = int(environ[LOG_LEVEL_ENV])
  except ValueError:
    level = 0
  if level <= 0:
    yield
    return
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # no stderr to hold: the level alone applies
    yield
    return
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    failed = True
    try:
      yield
      failed = False
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      lines = held.read().decode(errors="replace").splitlines(keepends=True)
      sys.stderr.write("".join(l for l in lines if failed or not held_back(l, level)))
      sys.stderr.flush()


def verbosity_given():
  """Whether -v/--verbosity was on the command line (absl parses it; absl's default is
  replaced by 0 after parsing, so the value alone cannot tell)."""
  return bool(FLAGS["verbosity"].present)


class _DropMessage(logging.Filter):
  def __init__(self, prefix):
    super().__init__()
    self.prefix = prefix

  def filter(self, record):
    return not str(record.msg).startswith(self.prefix)


def configure_logging():
  """In a binary's `main`: Python logging as -v says (default: warnings and above).

  TensorFlow gives its logger a stderr handler of its own when it is imported before
  absl's handler is on the root logger, so each message printed twice (once per
  handler); that handler is removed, and absl's prints every message once. Without
  -v, tf_keras's warning on saving an uncompiled model (`_UNCOMPILED_SAVE`) is dropped.
  """
  tf_logger = logging.getLogger("tensorflow")
  if absl_logging.get_absl_handler() in logging.getLogger().handlers:
    for handler in list(tf_logger.handlers):
      if type(handler) is logging.StreamHandler:  # pylint: disable=unidiomatic-typecheck
        tf_logger.removeHandler(handler)
  if verbosity_given():
    return
  absl_logging.set_verbosity(absl_logging.WARNING)
  if not any(isinstance(f, _DropMessage) for f in tf_logger.filters):
    tf_logger.addFilter(_DropMessage(_UNCOMPILED_SAVE))


def keras_verbose():
  """Keras `fit`'s own output: --verbose when given; else 2 (its line per epoch, info
  level) with -v 0 or above, else 0 (the binary prints its own line)."""
  given = FLAGS["verbose"].value if "verbose" in FLAGS else None
  if given is not None:
    return given
  return 2 if verbosity_given() and FLAGS.verbosity >= 0 else 0


class _ProgressBar:
  """A bar redrawn in place during an epoch and erased at its end, before the epoch's line.

  Redrawn at most every `interval` seconds (and at the epoch's last step).
  """

  width = 30

  def __init__(self, steps, label, stream, interval=0.1):
    super().__init__()
    self.steps, self.label, self.stream, self.interval = steps, label, stream, interval
    self._shown, self._drawn_at, self._epoch = 0, 0.0, 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch, self._drawn_at = epoch, 0.0

  def on_train_batch_end(self, batch, logs=None):
    done, now = batch + 1, time.monotonic()
    if now - self._drawn_at < self.interval and done < self.steps:
      return
    self._drawn_at = now
    filled = self.width * min(done, self.steps) // max(self.steps, 1)
    loss = (logs or {}).get("loss")
    text = (f"{self.label(self._epoch)} [{'=' * filled}{'.' * (self.width - filled)}] "
            f"{done}/{self.steps}" + (f" loss {float(loss):.4f}" if loss is not None else ""))
    self.stream.write("\r" + text.ljust(self._shown))
    self.stream.flush()
    self._shown = len(text)

  def on_epoch_end(self, epoch, logs=None):
    self._erase()

  def on_train_end(self, logs=None):
    self._erase()

  def _erase(self):
    if self._shown:
      self.stream.write("\r" + " " * self._shown + "\r")
      self.stream.flush()
      self._shown = 0


def progress_bar(callback_class, steps, label, stream=None):
  """[a Keras callback (a `callback_class`) drawing `_ProgressBar`] when `stream` (stdout)
  is a terminal and Keras prints nothing of its own (`keras_verbose` 0); else [].

  `label(epoch)` begins the bar's line; `steps` is the epoch's length.
  """
  stream = sys.stdout if stream is None else stream
  isatty = getattr(stream, "isatty", None)
  if keras_verbose() != 0 or not (isatty and isatty()):
    return []
  bar_class = type("ProgressBar", (_ProgressBar, callback_class), {})
  return [bar_class(steps, label, stream)]
