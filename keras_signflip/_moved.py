"""Module names of keras_signflip 0.2 that moved in 0.3, kept importable.

0.3 put the tf_keras family under `keras_signflip.tf_keras` and the lottery
modules under `keras_signflip.lottery`. `import keras_signflip.rewind` and
`from keras_signflip import rewind` keep working: this finder answers for the
old names only and hands back the new module itself (one module object, not a
copy). A name whose contents changed fails with an ImportError naming the
new place. Python's import system has no declarative alias, so this is the
small finder it documents (importlib.abc.MetaPathFinder).
"""
import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["MOVED", "RENAMED", "install"]

MOVED = {  # old submodule -> its new module
    "_compat": "keras_signflip.tf_keras._compat",
    "selection": "keras_signflip.tf_keras.selection",
    "schedules": "keras_signflip.tf_keras.schedules",
    "flips": "keras_signflip.tf_keras.state",
    "mask_update": "keras_signflip.tf_keras.mask_update",
    "wrapper": "keras_signflip.tf_keras.wrapper",
    "prune": "keras_signflip.tf_keras.prune",
    "noise": "keras_signflip.tf_keras.noise",
    "export": "keras_signflip.tf_keras.export",
    "rewind": "keras_signflip.lottery.rewind",
    "reinit": "keras_signflip.lottery.reinit",
    "early_bird": "keras_signflip.lottery.early_bird",
}
RENAMED = {  # old submodule -> the message for it
    "paths": "keras_signflip.paths is now keras_signflip.families (`Path` is `Family`, "
             "`paths.of(model)` is `families.of(model)`).",
}


class _Alias(importlib.abc.Loader):

  def __init__(self, target):
    self.target = target
    self.spec = None

  def create_module(self, spec):
    module = importlib.import_module(self.target)
    self.spec = module.__spec__
    return module

  def exec_module(self, module):
    module.__spec__ = self.spec  # the import system set the alias's; the module keeps its own


class _Finder(importlib.abc.MetaPathFinder):
  """Finds `keras_signflip.<old name>` only; every other import passes by."""

  def find_spec(self, fullname, path=None, target=None):
    package, _, name = fullname.rpartition(".")
    if package != "keras_signflip":
      return None
    if name in RENAMED:
      raise ImportError(RENAMED[name], name=fullname)
    if name in MOVED:
      return importlib.util.spec_from_loader(fullname, _Alias(MOVED[name]))
    return None


def install():
  """Adds the finder once (the package's __init__ calls it)."""
  if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.append(_Finder())
