"""Directories this package owns, and the rule that it replaces nothing else.

Every directory keras_signflip writes as a whole (an export, a run, a lottery
run) holds a marker file, `MARKER`, saying so and what kind it is. A writer

    check_target(path, kind, overwrite)     # before any work: refuse early
    with staged(path, kind, overwrite) as tmp:
      ... write into tmp ...                # then swapped into `path`

never deletes a directory without that marker of that kind (a user's files
are never ours to remove, whatever `overwrite` says), replaces one of ours
only with `overwrite`, and writes beside `path` under a fresh temporary name
that cannot be a user's, so a failure (a full disk, an exception) leaves the
old `path` as it was and no temporary directory behind.

Imports no framework.
"""
import contextlib
import json
import os
import shutil
import tempfile

__all__ = ["MARKER", "KINDS", "check_target", "is_owned", "read_marker", "temp_sibling",
           "replace_dir", "staged", "write_marker", "write_file", "write_json"]

MARKER = ".keras_signflip.json"
KINDS = ("export", "run", "lottery")


def _check_kind(kind):
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {list(KINDS)}. Received: kind={kind!r}")


def _a(kind):
  return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _split(path):
  """(absolute parent, basename) of `path`, a trailing separator ignored."""
  if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
    raise ValueError(f"The path must be a non-empty directory path. Received: path={path!r}")
  full = os.path.abspath(os.fspath(path))
  return os.path.dirname(full), os.path.basename(full)


def read_marker(path):
  """The marker of directory `path` as a dict, or None when absent or unreadable."""
  try:
    with open(os.path.join(path, MARKER)) as f:
      marker = json.load(f)
  except (OSError, ValueError):
    return None
  return marker if isinstance(marker, dict) else None


def is_owned(path, kind):
  """Whether `path` is a directory keras_signflip wrote as `kind` (holds its marker)."""
  marker = read_marker(path) if os.path.isdir(path) else None
  return bool(marker) and marker.get("written_by") == "keras_signflip" and \
      marker.get("kind") == kind


def write_marker(path, kind):
  """Writes the marker into directory `path`: keras_signflip owns it, as `kind`."""
  _check_kind(kind)
  import keras_signflip  # pylint: disable=g-import-not-at-top  (the package's version)
  write_json(os.path.join(path, MARKER), {"written_by": "keras_signflip", "kind": kind,
                                          "version": getattr(keras_signflip, "__version__", None)})


def write_file(path, write):
  """Calls write(temporary path) for a fresh file beside `path` (mkstemp: a name no
  user's file can have), then renames it to `path`: `path` is the old or the new
  file at every moment, and a failure leaves no temporary behind."""
  parent, name = _split(path)
  fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{name}.tmp-")
  os.close(fd)
  try:
    write(tmp)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # what open() would have given it, not mkstemp's 0600
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json(path, value):
  """Writes `value` to `path` as indented, key-sorted JSON, atomically (`write_file`)."""
  def write(tmp):
    with open(tmp, "w") as f:
      json.dump(value, f, indent=2, sort_keys=True)
      f.write("\n")
  write_file(path, write)


def check_target(path, kind, overwrite, flag_hint="overwrite=True"):
  """Raises ValueError, before anything is written, unless `path` may become a `kind` directory.

  Allowed: `path` absent, an empty directory, or (with `overwrite`) a
  directory holding our marker of this `kind`. Refused: a file or symbolic
  link at `path`; a non-empty directory without `overwrite` (the message
  names `flag_hint`, e.g. "--overwrite" in a binary); a non-empty directory
  that keras_signflip did not write as `kind`, even with `overwrite` -- it may
  hold a user's files, so it is never replaced. The parent (or the nearest
  existing ancestor, created later) must be a writable directory.
  """
  _check_kind(kind)
  parent, _ = _split(path)
  path = os.fspath(path)
  if os.path.islink(path):
    raise ValueError(f"{path} is a symbolic link; keras_signflip never replaces one. "
                     "Choose another path.")
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise ValueError(f"{path} is a file, not a directory; keras_signflip never replaces "
                       "it. Choose another path.")
    if os.listdir(path):
      if not is_owned(path, kind):
        marker = read_marker(path) or {}
        what = (f"holds a keras_signflip {marker['kind']}, not {_a(kind)}"
                if marker.get("written_by") == "keras_signflip" and "kind" in marker else
                f"is a non-empty directory that was not written by keras_signflip (no {MARKER})")
        raise ValueError(f"{path} {what}, so it is never replaced, even with {flag_hint}. "
                         "Choose another path (absent or empty).")
      if not overwrite:
        raise ValueError(f"{path} holds an earlier keras_signflip {kind}; pass {flag_hint} "
                         "to replace it, or choose another path.")
  ancestor = parent
  while not os.path.lexists(ancestor):
    ancestor = os.path.dirname(ancestor)
  if not os.path.isdir(ancestor):
    raise ValueError(f"Cannot write {path}: {ancestor} is not a directory.")
  if not os.access(ancestor, os.W_OK | os.X_OK):
    raise ValueError(f"Cannot write {path}: {ancestor} is not writable.")


def temp_sibling(path):
  """A new empty directory beside `path` (".<name>.tmp-XXXX", made by mkdtemp).

  The name is fresh each call, so it is never a user's file or directory
  (a fixed name such as `path + ".tmp"` could be, and would be clobbered).
  Creates the parent directories if needed.
  """
  parent, name = _split(path)
  os.makedirs(parent, exist_ok=True)
  return tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-")


def replace_dir(tmp, path, kind, overwrite=False):
  """Marks `tmp` as ours (`kind`) and renames it to `path`, replacing an earlier one.

  Checks `path` again (`check_target`: it may have changed since), then moves
  an existing `path` into a fresh sibling directory, renames `tmp` into
  place, and removes the old one: `path` is the old or the new directory at
  every moment. Any failure before the swap removes `tmp` and leaves `path`
  untouched; a failed swap moves the old `path` back.
  """
  parent, name = _split(path)
  path = os.fspath(path)
  try:
    write_marker(tmp, kind)
    check_target(path, kind, overwrite)
    if not os.path.lexists(path):
      os.replace(tmp, path)
      return
    holder = tempfile.mkdtemp(dir=parent, prefix=f".{name}.old-")
    old = os.path.join(holder, name)
    try:
      os.replace(path, old)
    except BaseException:
      os.rmdir(holder)
      raise
    try:
      os.replace(tmp, path)
    except BaseException:
      os.replace(old, path)
      os.rmdir(holder)
      raise
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  shutil.rmtree(holder, ignore_errors=True)


@contextlib.contextmanager
def staged(path, kind, overwrite=False, flag_hint="overwrite=True"):
  """Checks `path`, yields a fresh `temp_sibling` to write into, then `replace_dir`s it.

  If the body raises, the temporary directory is removed and `path` is left
  as it was.
  """
  check_target(path, kind, overwrite, flag_hint)
  tmp = temp_sibling(path)
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  replace_dir(tmp, path, kind, overwrite)
