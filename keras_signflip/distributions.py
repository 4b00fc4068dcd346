"""Per-layer sparsities from one model-wide target, for layer-scope pruning.

    uniform   s_l = s for every pruned layer
    erk       density d_l = eps * sum(shape_l) / prod(shape_l)   (Erdős–Rényi-Kernel,
              Evci et al. 2020; a Dense kernel n_in x n_out gives (n_in + n_out) / (n_in n_out),
              a conv kernel kh x kw x c_in x c_out adds kh + kw above and below)
    er        the same without the kernel's spatial dims: (c_in + c_out) / (c_in c_out)
    {name: s} a custom map: the named layers get these sparsities, the rest the target

eps solves sum_l d_l n_l = (1 - s) sum_l n_l over the layers the distribution
places; a layer whose density would exceed 1 is kept dense, its missing zeros
are taken up by the others, and eps is solved again (so `erk` and `er` reach
exactly the target over those layers). Layers in `dense` (names, or "first" /
"last" for the first and last prunable layer) are left unpruned and out of
the count, as RigL and JaxPruner leave excluded layers.
"""
import math

__all__ = ["DISTRIBUTIONS", "layer_sparsities", "schedule_factors", "layer_factors"]

DISTRIBUTIONS = ("uniform", "erk", "er")


def _raw_density(shape, kernel):
  """sum(dims) / prod(dims) of the kernel (erk), or of its last two dims (er)."""
  dims = [int(d) for d in (shape if kernel or len(shape) < 2 else shape[-2:])]
  return sum(dims) / math.prod(dims)


def _check_sparsity(value, what):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise ValueError(f"Received an invalid value for {what}, expected a sparsity in [0, 1). "
                     f"Received: {value!r}")


def _resolve_dense(names, dense):
  out = set()
  for d in dense or ():
    if d in ("first", "last"):
      if names:
        out.add(names[0] if d == "first" else names[-1])
    elif d in names:
      out.add(d)
    else:
      raise ValueError(f"`dense_layers` names {d!r}, which is not a prunable layer of the "
                       f"model; expected 'first', 'last' or one of {names}.")
  return out


def layer_sparsities(shapes, target, distribution="uniform", dense_layers=()):
  """{layer name: sparsity} for `shapes` ({layer name: prunable kernel shape}, in
  model order) at the model-wide `target`.

  Args:
    shapes: dict of layer name -> shape of its prunable weight (its kernel).
    target: the sparsity over the layers the distribution places, in [0, 1).
    distribution: "uniform", "erk", "er", or a {layer name: sparsity} map.
    dense_layers: names, "first" and/or "last": layers left unpruned (0.0).

  Raises:
    ValueError: an unknown distribution or layer name, a sparsity out of
      [0, 1), or a target that the layers cannot reach.
  """
  _check_sparsity(target, "`target`")
  names = list(shapes)
  dense = _resolve_dense(names, dense_layers)
  out = {n: 0.0 for n in dense}
  if isinstance(distribution, dict):
    unknown = sorted(set(distribution) - set(names))
    if unknown:
      raise ValueError(f"The sparsity map names {unknown}, which are not prunable layers; "
                       f"expected some of {names}.")
    for n, s in distribution.items():
      _check_sparsity(s, f"the sparsity of layer {n!r}")
    return {n: out.get(n, float(distribution.get(n, target))) for n in names}
  if distribution not in DISTRIBUTIONS:
    raise ValueError(f"Received an invalid value for `sparsity_distribution`, expected one "
                     f"of {list(DISTRIBUTIONS)} or a {{layer name: sparsity}} dict. Received: "
                     f"{distribution!r}")
  placed = [n for n in names if n not in dense]
  if distribution == "uniform":
    return {n: out.get(n, float(target)) for n in names}
  size = {n: math.prod(int(d) for d in shapes[n]) for n in placed}
  raw = {n: _raw_density(shapes[n], kernel=distribution == "erk") for n in placed}
  full = set()  # layers the formula would make denser than 1: kept dense
  while True:
    free = [n for n in placed if n not in full]
    if not free:
      raise ValueError(f"A target of {target} cannot be reached: every layer would be dense.")
    ones = (1 - target) * sum(size.values()) - sum(size[n] for n in full)
    if ones <= 0:
      raise ValueError(f"A target of {target} cannot be reached with {sorted(full)} dense.")
    eps = ones / sum(raw[n] * size[n] for n in free)
    over = [n for n in free if eps * raw[n] > 1]
    if not over:
      break
    full.add(max(over, key=lambda n: raw[n]))
  out.update({n: 0.0 for n in full})
  out.update({n: 1.0 - eps * raw[n] for n in free})
  return {n: out[n] for n in names}


def schedule_factors(shapes, target, distribution=None, dense_layers=(), scope="layer"):
  """{layer name: factor} scaling a model-wide schedule to each layer's share
  (s_l / target; 0.0: leave the layer unwrapped), or None when neither a
  distribution nor dense layers are asked for.

  Raises:
    ValueError: a distribution at global scope, or a schedule whose final
      sparsity is unknown (`target` None).
  """
  if distribution is None and not dense_layers:
    return None
  if scope != "layer":
    raise ValueError("`sparsity_distribution` and `dense_layers` place sparsity per layer, at "
                     "layer scope; scope='global' ranks every weight together. Use "
                     "scope='layer', or leave layers out of pruning by wrapping only the others.")
  if target is None:
    raise ValueError("A sparsity distribution needs the schedule's final sparsity: use "
                     "ConstantSparsity, PolynomialDecay or GeometricSparsity.")
  sparsities = layer_sparsities(shapes, target, distribution or "uniform", dense_layers)
  return {n: (s / target if target > 0 else 1.0) for n, s in sparsities.items()}


def layer_factors(layers, prunable_weights, target, distribution=None, dense_layers=(),
                  scope="layer"):
  """`schedule_factors` for the layers `prune_sign_flip` would wrap (either family).

  Args:
    layers: the layers that would be wrapped, in model order (built).
    prunable_weights: layer -> its prunable weights, the kernel first.
    target, distribution, dense_layers, scope: as `schedule_factors`.

  Raises:
    ValueError: an unbuilt layer (its kernel shape is unknown), or as `schedule_factors`.
  """
  if distribution is None and not dense_layers:
    return None
  unbuilt = [l.name for l in layers if not l.built]
  if unbuilt:
    raise ValueError(f"A sparsity distribution needs built layers (their kernel shapes); "
                     f"{unbuilt} are not. Give the model an input shape first.")
  shapes = {l.name: tuple(w[0].shape) for l, w in ((l, prunable_weights(l)) for l in layers)
            if w}
  return schedule_factors(shapes, target, distribution, dense_layers, scope)
