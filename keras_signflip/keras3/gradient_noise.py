"""Gradient recording and FlipOut's gradient noise on Keras 3 optimizers (the
tf_keras family's are `keras_signflip.tf_keras.gradient_noise`).

Criteria that read gradients (`Saliency`, `MovementScore`) rank by

    A = sum over steps t of w_t * g_t        (w before the step, g its gradient)

which only the optimizer sees. `record_gradients(optimizer)` returns a copy
of a Keras 3 optimizer whose `apply` adds w * g to a float32 accumulator per
recorded weight before its usual update. The accumulators are optimizer
variables (made by `add_variable_from_reference`, named `<weight>_grad_product`):
on JAX the train step is pure and only the optimizer's own variables come out
of `stateless_apply`, so a layer variable written there would be lost. They are
saved and restored with the optimizer, and zeroed where pruned with its slots.

`with_gradient_noise(optimizer, factor, seed, weight_decay, noise_on)` is the same copy
with FlipOut's gradient transform after the recording (Apostol et al. 2020; as
`keras_signflip.tf_keras.gradient_noise`): on each weight a wrapper masks

    sigma = factor * sqrt(mean(g ** 2))            # g arrives masked: = ||g * m||_2 / sqrt(n)
    g    <- (g + sigma * N(0, 1)) * m

(with noise_on="all", as FlipOut's published runs, every other trainable variable
gets the same noise with m = 1), then, on every variable, g += weight_decay * w
(PyTorch's coupled decay, inside
the momentum). `record_gradients(optimizer)` is `with_gradient_noise(optimizer, 0)`,
or keeps a noisy optimizer's settings (`keras_signflip.flipout.noise_settings`).

As on tf_keras the noise has no random state, which JAX's pure step would
drop: each draw is keyed by (seed, the optimizer's `iterations` before the
step, the variable's index), so a run is reproducible, and a resumed one (the
optimizer's step is saved) draws what an uninterrupted one does. The generator
is the backend's: TensorFlow's stateless normal with the tf_keras hook's key,
JAX's threefry, PyTorch's Mersenne twister seeded by a hash of the key.

One thing differs from the tf_keras hook, forced by the same pure step: the
mask is a model variable, which `stateless_apply` does not receive (on JAX it
would be a constant of the compiled step), so m is read off the step itself.
A pruned weight is exactly 0 with a gradient of exactly 0 (the wrapper
multiplies the gradient by the mask, mask updates zero the weight and its
slots), and m = (g != 0) | (w != 0). It differs from the mask only on a live
weight that is exactly 0 with a zero gradient (one regrown at 0 by SET, say),
which misses that step's noise.

Keras 3 optimizers have no gradient-transform hook, hence the subclass; a
saved one loads back as one (registered as "keras_signflip>RecordGradients",
the wrapped optimizer's config and the noise's arguments inside).
"""
import sys

from keras_signflip import flipout
from keras_signflip.keras3._framework import keras, ops

__all__ = ["record_gradients", "records_gradients", "with_gradient_noise", "request_gradients",
           "mark_prunable", "grad_product"]

# Set on a weight by its wrapper (None: wanted) and then by the recording
# optimizer's build (its accumulator). Keras variables are not hashable, so
# the link lives on the variable, as Keras' own `constraint` does.
_GRAD_PRODUCT = "_keras_signflip_grad_product"
_PRUNABLE = "_keras_signflip_prunable"  # set by a wrapper: the noise goes on this weight
_REGISTERED_NAME = "RecordGradients"
_RECORDING_CLASSES = {}


def request_gradients(weight):
  """Marks `weight` as read by a gradient criterion (a wrapper's build)."""
  if not hasattr(weight, _GRAD_PRODUCT):
    setattr(weight, _GRAD_PRODUCT, None)


def mark_prunable(weight):
  """Marks `weight` as masked by a wrapper (its build): `with_gradient_noise` noises it."""
  setattr(weight, _PRUNABLE, True)


def grad_product(weight):
  """The accumulator of sum w * g for `weight`, or None if nothing records it."""
  return getattr(weight, _GRAD_PRODUCT, None)


def _mix32(word, step):
  """A 32-bit seed from (word, step) (splitmix64's finaliser): PyTorch's CPU
  generator keeps 32 bits of its seed, and nearby keys must not share one."""
  x = ((word & 0xFFFFFFFF) << 32) | (step & 0xFFFFFFFF)
  x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
  x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
  return (x ^ (x >> 31)) & 0xFFFFFFFF


def _normal(shape, word, step):
  """float32 N(0, 1) of `shape`, a pure function of (word, step).

  `word` is a Python int, `step` a tensor (traced inside a compiled step).
  Keras' own `keras.random.normal` takes an int or a SeedGenerator (whose
  state JAX's stateless step would drop), not a tensor seed, so each backend's
  stateless generator is called: in-graph on TensorFlow and JAX; PyTorch runs
  its step eagerly and seeds a generator on the host.
  """
  backend = keras.backend.backend()
  if backend == "jax":
    jax = sys.modules["jax"]  # the backend itself, imported by Keras
    key = jax.random.fold_in(jax.random.PRNGKey(word), ops.cast(step, "uint32"))
    return jax.random.normal(key, tuple(shape), "float32")
  if backend == "tensorflow":
    tf = sys.modules["tensorflow"]  # the backend itself, imported by Keras
    seed = tf.stack([tf.constant(word, tf.int32), tf.cast(step, tf.int32)])
    return tf.random.stateless_normal(shape, seed=seed, dtype=tf.float32)
  step = int(ops.convert_to_numpy(step))
  return keras.random.normal(shape, dtype="float32", seed=_mix32(word, step))


def _dense(g):
  """TensorFlow's IndexedSlices gradient (an Embedding's) as a dense tensor, other gradients
  as they are (Keras' `ops.convert_to_tensor` keeps IndexedSlices)."""
  tf = sys.modules.get("tensorflow")
  if tf is not None and isinstance(g, tf.IndexedSlices):
    return tf.convert_to_tensor(g)
  return g


def _noisy(g, v, factor, word, step, masked=True):
  """FlipOut's noise on the (masked) gradient `g` of `v`, masked again (`masked`: a
  pruned weight's; a variable no mask covers gets it everywhere)."""
  g32 = ops.cast(g, "float32")
  sigma = factor * ops.sqrt(ops.mean(ops.square(g32)))
  noisy = ops.add(g32, ops.multiply(sigma, _normal(ops.shape(g32), word, step)))
  if masked:
    live = ops.logical_or(ops.not_equal(g32, 0), ops.not_equal(ops.cast(v, "float32"), 0))
    noisy = ops.where(live, noisy, ops.zeros_like(noisy))
  return ops.cast(noisy, g.dtype)


def _transform(optimizer, grads, variables):
  """The hook: records sum w * g, then adds the noise and the coupled decay.

  `grads` may be scaled by `loss_scale_factor`: the record divides by it, the
  noise is relative, the decay is multiplied by it.
  """
  scale = optimizer.loss_scale_factor
  factor, decay = optimizer.noise_factor, optimizer.coupled_weight_decay
  step = ops.convert_to_tensor(optimizer.iterations) if factor else None
  out = []
  for i, (g, v) in enumerate(zip(grads, variables)):
    if g is None:
      out.append(g)
      continue
    accumulator = optimizer._grad_products.get(id(v))  # pylint: disable=protected-access
    if accumulator is not None:  # w before this step, times g
      g32 = ops.cast(g, "float32") if scale is None else ops.cast(g, "float32") / scale
      accumulator.assign(accumulator + ops.cast(v, "float32") * g32)
    prunable = getattr(v, _PRUNABLE, False)
    if factor and (prunable or optimizer.noise_on == "all"):
      # An Embedding's IndexedSlices gradient (TensorFlow) made dense first: its norm sums
      # repeated rows (the noise then reaches every row, as in tf_keras and PyTorch).
      g = g if prunable else _dense(g)
      # tf_keras' key, (seed * 1000003 + i, step), kept to 31 bits.
      g = _noisy(g, v, factor, (optimizer.noise_seed * 1000003 + i) % 2**31, step, prunable)
    if decay:
      g = ops.convert_to_tensor(g)  # an IndexedSlices gradient becomes dense, as in PyTorch
      g = ops.add(g, ops.multiply(ops.cast(v, g.dtype), decay if scale is None else decay * scale))
    out.append(g)
  return out


def _recording_class(base):
  """`base` with an `apply` that first runs `_transform` on the gradients."""
  if base in _RECORDING_CLASSES:
    return _RECORDING_CLASSES[base]

  def build(self, variables):
    base.build(self, variables)
    self._grad_products = {}
    for v in variables:
      if hasattr(v, _GRAD_PRODUCT):
        accumulator = self.add_variable_from_reference(v, "grad_product", initializer="zeros")
        setattr(v, _GRAD_PRODUCT, accumulator)
        self._grad_products[id(v)] = accumulator

  def apply(self, grads, trainable_variables=None):
    if not self.built and trainable_variables is not None:  # as base.apply would
      with keras.name_scope(self.name, caller=self):
        self.build(list(trainable_variables))
      self.built = True
    variables = self._trainable_variables if trainable_variables is None else trainable_variables
    return base.apply(self, _transform(self, list(grads), list(variables)), trainable_variables)

  def get_config(self):
    return {"optimizer": keras.optimizers.serialize(base(**_config(self, base))),
            "factor": self.noise_factor, "seed": self.noise_seed,
            "weight_decay": self.coupled_weight_decay, "noise_on": self.noise_on}

  cls = type(base.__name__, (base,), {"build": build, "apply": apply, "get_config": get_config,
                                      "from_config": classmethod(_load),
                                      "noise_factor": 0.0, "noise_seed": 0,
                                      "coupled_weight_decay": 0.0, "noise_on": "prunable",
                                      "__module__": base.__module__})
  # Every recording class loads any saved one (the base is in the config).
  keras.saving.register_keras_serializable("keras_signflip", _REGISTERED_NAME)(cls)
  _RECORDING_CLASSES[base] = cls
  return cls


def _config(optimizer, base=None):
  """`optimizer`'s constructor arguments (its learning-rate schedule rebuilt)."""
  config = (base or type(optimizer)).get_config(optimizer)
  if isinstance(config.get("learning_rate"), dict):
    config["learning_rate"] = keras.saving.deserialize_keras_object(config["learning_rate"])
  return config


def _load(cls, config, custom_objects=None):
  """from_config of a saved recording optimizer: the inner one, recording (and
  its noise; files saved before the noise existed have none)."""
  del cls
  return with_gradient_noise(
      keras.optimizers.deserialize(config["optimizer"], custom_objects=custom_objects),
      config.get("factor", 0.0), seed=config.get("seed", 0),
      weight_decay=config.get("weight_decay", 0.0), noise_on=config.get("noise_on", "prunable"))


@keras.saving.register_keras_serializable("keras_signflip", _REGISTERED_NAME)
class _SavedRecorder:
  """Loads a saved recording optimizer before any recording class exists here."""
  from_config = classmethod(_load)

  def get_config(self):
    return {}


def _check_optimizer(optimizer, name):
  if not isinstance(optimizer, keras.optimizers.Optimizer):
    raise ValueError("Received an invalid value for `optimizer`, expected a Keras 3 "
                     f"optimizer instance. Received: {optimizer!r}")
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    raise ValueError(f"{name} wraps the inner optimizer: use "
                     f"LossScaleOptimizer({name}(inner)).")


def with_gradient_noise(optimizer, factor, seed=0, weight_decay=0.0, noise_on="prunable"):
  """A copy of a Keras 3 `optimizer` that adds FlipOut's gradient noise.

  It also records gradients as `record_gradients` does.

  `optimizer` is a Keras 3 optimizer instance (its config is copied); the other
  arguments are `keras_signflip.with_gradient_noise`'s (checked by
  `keras_signflip.flipout.check_noise`).

  Example:
    >>> model.compile(ksf.with_gradient_noise(keras.optimizers.SGD(0.1, momentum=0.9), 1.0), ...)
  """
  _check_optimizer(optimizer, "with_gradient_noise")
  settings = flipout.check_noise(factor, seed, weight_decay, noise_on)
  base = type(optimizer)
  if records_gradients(optimizer):
    base = next(b for b, c in _RECORDING_CLASSES.items() if c is base)
  hooked = _recording_class(base)(**_config(optimizer, base))
  hooked.noise_factor, hooked.noise_seed, hooked.coupled_weight_decay, hooked.noise_on = settings
  return hooked


def record_gradients(optimizer):
  """A copy of a Keras 3 `optimizer` that records sum_t w_t * g_t for the
  weights of wrappers whose criterion reads gradients (`Saliency`,
  `MovementScore`); every update is the original optimizer's (the noise of a
  `with_gradient_noise` optimizer is kept).

  Example:
    >>> model.compile(ksf.record_gradients(keras.optimizers.Adam(1e-3)), loss)
  """
  _check_optimizer(optimizer, "record_gradients")
  return with_gradient_noise(optimizer, *flipout.noise_settings(optimizer))


def records_gradients(optimizer):
  """Whether `optimizer` (or the inner optimizer of a LossScaleOptimizer) records."""
  inner = getattr(optimizer, "inner_optimizer", None)
  return type(optimizer) in _RECORDING_CLASSES.values() or (
      inner is not None and records_gradients(inner))
