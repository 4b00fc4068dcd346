"""The array namespace the core's formulas are written against: `keras.ops`' names.

Each algorithm's math (Hoyer-Square, hard-concrete gates, variational
dropout's KL, targeted dropout's candidates, the mask-update rules,
`GeometricSparsity`) is written once, as functions of an `xp` argument that
offers the `keras.ops` functions listed in `NAMES` with their signatures:

- the Keras 3 family passes `keras.ops` itself;
- the tf_keras family passes `keras_signflip.tf_keras._framework.xp`, built here
  by `namespace` from TensorFlow's own ops (so its graphs are what they were);
- the tests and host-side code pass `NUMPY`.

A family exposes a formula under its old single-namespace signature with
`bind(formula, xp)`.

(`criteria` predates this and also accepts `tf.experimental.numpy`.)
"""
import functools
import types

import numpy as np

__all__ = ["NAMES", "NUMPY", "namespace", "bind"]

NAMES = ("abs", "cast", "clip", "convert_to_tensor", "exp", "floor_divide", "greater",
         "greater_equal", "less", "log", "log1p", "logical_and", "logical_not", "maximum",
         "minimum", "power", "reshape", "round", "sigmoid", "sort", "sqrt", "square", "sum",
         "where", "zeros", "zeros_like")


def namespace(name, **functions):
  """A namespace holding exactly `NAMES`, or a TypeError naming what is missing or extra."""
  missing, extra = sorted(set(NAMES) - set(functions)), sorted(set(functions) - set(NAMES))
  if missing or extra:
    raise TypeError(f"The array namespace {name!r} must define {list(NAMES)}; "
                    f"missing {missing}, unexpected {extra}.")
  return types.SimpleNamespace(__name__=name, **functions)


def bind(formula, xp):
  """`formula` with its `xp` argument fixed: a family's own version of a core formula
  (e.g. `candidates = bind(dropout_candidates.candidates, ops)`), same name and docstring."""
  return functools.update_wrapper(functools.partial(formula, xp=xp), formula)


NUMPY = namespace(
    "numpy",
    abs=np.abs, cast=lambda x, dtype: np.asarray(x).astype(dtype), clip=np.clip,
    convert_to_tensor=np.asarray, exp=np.exp, floor_divide=np.floor_divide,
    greater=np.greater, greater_equal=np.greater_equal, less=np.less, log=np.log,
    log1p=np.log1p, logical_and=np.logical_and, logical_not=np.logical_not,
    maximum=np.maximum, minimum=np.minimum, power=np.power, reshape=np.reshape,
    round=np.round,  # half to even, as TensorFlow's and keras.ops'
    sigmoid=lambda x: 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x))),  # no overflow for large |x|
    sort=lambda x, axis=-1: np.sort(x, axis=axis),
    sqrt=np.sqrt, square=np.square, sum=lambda x, axis=None: np.sum(x, axis=axis),
    where=np.where, zeros=lambda shape, dtype="float32": np.zeros(shape, dtype),
    zeros_like=np.zeros_like)
