"""`PruneSignFlip`: TF-MOT's `PruneLowMagnitude` with criteria and flip counts.

It is a `PruneLowMagnitude`, so TF-MOT's `strip_pruning`, `UpdatePruningStep`
and `PruningSummaries` find and handle it. Beyond TF-MOT's (mask, threshold,
pruning_step) it keeps, per prunable weight:

| variable | dtype | bytes per weight | kept |
|---|---|---|---|
| prev_sign | int8 | 1 | always |
| flips | int32 | 4 | always |
| reference | float32 | 4 | criteria with `uses_reference` (or keep_reference=True) |
| flips_at_update | int32 | 4 | `RecentFlips` |
| grad_product | float32 | 4 | `Saliency`, `MovementScore` |

i.e. 5 bytes per prunable weight beyond TF-MOT's own mask (4) for Hybrid,
SignFlip, Magnitude and Random; prev_sign is int32 under
MultiWorkerMirroredStrategy, whose collectives cannot broadcast int8. An
`Embedding` table adds `touched`, one int8 per row (state.py).
"""
from keras_signflip import arguments
from keras_signflip import criteria as criteria_lib
from keras_signflip import wrapper_config
from keras_signflip.tf_keras import layer_support
from keras_signflip.tf_keras import schedules as schedules_lib
from keras_signflip.tf_keras import state as state_lib
from keras_signflip.tf_keras.mask_update import CriterionPruning
from keras_signflip.tf_keras._framework import PruneLowMagnitude, in_save_context, keras, tf, tfmot

__all__ = ["PruneSignFlip", "GlobalGroup", "SCOPES"]

SCOPES = arguments.SCOPES


class GlobalGroup:
  """The wrappers of one model ranked together (scope="global").

  The first member is the leader: its mask update computes every member's
  mask from one ranking; the others' updates are no-ops.
  """

  def __init__(self, wrappers):
    self.wrappers = list(wrappers)
    for w in self.wrappers:
      w.group = self

  def states(self):
    unbuilt = [w.name for w in self.wrappers if not w.built]
    if unbuilt:
      raise ValueError(
          f"scope='global' ranks every wrapped layer together, but {unbuilt} "
          "are not built yet. Give the model an input shape (or call "
          "`model.build(...)`) before training.")
    return [s for w in self.wrappers for s in w.flip_states]

  def is_leader(self, pruning_obj):
    return self.wrappers[0].pruning_obj is pruning_obj


def _keep_reference(criterion, keep_reference):
  """Whether a wrapper keeps reference weights (see PruneSignFlip's `keep_reference`)."""
  keep_reference = arguments.check_optional_bool("keep_reference", keep_reference)
  if keep_reference is None:
    return criterion.uses_reference
  if not keep_reference and criterion.uses_reference:
    raise ValueError(f"{type(criterion).__name__} reads the reference weights; "
                     "keep_reference=False cannot serve it.")
  return bool(keep_reference)


def _validate(criterion, scope, min_flips, block_size, sparsity_m_by_n):
  """Checks the arguments; returns the criterion instance."""
  criterion = arguments.check(criteria_lib.get(criterion), scope, min_flips)
  structured = tuple(block_size) != (1, 1) or sparsity_m_by_n
  if structured and scope == "global":
    raise ValueError("`block_size` and `sparsity_m_by_n` need scope='layer'; "
                     "global ranking of blocks is not supported. Received: "
                     f"block_size={block_size!r}, sparsity_m_by_n={sparsity_m_by_n!r}")
  if structured and min_flips is not None:
    raise ValueError("`min_flips` (flip-triggered pruning) prunes single "
                     "weights and cannot be combined with `block_size` or "
                     "`sparsity_m_by_n`.")
  return criterion


def _own_name(layer, weight):
  """"<layer name>/<weight name>" (e.g. "fc1/kernel"), without the wrapper's scope."""
  return f"{layer.name}/{weight.name.split(':')[0].split('/')[-1]}"


def _own_names(layer, weights):
  """`_own_name` of each weight, repeats told apart (`criteria.distinct_names`), so
  `Random` scores each tensor apart."""
  return criteria_lib.distinct_names([_own_name(layer, w) for w in weights])


@keras.utils.register_keras_serializable(package="keras_signflip")
class PruneSignFlip(PruneLowMagnitude):
  """Prunes a layer's weights by a criterion, counting sign flips every step.

  Args:
    layer: the layer to wrap (registry-supported or `PrunableLayer`).
    pruning_schedule: a TF-MOT `PruningSchedule`. Defaults to
      `ConstantSparsity(0.5, 0)` (a new instance per wrapper).
    criterion: a `keras_signflip.criteria.Criterion` or its name. Defaults to
      `Hybrid(power=2)`, FlipOut's saliency |w|^2 / (flips + 1).
    scope: "layer" or "global". Global wrappers are linked by
      `prune_sign_flip` into one `GlobalGroup`.
    min_flips: None, or the flip count (>= 1) at which an unpruned weight is pruned.
    block_size, block_pooling_type, sparsity_m_by_n: as TF-MOT (layer scope).
    position: this wrapper's index among the model's wrappers (set by
      `prune_sign_flip`); kept in the config for files of 0.2. `Random` is
      keyed by the weight's name (`criteria.tensor_key`) instead, so layers
      wrapped one at a time get different scores, and the same layer names the
      same scores in every process.
    keep_reference: keep the reference weights (4 bytes per weight). None:
      only when the criterion reads them (`uses_reference`); files written
      before this option load with True, as they hold them.
    score_normalization: None, or "l2" (scope="global": each tensor's scores
      over their L2 norm before the one ranking).
  """

  def __init__(self, layer, pruning_schedule=None, criterion="hybrid",
               scope="layer", min_flips=None, block_size=(1, 1),
               block_pooling_type="AVG", sparsity_m_by_n=None, position=0,
               keep_reference=None, score_normalization=None, **kwargs):
    if pruning_schedule is None:
      pruning_schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, 0)
    self.criterion = _validate(criterion, scope, min_flips, block_size, sparsity_m_by_n)
    self.scope = scope
    self.min_flips = min_flips
    self.position = int(position)
    self.keep_reference = _keep_reference(self.criterion, keep_reference)
    self.score_normalization = arguments.check_normalization(score_normalization, scope)
    self.group = None
    self.flip_states = []
    # Embedding tables: count only the rows a batch touched (state.py); set by
    # UpdatePruningStep from the optimizer at train begin.
    self.table_rows_only = False
    # Compute in the wrapped layer's dtype policy (a float32 output layer of a
    # mixed_float16 model stays float32), not the global one.
    if "dtype" not in kwargs and getattr(layer, "dtype_policy", None) is not None:
      kwargs["dtype"] = layer.dtype_policy
    name = kwargs.get("name")
    layer_support.make_prunable(layer)  # Bidirectional, EinsumDense, ...: TF-MOT refuses them
    super().__init__(layer, pruning_schedule=pruning_schedule, block_size=block_size,
                     block_pooling_type=block_pooling_type,
                     sparsity_m_by_n=sparsity_m_by_n, **kwargs)
    if name is not None:
      # TF-MOT's wrapper replaces any `name` with "<class>_<layer>" silently;
      # a name given here is kept (a loaded wrapper gets its saved one back).
      self._name = name

  def build(self, input_shape):
    super().build(input_shape)
    self.flip_states = []
    keys = _own_names(self.layer, [weight for weight, _, _ in self.pruning_vars])
    for (weight, mask, threshold), key in zip(self.pruning_vars, keys):
      base = weight.name.split(":")[0].replace("/", "_")
      prev_sign = self.add_weight(
          f"{base}_prev_sign", shape=weight.shape, dtype=state_lib.sign_dtype(),
          trainable=False,
          initializer=lambda shape, dtype, w=weight: state_lib.signs(
              state_lib.float32_value(w), dtype),
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      flip_count = self.add_weight(
          f"{base}_flips", shape=weight.shape, dtype=tf.int32, trainable=False,
          initializer="zeros", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      reference = None
      if self.keep_reference:
        reference = self.add_weight(
            f"{base}_reference", shape=weight.shape, dtype=tf.float32, trainable=False,
            initializer=lambda shape, dtype, w=weight: state_lib.float32_value(w),
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      touched = None
      if self._sparse_gradient(weight):
        touched = self.add_weight(
            f"{base}_touched", shape=weight.shape[:1], dtype=tf.int8, trainable=False,
            initializer="zeros")
      at_update = None
      if self.criterion.uses_window:
        at_update = self.add_weight(
            f"{base}_flips_at_update", shape=weight.shape, dtype=tf.int32, trainable=False,
            initializer="zeros", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      grad_product = None
      if self.criterion.uses_gradients:
        grad_product = self.add_weight(
            f"{base}_grad_product", shape=weight.shape, dtype=tf.float32, trainable=False,
            initializer="zeros", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      state = state_lib.PruningState(weight, mask, threshold, prev_sign,
                                  flip_count, reference,
                                  criteria_lib.tensor_key(key),
                                  touched, at_update, grad_product)
      if touched is None:
        state_lib.attach(state)
      self.flip_states.append(state)
    self.pruning_obj = CriterionPruning(
        states=self.flip_states, criterion=self.criterion,
        min_flips=self.min_flips, group_fn=self.global_group, wrapper=self,
        normalization=self.score_normalization,
        training_step_fn=lambda: self.pruning_step,
        pruning_vars=self.pruning_vars, pruning_schedule=self.pruning_schedule,
        block_size=self.block_size, block_pooling_type=self.block_pooling_type,
        sparsity_m_by_n=self.sparsity_m_by_n)

  def _sparse_gradient(self, weight):
    """An Embedding's table, outside tf.distribute: rows counted as touched
    (state.py). Under a strategy, whose replicas see different rows, the table
    keeps the after-step constraint (a pass over the whole table each step;
    legacy optimizers refuse it)."""
    return (isinstance(self.layer, keras.layers.Embedding)
            and weight is self.layer.embeddings and not tf.distribute.has_strategy())

  def count_tables(self):
    """Counts and re-masks what the last training step changed in tables (state.py)."""
    for s in self.flip_states:
      if s.touched is not None:
        state_lib.count_table(s, self.table_rows_only)

  # Not converted by autograph: the check below is plain Python, and
  # converting it left garbage cycles that crashed the interpreter in
  # protobuf's upb (a double free when collected; TF-MOT's test suite hit it).
  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None, **kwargs):
    if training is True and not in_save_context():
      # Keras traces the train step after callbacks' on_train_begin, so an
      # untouched step (-1) here means no UpdatePruningStep: say so now, as a
      # ValueError, instead of TF-MOT's in-graph assertion at the first step.
      # (tf.saved_model.save also traces training=True; it trains nothing.)
      with tf.init_scope():
        if tf.executing_eagerly() and int(self.pruning_step.numpy()) < 0:
          raise ValueError(
              f"{self.name}: training a pruned model needs the "
              "keras_signflip.UpdatePruningStep() callback (or TF-MOT's): "
              "model.fit(..., callbacks=[ksf.UpdatePruningStep()]) with "
              "`import keras_signflip as ksf`. In a custom loop, call "
              "keras_signflip.Pruner(model, optimizer).begin() first.")
    # Tables: what the last step changed is counted and re-masked in TF-MOT's
    # call, before the layer reads it (CriterionPruning.weight_mask_op).
    tables = [s for s in self.flip_states if s.touched is not None]
    outputs = super().call(inputs, training=training, **kwargs)
    if tables and self.table_rows_only and training is not None and training is not False:
      def record():
        for s in tables:
          state_lib.record_touched_rows(s, inputs)
        return tf.constant(True)
      tf.__internal__.smart_cond.smart_cond(training, record, lambda: tf.constant(False))
    return outputs

  def global_group(self):
    """The `GlobalGroup` this wrapper ranks in; None for scope="layer"."""
    if self.scope == "global" and self.group is None:
      raise ValueError(
          f"{self.name} has scope='global' but is not linked to the other "
          "wrappers of its model. Wrap models with `prune_sign_flip`, or after "
          "loading call `keras_signflip.link_global(model)` (the "
          "`keras_signflip.UpdatePruningStep` callback does it for you).")
    return self.group

  def get_config(self):
    return dict(super().get_config(), sparsity_m_by_n=self.sparsity_m_by_n,
                **wrapper_config.config_of(self))

  @classmethod
  def from_config(cls, config):
    config = wrapper_config.arguments_of(config)
    config["pruning_schedule"] = schedules_lib.get(config["pruning_schedule"])
    config["layer"] = keras.layers.deserialize(config["layer"])
    return cls(**config)
