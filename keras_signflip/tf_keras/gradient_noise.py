"""FlipOut's gradient noise on prunable weights (or every variable), for plain `model.fit`.

For each wrapped weight with gradient g and mask m (Apostol et al. 2020):

    sigma = factor * sqrt(mean((g * m) ** 2))      # per-layer RMS x factor
    g    <- (g + sigma * N(0, 1)) * m

Other variables' gradients pass unchanged, or, with noise_on="all" (FlipOut's
published runs), get the same noise with m = 1. With `weight_decay` > 0, every
variable's gradient then gets `weight_decay * w` added: PyTorch's coupled
weight decay (FlipOut's), which goes through momentum, unlike Keras'
decoupled `weight_decay` argument. The noise is drawn with a
stateless RNG keyed by (seed, optimizer step, variable index), so a run is
reproducible and resumes identically.

The same hook records, before any noise, sum_t w_t * g_t for criteria that
read gradients (`Saliency`, `MovementScore`): `record_gradients(optimizer)` is
`with_gradient_noise(optimizer, 0)`, or keeps a noisy optimizer's settings
(`keras_signflip.flipout.noise_settings`; the arguments are checked by
`flipout.check_noise`, as on Keras 3).

tf_keras optimizers have no gradient-transform hook, so `with_gradient_noise`
returns a copy of the optimizer whose class overrides `apply_gradients`.
"""
from keras_signflip import flipout
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras._framework import keras, tf

__all__ = ["with_gradient_noise", "record_gradients", "records_gradients"]

_NOISY_CLASSES = {}


def _add_noise(optimizer, grads_and_vars):
  out = []
  step = tf.cast(optimizer.iterations, tf.int32)
  every = optimizer.noise_factor and optimizer.noise_on == "all"
  for i, (g, v) in enumerate(grads_and_vars):
    constraint = getattr(v, "constraint", None)
    prunable = isinstance(constraint, state_lib.AfterStepConstraint)
    if g is None or not (prunable or every):
      out.append((g, v))
      continue
    g = tf.convert_to_tensor(g)
    if prunable and constraint.state.grad_product is not None:  # w before this step, times g
      constraint.state.grad_product.assign_add(
          state_lib.float32_value(v) * tf.cast(g, tf.float32))
    if not optimizer.noise_factor:
      out.append((g, v))
      continue
    mask = tf.cast(constraint.state.mask, g.dtype) if prunable else tf.ones_like(g)
    masked = g * mask
    sigma = optimizer.noise_factor * tf.sqrt(tf.reduce_mean(tf.square(masked)))
    draw = tf.random.stateless_normal(tf.shape(g), seed=tf.stack(
        [optimizer.noise_seed * 1000003 + i, step]), dtype=g.dtype)
    out.append(((masked + sigma * draw) * mask, v))
  decay = getattr(optimizer, "coupled_weight_decay", 0.0)
  if decay:
    # An embedding's IndexedSlices gradient becomes dense here, as PyTorch's
    # coupled decay touches every row too.
    out = [(g if g is None else tf.convert_to_tensor(g) + decay * tf.cast(v, g.dtype), v)
           for g, v in out]
  return out


def _noisy_class(base):
  if base not in _NOISY_CLASSES:
    def apply_gradients(self, grads_and_vars, *args, **kwargs):
      return base.apply_gradients(self, _add_noise(self, list(grads_and_vars)),
                                  *args, **kwargs)
    _NOISY_CLASSES[base] = type(base.__name__, (base,), {
        "apply_gradients": apply_gradients, "noise_on": "prunable",
        "__module__": base.__module__})
  return _NOISY_CLASSES[base]


def with_gradient_noise(optimizer, factor, seed=0, weight_decay=0.0, noise_on="prunable"):
  """A copy of a tf_keras `optimizer` that adds FlipOut's gradient noise.

  `optimizer` is a tf_keras optimizer instance, current or legacy (its config is
  copied); the other arguments are `keras_signflip.with_gradient_noise`'s
  (checked by `keras_signflip.flipout.check_noise`).

  Example:
    >>> model.compile(with_gradient_noise(keras.optimizers.Adam(1e-3), 0.5), ...)
  """
  if not isinstance(optimizer, (keras.optimizers.Optimizer,
                                keras.optimizers.legacy.Optimizer)):
    raise ValueError("Received an invalid value for `optimizer`, expected a "
                     f"tf_keras optimizer instance. Received: {optimizer!r}")
  if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
    # Outside the loss scaler, the hook would see the steps it then skips (inf/NaN).
    raise ValueError("with_gradient_noise / record_gradients wrap the inner optimizer: use "
                     "LossScaleOptimizer(record_gradients(inner)), or let compile wrap it "
                     "under a mixed_float16 policy.")
  settings = flipout.check_noise(factor, seed, weight_decay, noise_on)
  base = type(optimizer)  # a noisy copy is copied from its own base: noise once
  base = next((b for b, c in _NOISY_CLASSES.items() if c is base), base)
  noisy = _noisy_class(base).from_config(optimizer.get_config())
  noisy.noise_factor, noisy.noise_seed, noisy.coupled_weight_decay, noisy.noise_on = settings
  return noisy


def record_gradients(optimizer):
  """A copy of a tf_keras `optimizer` that records sum_t w_t * g_t for criteria
  that read gradients (`Saliency`, `MovementScore`); the noise of a
  `with_gradient_noise` optimizer is kept, none is added to another."""
  return with_gradient_noise(optimizer, *flipout.noise_settings(optimizer))


def records_gradients(optimizer):
  """Whether `optimizer` (or the inner optimizer of a LossScaleOptimizer) comes from
  `record_gradients` / `with_gradient_noise`."""
  inner = getattr(optimizer, "inner_optimizer", None)
  return type(optimizer) in _NOISY_CLASSES.values() or (
      inner is not None and records_gradients(inner))
