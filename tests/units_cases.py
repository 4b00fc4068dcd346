"""Structured pruning and shrink cases, shared by the tf_keras tests (test_units.py)
and the Keras 3 ones (keras3/test_keras3_units.py); references are NumPy recounts."""
import numpy as np

import keras_signflip as ksf
from keras_signflip import families
from keras_signflip.shrinking import shrink
from keras_signflip.units import Units

# Per-weight NumPy scores and tiebreaks, independent of keras_signflip's criteria.
SCORES = {"magnitude": (lambda w, f: np.abs(w), None),
          "sign_flip": (lambda w, f: -f.astype(np.float64), lambda w, f: np.abs(w)),
          "hybrid": (lambda w, f: np.abs(w) ** 2 / (f + 1), lambda w, f: -f.astype(np.float64))}


def reference_unit_mask(weight, flips, mask, criterion, sparsity):
  """The expected mask: units ranked by summed live score, then summed tiebreak,
  then lower index; max(round(units * (1 - sparsity)), 1) kept, pruned stay pruned."""
  score_fn, tie_fn = SCORES[criterion]
  units = weight.shape[-1]
  live = mask.reshape(-1, units) > 0
  score = np.where(live, score_fn(weight, flips).reshape(-1, units), 0).sum(0)
  score = np.where(live.any(0), score, -np.inf)
  tie = (np.zeros(units) if tie_fn is None
         else np.where(live, tie_fn(weight, flips).reshape(-1, units), 0).sum(0))
  order = sorted(range(units), key=lambda j: (-score[j], -tie[j], j))
  k = max(int(np.round(units * (1 - sparsity))), 1)
  kept = np.zeros(units, bool)
  kept[order[:k]] = True
  kept &= live.any(0)
  return np.broadcast_to(kept, weight.shape) & (mask > 0)


def unit_masks(keras, criterion, sparsity, seed=0):
  """(masks computed by the family, NumPy reference masks) for a conv and a Dense kernel
  with flips drawn with many ties and one unit already pruned."""
  family = families.of_keras(keras)
  rng = np.random.default_rng(seed)
  L = keras.layers
  base = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(8, 3, name="c"), L.Flatten(),
                           L.Dense(6, name="d"), L.Dense(2, name="out")])
  model = ksf.prune_sign_flip(base, criterion=Units(criterion), dense_layers=("last",))
  got, want = [], []
  for s in family.flip_states(model):
    shape = tuple(s.weight.shape)
    w = rng.normal(size=shape).astype(np.float32)
    flips = rng.integers(0, 3, size=shape).astype(np.int32)
    mask = np.ones(shape, np.float32)
    mask[..., 1] = 0  # unit 1 pruned earlier
    w, flips = w * mask, flips * mask.astype(np.int32)
    s.weight.assign(w)
    s.flips.assign(flips)
    s.mask.assign(mask.astype(np.dtype(s.mask.dtype.name if hasattr(s.mask.dtype, "name")
                                       else s.mask.dtype)))
    masks, _ = family.compute_masks([s], sparsity, Units(criterion), None, None, None)
    got.append(np.asarray(family.to_numpy(masks[0])).astype(bool))
    want.append(reference_unit_mask(w, flips, mask, criterion, sparsity))
  return got, want


def conv_net(keras, seed=0):
  """A small conv net with BN, 'same' and 'valid' convs, Flatten and Dense; about half of
  each hidden layer's kernel columns zeroed (biases left nonzero)."""
  L = keras.layers
  inputs = keras.Input((10, 10, 2))
  x = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inputs)
  x = L.BatchNormalization(name="bn1")(x)
  x = L.MaxPooling2D(name="pool")(x)
  x = L.Conv2D(5, 3, activation="relu", name="c2")(x)   # valid: constants fold
  x = L.BatchNormalization(name="bn2")(x)
  x = L.Flatten(name="flat")(x)
  x = L.Dense(7, activation="sigmoid", name="d1")(x)  # sigmoid(b) != 0: folds into d2
  x = L.Dropout(0.3, name="drop")(x)
  outputs = L.Dense(3, name="out")(x)
  return _zero_units(keras.Model(inputs, outputs), seed)


def mlp(keras, seed=0):
  L = keras.layers
  model = keras.Sequential([keras.Input((12,)), L.Dense(9, activation="relu", name="d1"),
                            L.Dense(8, activation="tanh", name="d2"), L.Dense(3, name="out")])
  return _zero_units(model, seed)


def _zero_units(model, seed):
  """Random weights; in every layer but the last, a random half of the units zeroed;
  BN statistics random with positive variance."""
  rng = np.random.default_rng(seed)
  dead = {}
  for layer in model.layers:
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()]
    kind = type(layer).__name__
    if kind == "BatchNormalization":
      weights[3] = np.abs(weights[3]) + 0.5
    if kind in ("Dense", "Conv2D") and layer.name != "out":
      units = weights[0].shape[-1]
      dead[layer.name] = rng.permutation(units)[:units // 2]
      weights[0][..., dead[layer.name]] = 0
    layer.set_weights(weights)
  model.dead_units = dead
  return model


def check_shrink(model, x, expected_units):
  """Shrinks `model`; asserts equal predictions, the expected unit counts and the
  parameter count recounted from those units. Returns the shrunk model."""
  small = shrink(model)
  family = families.of(model)
  predict = lambda m: family.to_numpy(m(x, training=False))  # noqa: E731  (eager: no compile)
  np.testing.assert_allclose(predict(small), predict(model), atol=1e-5, rtol=1e-5)
  sizes = {}
  for layer in small.layers:
    if type(layer).__name__ in ("Dense", "Conv2D"):
      sizes[layer.name] = layer.get_weights()[0].shape[-1]
  assert sizes == expected_units
  assert small.count_params() == expected_params(model, expected_units)
  return small


def expected_params(model, units):
  """The parameter count of `model` with `units` per producer, recounted by formula:
  kernel = window * inputs * units (+ units bias); BN 4 per channel; inputs follow
  the previous producer's units (times positions after Flatten)."""
  total, channels, positions = 0, None, 1
  shape = None
  for layer in model.layers:
    kind = type(layer).__name__
    if kind in ("InputLayer",):
      continue
    weights = layer.get_weights()
    if kind in ("Dense", "Conv2D"):
      kernel = weights[0]
      fan_in = kernel.shape[-2] if channels is None else channels * positions
      window = int(np.prod(kernel.shape[:-2]))
      total += window * fan_in * units[layer.name] + units[layer.name] * (len(weights) - 1)
      channels, positions = units[layer.name], 1
    elif kind == "BatchNormalization":
      total += len(weights) * channels
    elif kind == "Flatten":
      positions = int(np.prod(shape[1:-1]))
    out = layer.output.shape
    shape = tuple(out.as_list() if hasattr(out, "as_list") else out)
  return total
