"""Module names of earlier keras_signflip versions that moved or were renamed, kept importable.

0.3 put the tf_keras family under `keras_signflip.tf_keras` and the lottery
modules under `keras_signflip.lottery`; 0.4 gave modules names that say what
they hold. `import keras_signflip.rewind` and `from keras_signflip.tf_keras
import _compat` keep working: this finder answers for the old names only and
hands back the new module itself (one module object, not a copy). A name
whose contents changed fails with an ImportError naming the new place.
Python's import system has no declarative alias, so this is the small finder
it documents (importlib.abc.MetaPathFinder). It runs after the ordinary
finders, so a name that is a file today is never answered here.
"""
import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["MOVED", "RENAMED", "install"]

MOVED = {  # old module name below keras_signflip -> its new module
    # 0.2 -> 0.3: the tf_keras family and the lottery package.
    "_compat": "keras_signflip.tf_keras._framework",
    "selection": "keras_signflip.tf_keras.selection",
    "schedules": "keras_signflip.tf_keras.schedules",
    "flips": "keras_signflip.tf_keras.state",
    "mask_update": "keras_signflip.tf_keras.mask_update",
    "wrapper": "keras_signflip.tf_keras.wrapper",
    "prune": "keras_signflip.tf_keras.prune",
    "noise": "keras_signflip.tf_keras.gradient_noise",
    "export": "keras_signflip.tf_keras.export",
    "rewind": "keras_signflip.lottery.rewind",
    "reinit": "keras_signflip.lottery.reinit",
    "early_bird": "keras_signflip.lottery.early_bird",
    # 0.3 -> 0.4: names that say what the module holds.
    "_moved": "keras_signflip._old_names",
    "callback": "keras_signflip.callback_base",          # next to callbacks.py, which users pass
    "detect": "keras_signflip.families",                 # is_keras3_object: chooses the family
    "report": "keras_signflip.inspection",               # summarize: beside sparsity_report
    "tf_keras._compat": "keras_signflip.tf_keras._framework",
    "keras3._keras": "keras_signflip.keras3._framework",
    "tf_keras.noise": "keras_signflip.tf_keras.gradient_noise",
    "tf_keras.callbacks": "keras_signflip.tf_keras.pruning_step",
    "keras3.callbacks": "keras_signflip.keras3.pruning_step",
}
RENAMED = {  # old module name below keras_signflip -> the message for it
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
    package, dot, name = fullname.partition(".")
    if package != "keras_signflip" or not dot:
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
