"""Pruning criteria: pure score functions, higher score = keep.

A criterion never thresholds; each family's `selection` turns scores into
masks. Scores are written once against a NumPy-style namespace `xp`
(`tf.experimental.numpy` in the tf_keras family, `keras.ops` in the Keras 3 one;
NumPy works too, see tests/test_criteria.py), so both families share the same math.

| name | score (higher = keep) | tiebreak (then position) | reference |
|---|---|---|---|
| `Magnitude` | abs(w) | none (TF-MOT's order) | Zhou et al. 2019 `large_final` |
| `SignFlip` | -flips | abs(w) | the research log; prune weights that flip |
| `Hybrid(power=2)` | abs(w)**p / (flips + 1) | -flips | FlipOut, Apostol et al. 2020 |
| `LargeFinalSameSign` | abs(w) if sign(w) == sign(w_ref), else 0 | abs(w) | Zhou et al. 2019 |
| `MagnitudeIncrease` | abs(w) - abs(w_ref) | abs(w) | Zhou et al. 2019 |
| `Movement` | abs(w - w_ref) | abs(w) | Zhou et al. 2019 |
| `RecentFlips` | -(flips - flips_at_update) | abs(w) | flips in the window since the last update |
| `Saliency` | abs(A), A = sum of w * g since the last update | abs(w) | Molchanov et al. 2019 |
| `MovementScore` | -A, A = sum of w * g over every step | abs(w) | Sanh et al. 2020 (movement) |
| `Random(seed)` | a fixed hash of (seed, tensor, position) in [0, 1) | none | the control |

Selection ranks by the total order (score, tiebreak, position): position is
tensor order, then flat row-major index, lower kept.

`w` is the current weight, `flips` its sign-flip count, `w_ref` the weight at
the reference point (initialisation, or where `set_reference` moved it),
`flips_at_update` its count at the last mask update (kept only for criteria
with `uses_window`), `A` the gradient products w_t * g_t summed over steps
(kept only for criteria with `uses_gradients`, in either family: a wrapper
variable on tf_keras, an optimizer variable on Keras 3; the optimizer must be
wrapped by `keras_signflip.record_gradients`).

Flip-triggered pruning (`min_flips=m`) prunes the unpruned weights whose
`flip_count` (lifetime flips; `RecentFlips`: flips since the last update)
reaches m, never beyond the schedule's sparsity (`keras_signflip.mask_rules`).

The other formulas of the package (Hoyer-Square, L0's gates, variational
dropout's KL, ...) follow this pattern with `keras_signflip.array_namespace`.
"""
import math
import zlib
from typing import NamedTuple

from keras_signflip import arguments

__all__ = [
    "WeightState", "Criterion", "Magnitude", "SignFlip", "Hybrid",
    "LargeFinalSameSign", "MagnitudeIncrease", "Movement", "RecentFlips", "Saliency",
    "MovementScore", "Random", "get", "serialize", "CRITERIA", "tensor_key", "distinct_names",
]


class WeightState(NamedTuple):
  """What a criterion may read besides the weight itself."""
  flips: object      # int32, weight's shape: sign flips while unpruned.
  reference: object  # float32, weight's shape: weight at the reference point
                     # (None unless the criterion `uses_reference`).
  key: int = 0       # stable per-tensor integer: `tensor_key(weight name)`.
  flips_at_update: object = None  # int32: flips at the last mask update (`uses_window`).
  grad_product: object = None     # float32: sum of w * g over steps (`uses_gradients`).


def tensor_key(name):
  """A weight's `WeightState.key`: CRC-32 of its name (e.g. "fc1/kernel"), 31 bits.

  Keyed by name, not by position, so layers wrapped one at a time (as in a
  subclassed model) get different `Random` scores, and the same layer names
  give the same scores in every process.
  """
  return zlib.crc32(str(name).split(":")[0].encode("utf-8")) & 0x7FFFFFFF


def distinct_names(names):
  """`names`, a repeated one suffixed "#k" for its k-th repetition (MultiHeadAttention's
  four kernels, Bidirectional's two directions), so `tensor_key` tells the tensors apart."""
  out, seen = [], {}
  for name in names:
    seen[name] = seen.get(name, -1) + 1
    out.append(name if seen[name] == 0 else f"{name}#{seen[name]}")
  return out


def _default_xp():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.experimental.numpy


def _as(x, dtype, xp):
  """`x` as `dtype` in `xp` (NumPy and tf.experimental.numpy have asarray;
  keras.ops has cast)."""
  return xp.asarray(x, dtype=dtype) if hasattr(xp, "asarray") else xp.cast(x, dtype)


class Criterion:
  """Base class. Subclasses implement `score` and, if they take arguments,
  `get_config`; `from_config(get_config())` rebuilds an equal criterion."""

  name = None
  # True when `score` needs 64-bit integer arithmetic, which JAX disables by
  # default: the Keras 3 family then scores with NumPy on the host.
  needs_int64 = False
  # True when the criterion reads `flips_at_update`: the wrappers then keep
  # that count (4 bytes per weight) and set it at every mask update.
  uses_window = False
  # True when the criterion reads `grad_product` (sum of w * g per step); with
  # `resets_gradients` the sum restarts at every mask update.
  uses_gradients = False
  resets_gradients = False
  # True when the criterion reads `reference` (w_ref): only then do the
  # wrappers keep it (4 bytes per weight).
  uses_reference = False
  # True when `score` compiles with XLA (its `xp` ops only, static shapes):
  # the tf_keras mask update then fuses it with its own per-weight passes, and
  # the Keras 3 one compiles it (jax.jit, tf.function). False (the default for
  # criteria defined outside this module) scores with plain eager ops first.
  xla_compatible = False
  _by_class_name = {}

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    Criterion._by_class_name[cls.__name__] = cls

  def score(self, weight, state, xp=None):
    """Returns a float tensor shaped like `weight`; higher scores are kept."""
    raise NotImplementedError

  def flip_count(self, state, xp=None):
    """The count flip-triggered pruning (`min_flips`) compares: lifetime flips."""
    return state.flips

  def tiebreak(self, weight, state, xp=None):
    """The secondary key among equal scores (higher kept), or None for none.

    Selection ranks by (score, tiebreak, position): the score, then this
    key, then tensor order and flat index (lower kept). Defaults to abs(w),
    so an integer-valued or constant score (flip counts early in training,
    same-sign zeros) falls back to magnitude, never straight to position.
    """
    xp = xp or _default_xp()
    return xp.abs(weight)

  def get_config(self):
    return {}

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def __eq__(self, other):
    return type(self) is type(other) and self.get_config() == other.get_config()

  def __hash__(self):
    return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"


class Magnitude(Criterion):
  """abs(w): plain magnitude pruning, TF-MOT's criterion.

  Equal magnitudes go by position (no secondary key), as TF-MOT's `top_k`
  ranks them, so layer-scope masks equal TF-MOT's.
  """
  name = "magnitude"
  xla_compatible = True

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    return xp.abs(weight)

  def tiebreak(self, weight, state, xp=None):
    return None


class SignFlip(Criterion):
  """-flips: weights that flipped sign most are pruned first.

  Weights with equal counts are ranked by magnitude (the default tiebreak),
  so before any flip this is exactly `Magnitude`'s ranking by |w| -- not the
  lower-index-first order an integer score would otherwise fall back to.
  """
  name = "sign_flip"
  xla_compatible = True

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    return -_as(state.flips, "float32", xp)


class Hybrid(Criterion):
  """abs(w)**power / (flips + 1): the FlipOut saliency (Apostol et al. 2020).

  Args:
    power: exponent p of the magnitude term, a finite number > 0. Defaults to 2.
  """
  name = "hybrid"
  xla_compatible = True

  def __init__(self, power=2.0):
    # Finite and > 0: NaN would score every weight NaN (a ranking of nothing),
    # Inf every weight 0 or Inf, and p <= 0 would keep the smallest weights.
    self.power = arguments.check_number("power", power, low=0, low_inclusive=False)

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    flips = _as(state.flips, "float32", xp)
    return xp.power(xp.abs(weight), self.power) / (flips + 1.0)

  def tiebreak(self, weight, state, xp=None):
    """Fewer flips first among equal saliencies (e.g. weights at exactly 0)."""
    xp = xp or _default_xp()
    return -_as(state.flips, "float32", xp)

  def get_config(self):
    return {"power": self.power}


class LargeFinalSameSign(Criterion):
  """abs(w) where sign(w) == sign(w_ref), else 0 (Zhou et al. 2019)."""
  name = "large_final_same_sign"
  xla_compatible = True
  uses_reference = True

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    same = xp.sign(weight) == xp.sign(state.reference)
    return xp.where(same, xp.abs(weight), xp.zeros_like(weight))


class MagnitudeIncrease(Criterion):
  """abs(w) - abs(w_ref) (Zhou et al. 2019)."""
  name = "magnitude_increase"
  xla_compatible = True
  uses_reference = True

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    return xp.abs(weight) - xp.abs(state.reference)


class Movement(Criterion):
  """abs(w - w_ref) (Zhou et al. 2019)."""
  name = "movement"
  xla_compatible = True
  uses_reference = True

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    return xp.abs(weight - state.reference)


class RecentFlips(Criterion):
  """-(flips since the last mask update): prune what flips now, not what flipped once.

  Lifetime counts (`SignFlip`) remember every early, large-learning-rate
  flip; this counts over the window between mask updates only (the schedule's
  `frequency` steps, from step 0 before the first update), so a weight that
  settled is ranked by magnitude again (the tiebreak), and `min_flips=m` prunes
  weights flipping at >= m per window: a flip rate the user sets with m and
  the schedule's frequency. Counting never resets: the window is a second
  count (`flips_at_update`) taken at each update.
  """
  name = "recent_flips"
  xla_compatible = True
  uses_window = True

  def flip_count(self, state, xp=None):
    return state.flips - state.flips_at_update

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    return -_as(self.flip_count(state, xp), "float32", xp)


class Saliency(Criterion):
  """abs(sum of w_t * g_t since the last mask update): the first-order Taylor
  estimate of the loss change from removing a weight, accumulated between updates."""
  name = "saliency"
  xla_compatible = True
  uses_gradients = True
  resets_gradients = True

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    return xp.abs(_as(state.grad_product, "float32", xp))


class MovementScore(Criterion):
  """-(sum of w_t * g_t over training): Sanh et al.'s movement score; weights
  moving away from zero (w and -g of one sign) score high and are kept. Never
  reset, as in the paper; the reference-free sibling of `Movement`."""
  name = "movement_score"
  xla_compatible = True
  uses_gradients = True

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    return -_as(state.grad_product, "float32", xp)


_M32 = 2**32


def _mix32(h, xp):
  """An integer hash step (xorshift-multiply) on values in [0, 2**32).

  The multipliers stay below 2**31 so every product fits in int64 on every
  backend; written by hand because no backend-neutral counter-based RNG exists.
  """
  h = xp.bitwise_xor(h, h // 2**16)  # h // 2**s is h >> s for h >= 0.
  h = (h * 0x7FEB352D) % _M32
  h = xp.bitwise_xor(h, h // 2**15)
  h = (h * 0x6C8E9CF5) % _M32
  return xp.bitwise_xor(h, h // 2**16)


class Random(Criterion):
  """A fixed uniform score per weight: random pruning, the usual control.

  The score hashes (seed, tensor key, flat position) -- the key is
  `tensor_key` of the weight's name -- so it is the same at every mask update
  (pruning stays monotone and random), on every backend and in every process.

  Args:
    seed: an integer >= 0 (Python or NumPy; not a bool or float). Defaults to 0.
  """
  name = "random"
  # Not fused: it needs the weight's static shape, which a function that has traced
  # several shapes relaxes to None (tf_keras' fused scoring does after a few layers).
  xla_compatible = False
  needs_int64 = True

  def __init__(self, seed=0):
    self.seed = arguments.check_integer("seed", seed, minimum=0)

  def score(self, weight, state, xp=None):
    xp = xp or _default_xp()
    shape = tuple(int(d) for d in weight.shape)
    salt = _mix32(_as((self.seed * 0x9E3779B1 + state.key) % _M32, "int64", xp), xp)
    h = _mix32((xp.arange(math.prod(shape), dtype="int64") + salt) % _M32, xp)
    u = _as(h, "float32", xp) / float(_M32)
    return xp.reshape(u, shape)

  def tiebreak(self, weight, state, xp=None):
    return None  # a control: nothing about the weight may decide

  def get_config(self):
    return {"seed": self.seed}


CRITERIA = {c.name: c for c in (Magnitude, SignFlip, Hybrid, LargeFinalSameSign,
                                MagnitudeIncrease, Movement, RecentFlips, Saliency,
                                MovementScore, Random)}


def get(identifier):
  """Returns a criterion from an instance, a registered name, or a config dict.

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  if isinstance(identifier, Criterion):
    return identifier
  if isinstance(identifier, dict):
    class_name = identifier.get("class_name")
    by_class = Criterion._by_class_name
    if class_name not in by_class:
      raise ValueError(f"Unknown criterion class {class_name!r}. Expected one "
                       f"of {sorted(by_class)}.")
    return by_class[class_name].from_config(identifier.get("config", {}))
  if isinstance(identifier, str) and identifier in CRITERIA:
    return CRITERIA[identifier]()
  raise ValueError(f"Received an invalid value for `criterion`, expected a "
                   f"keras_signflip.criteria.Criterion or one of "
                   f"{sorted(CRITERIA)}. Received: criterion={identifier!r}")


def serialize(criterion):
  """{'class_name': ..., 'config': ...}, the inverse of `get`."""
  return {"class_name": type(criterion).__name__, "config": criterion.get_config()}
