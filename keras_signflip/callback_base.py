"""`Callback`: a callback base class that both Keras versions accept, importing neither.

(Not a callback to pass to `fit`: those are in `keras_signflip.callbacks`.
Named `keras_signflip.callback` in 0.3.)

keras_signflip's generic callbacks (`RewindPoint`, `EarlyBird`,
`SignFlipSummaries`, the lottery loop's evaluator) serve tf_keras and
Keras 3 models alike, so they cannot subclass either Keras' `Callback`
without importing a framework the user may not have. Both `fit` loops call
callbacks through their `CallbackList`, which needs only the methods and
attributes below (tf_keras also asks `_implements_*_batch_hooks()` and
`_supports_tf_logs`; Keras 3 `async_safe`). Hooks do nothing by default.

Keras 3's own `Callback.model` syncs JAX's training state on access; this
base does not, so subclasses call `keras_signflip.families.synced(model)`
before reading variables mid-epoch.
"""

__all__ = ["Callback"]

_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


class Callback:
  """Base class: override the `on_*` hooks you need."""

  _supports_tf_logs = False   # tf_keras: logs arrive as Python numbers
  _chief_worker_only = None   # tf_keras multi-worker: run on every worker
  async_safe = False          # Keras 3: never dispatch our hooks on a thread

  def __init__(self):
    self.model = None
    self.params = {}
    self.validation_data = None

  def set_params(self, params):
    self.params = params

  def set_model(self, model):
    self.model = model

  def _overrides(self, kind):
    return any(getattr(type(self), hook) is not getattr(Callback, hook)
               for hook in _BATCH_HOOKS[kind])

  def _implements_train_batch_hooks(self):
    return self._overrides("train")

  def _implements_test_batch_hooks(self):
    return self._overrides("test")

  def _implements_predict_batch_hooks(self):
    return self._overrides("predict")

  def on_batch_begin(self, batch, logs=None):
    pass

  def on_batch_end(self, batch, logs=None):
    pass

  def on_epoch_begin(self, epoch, logs=None):
    pass

  def on_epoch_end(self, epoch, logs=None):
    pass

  def on_train_batch_begin(self, batch, logs=None):
    pass

  def on_train_batch_end(self, batch, logs=None):
    pass

  def on_test_batch_begin(self, batch, logs=None):
    pass

  def on_test_batch_end(self, batch, logs=None):
    pass

  def on_predict_batch_begin(self, batch, logs=None):
    pass

  def on_predict_batch_end(self, batch, logs=None):
    pass

  def on_train_begin(self, logs=None):
    pass

  def on_train_end(self, logs=None):
    pass

  def on_test_begin(self, logs=None):
    pass

  def on_test_end(self, logs=None):
    pass

  def on_predict_begin(self, logs=None):
    pass

  def on_predict_end(self, logs=None):
    pass


# Keras 3 runs batch-end hooks on a thread (so JAX and PyTorch steps run
# ahead of them) only when every callback's hooks are Keras' own no-ops or
# the callback is `async_safe`; it recognises a no-op by a `_is_default`
# attribute (`keras.src.utils.is_default`). The hooks above are no-ops too, so
# they carry it; a subclass's own hook does not. Without it, any generic
# callback in the list made every batch wait for its step, which slowed JAX
# epochs measurably.
for _kind in _BATCH_HOOKS.values():
  for _hook in _kind:
    getattr(Callback, _hook)._is_default = True

