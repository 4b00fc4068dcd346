"""The Keras 3 family's pruning steps: `Keras3Pruner` (for custom training loops) and
`Keras3PruningStep`, the callback that runs it in `fit`.

Users pass `keras_signflip.UpdatePruningStep` (keras_signflip/callbacks.py),
which runs this callback for a Keras 3 model, or write their own loop with
`keras_signflip.Pruner` (keras_signflip/custom_loop.py), which runs
`Keras3Pruner`: one implementation behind both. (The callback was named
`UpdatePruningStep` in 0.3; that name still imports from here and from
`keras_signflip.keras3`.) TF-MOT's callback only sets the step; in the Keras 3
family this is also where masks change (on the host, with `keras.ops`),
because JAX compiles the train step as a pure function. Per step it only
advances a Python counter and asks each schedule (plain Python); it touches
the model -- on JAX, syncing its state -- only at pruning steps and epoch ends.
"""
import sys

from keras_signflip import pruner_hooks
from keras_signflip import schedule_checks
from keras_signflip import sparsity_schedules
from keras_signflip.keras3 import mask_update
from keras_signflip.keras3 import gradient_noise
from keras_signflip.keras3 import prune as prune_lib
from keras_signflip.keras3._framework import keras, ops

__all__ = ["Keras3Pruner", "Keras3PruningStep", "UpdatePruningStep"]


def _check_distribution(model):
  """Multi-device training in this family: `keras.distribution` on JAX only."""
  backend = keras.backend.backend()
  if keras.distribution.distribution() is not None and backend != "jax":
    raise ValueError(
        "keras_signflip's Keras 3 family trains on several devices through "
        f"keras.distribution on the JAX backend only; this is {backend!r}. Train on "
        "one device, switch to KERAS_BACKEND=jax, or use a tf_keras model "
        "(tf.distribute strategies work on the tf_keras family).")
  tf = sys.modules.get("tensorflow") if backend == "tensorflow" else None  # the backend itself
  # Keras 3's TensorFlow trainer keeps the strategy a model was built under.
  if tf is not None and (tf.distribute.has_strategy() or
                         getattr(model, "_distribute_strategy", None) is not None):
    raise ValueError(
        "keras_signflip's Keras 3 family does not run under a tf.distribute strategy "
        "(its mask updates run between steps on the host). Use a tf_keras model for "
        "tf.distribute, or keras.distribution.DataParallel on the JAX backend.")


class Keras3Pruner:
  """What `fit` with `UpdatePruningStep` does to a Keras 3 model, step by step.

  The wrappers count flips and advance `pruning_step` in their training call;
  masks change here, on the host, between steps: `before_step` advances a
  Python step counter and runs the mask updates the schedules ask for at it
  (zeroing pruned weights and their optimizer slots), `epoch_end` and `end`
  count the flip of the last step. Between `begin` and `end` the wrappers
  accept training calls; outside, a training call raises (masks would never
  change).

  A JAX loop over `model.stateless_call` and `optimizer.stateless_apply`
  holds the variables' values itself: pass them as `state`, a tuple
  `(trainable_values, non_trainable_values[, optimizer_values])` in the order
  of `model.trainable_variables`, `model.non_trainable_variables` and
  `optimizer.variables` (`state()` makes one), and use the state each call
  returns. A call that changes the model writes `state` into the variables,
  runs the same host code as `fit` and returns their new values; the other
  calls return `state` itself, so a step without a mask update costs nothing.
  (Why not a pure function of the state: the mask update is the same host
  code `fit` runs, so the loop gets `fit`'s masks exactly, and it runs only
  at pruning steps.) `end(state)` leaves the model holding `state`. A JAX
  call without `state` after steps that left the variables unchanged raises.

  Args:
    model: a Keras 3 model wrapped by `prune_sign_flip`, built.
    optimizer: the Keras optimizer the loop applies gradients with, whose
      slots of pruned weights are zeroed at mask updates. Defaults to
      `model.optimizer`.
    sync: None, or a function returning the model with its variables current
      (the callback's: Keras' `Callback.model`, which on JAX syncs `fit`'s state).
  """

  def __init__(self, model, optimizer=None, sync=None):
    self._model = model
    self.optimizer = getattr(model, "optimizer", None) if optimizer is None else optimizer
    self._sync = sync
    self.step = None  # the last step's number; None before `begin`
    self._begin_step = None
    self._wrappers = []

  @property
  def model(self):
    return self._model if self._sync is None else self._sync()

  def _variables(self, state):
    """The variable lists `state`'s value lists belong to; checked before any write."""
    model = self._model
    lists = [model.trainable_variables, model.non_trainable_variables]
    if len(state) == 3:
      if self.optimizer is None:
        raise ValueError("The state holds optimizer values, but the pruner has no "
                         "optimizer: pass keras_signflip.Pruner(model, optimizer).")
      lists.append(self.optimizer.variables)
    elif len(state) != 2:
      raise ValueError("Expected state=(trainable_values, non_trainable_values[, "
                       f"optimizer_values]); received a tuple of {len(state)}.")
    for name, variables, values in zip(("trainable", "non_trainable", "optimizer"),
                                       lists, state):
      if len(values) != len(variables):
        raise ValueError(f"state's {name} values: expected {len(variables)} (one per "
                         f"variable, in order), received {len(values)}.")
    return lists

  def _write(self, state, done=0):
    """Writes `state` (if any) into the variables; returns the model. `done`: the
    steps taken since `begin`, to catch a JAX loop that forgot to pass its state."""
    if state is not None:
      for variables, values in zip(self._variables(state), state):
        for v, value in zip(variables, values):
          v.assign(value)
    elif self._sync is None and done > 0 and keras.backend.backend() == "jax":
      # A stateless loop's steps leave the variables as they were: the wrappers'
      # pruning_step, which every training call advances, still reads its begin value.
      if int(ops.convert_to_numpy(self._wrappers[0].pruning_step)) == self._begin_step:
        raise ValueError(
            f"The model's variables have not changed in the {done} steps since begin(): "
            "a JAX loop over stateless_call keeps the values itself. Pass them: "
            "state = pruner.before_step(state), pruner.epoch_end(state), pruner.end(state), "
            "with state = pruner.state() after begin().")
    return self.model

  def _read(self, state):
    if state is None:
      return None
    return tuple([v.value for v in variables] for variables in self._variables(state))

  def state(self):
    """(trainable_values, non_trainable_values, optimizer_values): the model's and
    the optimizer's current values, for a JAX stateless loop (builds the optimizer)."""
    if self.optimizer is None:
      raise ValueError("The pruner has no optimizer: pass keras_signflip.Pruner(model, "
                       "optimizer).")
    if not self.optimizer.built:
      self.optimizer.build(self._model.trainable_variables)
    model = self._model
    return tuple([v.value for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables, self.optimizer.variables))

  def begin(self, state=None):
    """Before the first step: checks the model and the optimizer, sets the pruning
    step (0 for a new model) and counts a flip a saved model left uncounted."""
    model = self._write(state)
    if getattr(model, "steps_per_execution", 1) not in (1, None):
      raise ValueError("keras_signflip's Keras 3 family updates masks between steps and "
                       "needs compile(steps_per_execution=1); received "
                       f"{model.steps_per_execution}.")
    self._wrappers = prune_lib.collect_wrappers(model)
    if not self._wrappers:
      return state
    _check_distribution(model)
    unbuilt = [w.name for w in self._wrappers if not w.built]
    if unbuilt:
      raise ValueError(f"Wrappers {unbuilt} are not built; build the model (give it "
                       "an input shape) before training.")
    for s in prune_lib.flip_states(model):
      mask_update.check_finite(s)
    if (any(w.criterion.uses_gradients for w in self._wrappers)
        and not gradient_noise.records_gradients(self.optimizer)):
      raise ValueError("A criterion of this model reads gradients (Saliency, MovementScore): "
                       "compile with optimizer=keras_signflip.record_gradients(optimizer).")
    step = int(ops.convert_to_numpy(self._wrappers[0].pruning_step))
    if step < 0:
      for w in self._wrappers:
        w.pruning_step.assign(0)
      step = 0
    self.step = self._begin_step = step
    # Count the flip the last step made, if nobody has yet: a checkpoint saved
    # by a callback that ran before ours at the last epoch end holds it
    # uncounted, and resuming from it must still count it. (Weights changed
    # from outside since are the caller's to re-sync: `set_reference`.)
    prune_lib.count_pending(model)
    for w in self._wrappers:
      w.pruning_callback_active = True
    return self._read(state)

  def before_step(self, state=None):
    """Before each training step: advances the step and runs the mask updates due."""
    if not self._wrappers:
      return state
    if self.step is None:
      raise ValueError("Call the pruner's begin() before the first step.")
    self.step += 1  # the wrappers' in-graph pruning_step reaches it this step
    if not any(w.pruning_schedule(self.step)[0] for w in self._wrappers):
      return state
    # On JAX in fit, syncs the trainer's state, so the assignments reach the next step.
    self._write(state, done=self.step - 1 - self._begin_step)
    mask_update.update_masks(self._wrappers, self.step, self.optimizer)
    return self._read(state)

  def _count(self, state):
    if not self._wrappers or self.step is None:
      return state
    prune_lib.count_pending(self._write(state, done=self.step - self._begin_step))
    return self._read(state)

  def epoch_end(self, state=None):
    """At an epoch end: counts the flip the last step made, so counts read now are current."""
    return self._count(state)

  def end(self, state=None):
    """After the last step: counts the last flip; training calls raise from now on."""
    state = self._count(state)
    for w in self._wrappers:
      w.pruning_callback_active = False
    return state

  def warn_if_unreachable(self, steps):
    """Warns (`ScheduleWarning`, once per model) when `steps` more steps end
    before the schedule's final sparsity; `steps` None: unknown, no warning."""
    if not self._wrappers or self.step is None:
      return None
    return schedule_checks.warn_if_unreachable(
        self._model, [w.pruning_schedule for w in self._wrappers], self.step, steps,
        lambda schedule, step: float(schedule(step)[1]), sparsity_schedules.max_sparsity)


class Keras3PruningStep(pruner_hooks.PrunerHooks, keras.callbacks.Callback):
  """Steps the pruning schedules of a Keras 3 model's wrappers; needed in `fit`.

  Runs `Keras3Pruner` at `fit`'s hooks (in a custom training loop, use
  `keras_signflip.Pruner`). Before the first step of a `fit` whose length is
  known it warns (`ScheduleWarning`, once per model) when the schedule's final
  sparsity comes only after this call's steps.
  """

  pruner_class = Keras3Pruner

  def __init__(self):
    super().__init__()
    self.pruner = None
    self._reach_pending = False

  @property
  def step(self):
    return None if self.pruner is None else self.pruner.step

  def on_train_begin(self, logs=None):
    model = self.model
    self.pruner = Keras3Pruner(model, getattr(model, "optimizer", None),
                               sync=lambda: self.model)
    self.pruner.begin()
    self._reach_pending = True  # PrunerHooks warns at the call's first epoch

  def on_train_batch_begin(self, batch, logs=None):
    if self.pruner is not None:
      self.pruner.before_step()


UpdatePruningStep = Keras3PruningStep  # its 0.3 name
