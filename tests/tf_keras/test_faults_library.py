"""Every run is what it says it is (issue 27, library side).

Training without `UpdatePruningStep` is refused before any step, a `fit` that
ends before the schedule's final sparsity warns once per model, and arguments
that would be ignored or are meaningless (already-wrapped models, NaN powers,
bool frequencies, schedules that never prune) are refused before anything
changes. Expectations are stated here independently (TF-MOT's polynomial
formula written out, weights copied before the call), never read back from
the code under test. tf_keras runs in this process; Keras 3 (JAX backend)
runs its cases in one subprocess (`_KERAS3_SCRIPT`), whose observations the
`test_keras3_*` tests check.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip import criteria
from keras_signflip.schedule_checks import ScheduleWarning
from keras_signflip.tf_keras import schedules
from keras_signflip.tf_keras._framework import keras, tfmot

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = "callbacks=[ksf.UpdatePruningStep()]"


def _base(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.layers.Dense(8, input_shape=(4,), name="d1"),
                           keras.layers.Dense(2, name="d2")])


def _data(n=40):
  rng = np.random.RandomState(0)
  return rng.randn(n, 4).astype("float32"), rng.randn(n, 2).astype("float32")


def _pruned(schedule, criterion="magnitude"):
  model = ksf.prune_sign_flip(_base(), pruning_schedule=schedule, criterion=criterion)
  model.compile(keras.optimizers.SGD(0.1), "mse")
  return model


def _schedule_warnings(record):
  return [str(w.message) for w in record if issubclass(w.category, ScheduleWarning)]


def _polynomial(initial, final, begin, end, power, step):
  """TF-MOT's PolynomialDecay at `step`, written out."""
  p = min(1.0, max(0.0, (step - begin) / (end - begin)))
  return final + (initial - final) * (1 - p) ** power


# tf_keras -------------------------------------------------------------------

def test_tf_keras_fit_without_update_pruning_step_raises_before_any_step():
  model = _pruned(tfmot.sparsity.keras.ConstantSparsity(0.9, 0, frequency=1))
  before = [w.numpy().copy() for w in model.weights]
  x, y = _data()
  with pytest.raises(ValueError, match=r"UpdatePruningStep") as error:
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
  assert FIX in str(error.value)
  for old, new in zip(before, model.weights):
    np.testing.assert_array_equal(new.numpy(), old)  # weights, masks, pruning_step (-1)
  assert int(ksf.collect_wrappers(model)[0].pruning_step.numpy()) == -1


def test_tf_keras_schedule_beyond_one_fit_warns_once_naming_steps_and_reach():
  model = _pruned(tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, 0, 20, frequency=2))
  x, y = _data()  # 40 examples, batch 8: 5 steps an epoch
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    for epoch in range(4):  # one fit per epoch: 20 steps in all
      model.fit(x, y, batch_size=8, epochs=epoch + 1, initial_epoch=epoch, verbose=0,
                callbacks=[ksf.UpdatePruningStep()])
  said = _schedule_warnings(record)
  assert len(said) == 1, said
  reach = _polynomial(0.0, 0.9, 0, 20, 3, 4)  # the call's last pruning step is 4
  for part in ("5 training steps", "begin_step=0", "end_step=20", "frequency=2",
               f"{reach:.4g}", "0.9 only at step 20"):
    assert part in said[0], (part, said[0])
  # Warned, not stopped: the four calls together reach the schedule's end.
  assert ksf.sparsity_report(model)["overall"] == pytest.approx(0.9, abs=0.02)


def test_tf_keras_resumed_fit_counts_only_its_own_epochs():
  model = _pruned(tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=12, frequency=4))
  x, y = _data()
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    model.fit(x, y, batch_size=8, epochs=4, initial_epoch=2, verbose=0,
              callbacks=[ksf.UpdatePruningStep()])  # 2 epochs: steps 1 to 10
  said = _schedule_warnings(record)
  assert len(said) == 1 and "10 training steps (1 to 10)" in said[0], said
  assert "at most 0 sparse" in said[0]
  assert ksf.sparsity_report(model)["overall"] == 0.0


@pytest.mark.parametrize("schedule", [
    lambda: tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1),
    lambda: tfmot.sparsity.keras.PolynomialDecay(0.0, 0.6, 0, 4, frequency=2),
    lambda: schedules.GeometricSparsity(0.5, 1, end_step=3),
])
def test_tf_keras_schedule_reachable_within_the_call_does_not_warn(schedule):
  model = _pruned(schedule())
  x, y = _data()
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
  assert _schedule_warnings(record) == []


def test_tf_keras_double_wrapping_a_model_is_refused_and_keeps_the_first():
  first = _pruned(tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1), "magnitude")
  with pytest.raises(ValueError, match=r"already wrapped") as error:
    ksf.prune_sign_flip(first, criterion="sign_flip",
                        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.8, 0))
  message = str(error.value)
  assert "prune_sign_flip_d1" in message and "prune_sign_flip_d2" in message
  assert "strip_pruning" in message
  assert all(w.criterion == criteria.Magnitude() for w in ksf.collect_wrappers(first))
  # The fix it names works: strip, then wrap anew.
  again = ksf.prune_sign_flip(ksf.strip_pruning(first), criterion="sign_flip")
  assert all(w.criterion == criteria.SignFlip() for w in ksf.collect_wrappers(again))


def test_tf_keras_double_wrapping_a_layer_or_list_is_refused():
  wrapper = ksf.prune_sign_flip(keras.layers.Dense(3, name="solo"))
  with pytest.raises(ValueError, match=r"layer already wrapped.*prune_sign_flip_solo.*\.layer"):
    ksf.prune_sign_flip(wrapper, criterion="random")
  with pytest.raises(ValueError, match=r"list of layers already wrapped.*prune_sign_flip_solo"):
    ksf.prune_sign_flip([keras.layers.Dense(2), wrapper])
  # TF-MOT's own wrapper counts as wrapped too.
  tfmot_model = tfmot.sparsity.keras.prune_low_magnitude(_base())
  with pytest.raises(ValueError, match=r"already wrapped"):
    ksf.prune_sign_flip(tfmot_model)


def test_tf_keras_schedule_that_never_prunes_is_refused():
  base = _base()
  never = tfmot.sparsity.keras.ConstantSparsity(0.5, 0, end_step=5, frequency=10)
  with pytest.raises(ValueError, match=r"never prunes.*none falls in \[1, 5\]"):
    ksf.prune_sign_flip(base, pruning_schedule=never)
  assert all(l.kernel.constraint is None for l in base.layers)
  # Step 0 never trains, but a begin_step >= 1 or frequency <= end_step prunes.
  ksf.prune_sign_flip(_base(), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
      0.5, 1, end_step=5, frequency=10))
  ksf.prune_sign_flip(_base(), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
      0.5, 0, end_step=5, frequency=5))


@pytest.mark.parametrize("power", [float("nan"), float("inf"), -2.0, 0, True, "2"])
def test_hybrid_power_must_be_finite_and_positive(power):
  with pytest.raises(ValueError, match=r"`power`.*finite number > 0.*Received: power="):
    criteria.Hybrid(power=power)


def test_hybrid_power_accepts_numpy_scalars_as_floats():
  assert criteria.Hybrid(np.float32(1.5)).get_config() == {"power": 1.5}
  assert criteria.Hybrid(3).get_config() == {"power": 3.0}


@pytest.mark.parametrize("seed", [1.5, 2.0, -1, True, "3", None, float("nan")])
def test_random_seed_must_be_a_nonnegative_integer(seed):
  with pytest.raises(ValueError, match=r"`seed`.*integer >= 0.*Received: seed="):
    criteria.Random(seed)


def test_random_seed_accepts_numpy_integers_as_python_ints():
  r = criteria.Random(np.int64(7))
  assert r.seed == 7 and type(r.seed) is int and r == criteria.Random(7)


@pytest.mark.parametrize("make,name", [
    (lambda: schedules.GeometricSparsity(float("nan"), 2), "fraction"),
    (lambda: schedules.GeometricSparsity(0.5, 0), "frequency"),
    (lambda: schedules.GeometricSparsity(0.5, True), "frequency"),
    (lambda: schedules.GeometricSparsity(0.5, 2.0), "frequency"),
    (lambda: schedules.GeometricSparsity(0.5, 2, begin_step=1.5), "begin_step"),
    (lambda: schedules.GeometricSparsity(0.5, 2, begin_step=4, end_step=3), "end_step"),
    (lambda: schedules.GeometricSparsity(0.5, 2, max_sparsity=float("nan")), "max_sparsity"),
    (lambda: schedules.ScaledSparsity(tfmot.sparsity.keras.ConstantSparsity(0.5, 0),
                                      float("nan")), "factor"),
    (lambda: schedules.ScaledSparsity(tfmot.sparsity.keras.ConstantSparsity(0.5, 0),
                                      float("inf")), "factor"),
])
def test_tf_keras_schedule_arguments_are_checked(make, name):
  with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
    make()


@pytest.mark.parametrize("schedule,name", [
    (lambda: tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=True), "frequency"),
    (lambda: tfmot.sparsity.keras.ConstantSparsity(0.5, 2.5), "begin_step"),
    (lambda: tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 10, power=float("nan")),
     "power"),
    (lambda: tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 10, power=-1), "power"),
])
def test_tfmot_schedules_are_checked_where_tfmot_does_not(schedule, name):
  with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
    ksf.prune_sign_flip(_base(), pruning_schedule=schedule())


def test_tfmot_schedule_nan_sparsity_is_refused_by_tfmot_itself():
  with pytest.raises(ValueError, match="target_sparsity"):
    tfmot.sparsity.keras.ConstantSparsity(float("nan"), 0)


@pytest.mark.parametrize("kwargs,name", [
    (dict(scope=None), "scope"), (dict(scope=["layer"]), "scope"), (dict(scope=1), "scope"),
    (dict(min_flips="2"), "min_flips"), (dict(min_flips=True), "min_flips"),
    (dict(min_flips=float("nan")), "min_flips"), (dict(min_flips=2.0), "min_flips"),
    (dict(keep_reference="no"), "keep_reference"), (dict(keep_reference=0), "keep_reference"),
])
def test_prune_sign_flip_argument_types(kwargs, name):
  base = _base()
  with pytest.raises(ValueError,
                     match=rf"Received an invalid value for `{name}`.*Received: {name}="):
    ksf.prune_sign_flip(base, **kwargs)
  assert all(l.kernel.constraint is None for l in base.layers)


def test_layer_keyword_arguments_with_a_model_are_refused_not_ignored():
  with pytest.raises(ValueError, match=r"\['name'\].*single layer"):
    ksf.prune_sign_flip(_base(), name="ignored")
  assert ksf.prune_sign_flip(keras.layers.Dense(2), name="kept").name == "kept"


def test_shared_number_check_rejects_nan_inf_and_bools():
  from keras_signflip import arguments  # pylint: disable=g-import-not-at-top
  for value in (float("nan"), float("inf"), -float("inf"), True, np.bool_(False), "1", None):
    with pytest.raises(ValueError, match=r"Received: x="):
      arguments.check_number("x", value)
  assert arguments.check_number("x", np.float32(0.25), 0, 1) == 0.25
  with pytest.raises(ValueError, match=r"expected a number in \(0, 1\)"):
    arguments.check_number("x", 1, 0, 1, low_inclusive=False, high_inclusive=False)
  with pytest.raises(ValueError, match="strength"):
    arguments.check_nonnegative("strength", float("nan"))


# Keras 3 on JAX, in one subprocess -------------------------------------------

_KERAS3_SCRIPT = r'''
import json, math, warnings
import numpy as np
import keras
import keras_signflip as ksf
from keras_signflip import criteria
from keras_signflip.keras3 import schedules
from keras_signflip.schedule_checks import ScheduleWarning

out = {"backend": keras.backend.backend()}
rng = np.random.RandomState(0)
x, y = rng.randn(40, 4).astype("float32"), rng.randn(40, 2).astype("float32")

def base(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="d1"),
                           keras.layers.Dense(2, name="d2")])

def pruned(schedule, criterion="magnitude"):
  m = ksf.prune_sign_flip(base(), pruning_schedule=schedule, criterion=criterion)
  m.compile(keras.optimizers.SGD(0.1), "mse")
  return m

def values(m):
  return [np.array(keras.ops.convert_to_numpy(v)) for v in m.weights]

def same(a, b):
  return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))

def error(fn):
  try:
    fn()
  except ValueError as e:
    return str(e)
  return None

def said(fn):
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    fn()
  return [str(w.message) for w in record if issubclass(w.category, ScheduleWarning)]

# Fit without the callback: refused before any step, nothing changed.
m = pruned(schedules.ConstantSparsity(0.9, 0, frequency=1))
before = values(m)
e = error(lambda: m.fit(x, y, batch_size=8, epochs=1, verbose=0))
after = values(m)
m.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[ksf.UpdatePruningStep()])
out["no_callback"] = {"error": e, "unchanged": same(before, after),
                      "sparsity_with_callback": ksf.sparsity_report(m)["overall"]}

# A model assembled from a wrapped layer: its first training call refuses.
class Net(keras.Model):
  def __init__(self):
    super().__init__()
    self.d = ksf.prune_sign_flip(keras.layers.Dense(2, name="inner"),
                                 pruning_schedule=schedules.ConstantSparsity(0.5, 0, frequency=1))
  def call(self, inputs, training=None):
    return self.d(inputs, training=training)
net = Net()
net(x[:1])
net.compile(keras.optimizers.SGD(0.1), "mse")
before = values(net)
e = error(lambda: net.train_on_batch(x[:8], y[:8]))
out["assembled"] = {"error": e, "unchanged": same(before, values(net))}

# One fit per epoch against a schedule spanning four: one warning.
m = pruned(schedules.PolynomialDecay(0.0, 0.9, 0, 20, frequency=2))
def per_epoch():
  for epoch in range(4):
    m.fit(x, y, batch_size=8, epochs=epoch + 1, initial_epoch=epoch, verbose=0,
          callbacks=[ksf.UpdatePruningStep()])
out["beyond"] = {"said": said(per_epoch), "sparsity": ksf.sparsity_report(m)["overall"]}

m = pruned(schedules.PolynomialDecay(0.0, 0.6, 0, 4, frequency=2))
out["within"] = {"said": said(lambda: m.fit(x, y, batch_size=8, epochs=1, verbose=0,
                                            callbacks=[ksf.UpdatePruningStep()]))}

# Wrapping twice: refused, the first wrappers kept.
first = pruned(schedules.ConstantSparsity(0.5, 0, frequency=1), "magnitude")
layer = ksf.prune_sign_flip(keras.layers.Dense(3, name="solo"))
out["double"] = {
    "model": error(lambda: ksf.prune_sign_flip(first, criterion="sign_flip")),
    "layer": error(lambda: ksf.prune_sign_flip(layer, criterion="random")),
    "list": error(lambda: ksf.prune_sign_flip([keras.layers.Dense(2), layer])),
    "kept": [type(w.criterion).__name__ for w in ksf.collect_wrappers(first)],
    "restripped": [type(w.criterion).__name__ for w in ksf.collect_wrappers(
        ksf.prune_sign_flip(ksf.strip_pruning(first), criterion="sign_flip"))]}

out["arguments"] = {
    "never": error(lambda: ksf.prune_sign_flip(
        base(), pruning_schedule=schedules.ConstantSparsity(0.5, 0, end_step=5, frequency=10))),
    "nan_sparsity": error(lambda: schedules.ConstantSparsity(float("nan"), 0)),
    "frequency_0": error(lambda: schedules.ConstantSparsity(0.5, 0, frequency=0)),
    "frequency_bool": error(lambda: schedules.GeometricSparsity(0.5, True)),
    "begin_float": error(lambda: schedules.PolynomialDecay(0.0, 0.5, 1.0, 10)),
    "power_nan": error(lambda: schedules.PolynomialDecay(0.0, 0.5, 0, 10, power=float("nan"))),
    "fraction_nan": error(lambda: schedules.GeometricSparsity(float("nan"), 2)),
    "factor_inf": error(lambda: schedules.ScaledSparsity(schedules.ConstantSparsity(0.5, 0),
                                                         float("inf"))),
    "scope": error(lambda: ksf.prune_sign_flip(base(), scope=None)),
    "min_flips": error(lambda: ksf.prune_sign_flip(base(), min_flips=True)),
    "keep_reference": error(lambda: ksf.prune_sign_flip(base(), keep_reference="no")),
    "kwargs": error(lambda: ksf.prune_sign_flip(base(), name="ignored")),
    "hybrid_nan": error(
        lambda: ksf.prune_sign_flip(base(), criterion=criteria.Hybrid(float("nan")))),
}
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def keras3_results():
  for package in ("jax", "keras"):
    if importlib.util.find_spec(package) is None:
      pytest.skip(f"{package} is not installed")
  env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TF_USE_LEGACY_KERAS", None)
  env.pop("KSF_KERAS3_BACKEND_TESTS", None)
  result = subprocess.run([sys.executable, "-c", _KERAS3_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
  assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
  results = json.loads(lines[-1][len("RESULT "):])
  assert results["backend"] == "jax"
  return results


def test_keras3_fit_without_update_pruning_step_raises_before_any_step(keras3_results):
  got = keras3_results["no_callback"]
  assert got["error"] is not None and FIX in got["error"]
  assert "prune_sign_flip_d1" in got["error"] and "unpruned" in got["error"]
  assert got["unchanged"]  # weights, masks and pruning_step as before
  # The same model then trains with the callback and prunes (no harm done).
  assert got["sparsity_with_callback"] == pytest.approx(0.9, abs=0.05)


def test_keras3_model_assembled_from_wrapped_layers_refuses_its_first_training_call(
    keras3_results):
  got = keras3_results["assembled"]
  assert (got["error"] is not None and FIX in got["error"]
          and "prune_sign_flip_inner" in got["error"])
  assert got["unchanged"]


def test_keras3_schedule_beyond_one_fit_warns_once_and_reachable_does_not(keras3_results):
  said = keras3_results["beyond"]["said"]
  assert len(said) == 1, said
  reach = _polynomial(0.0, 0.9, 0, 20, 3, 4)
  for part in ("5 training steps (1 to 5)", "begin_step=0", "end_step=20", "frequency=2",
               f"{reach:.4g}", "0.9 only at step 20"):
    assert part in said[0], (part, said[0])
  assert keras3_results["beyond"]["sparsity"] == pytest.approx(0.9, abs=0.02)
  assert keras3_results["within"]["said"] == []


def test_keras3_double_wrapping_refused_for_model_layer_and_list(keras3_results):
  got = keras3_results["double"]
  assert "prune_sign_flip_d1" in got["model"] and "strip_pruning" in got["model"]
  assert "prune_sign_flip_solo" in got["layer"] and ".layer" in got["layer"]
  assert "prune_sign_flip_solo" in got["list"]
  assert got["kept"] == ["Magnitude", "Magnitude"]
  assert got["restripped"] == ["SignFlip", "SignFlip"]


@pytest.mark.parametrize("case,expected", [
    ("never", r"never prunes.*\[1, 5\]"),
    ("nan_sparsity", r"`target_sparsity`.*Received: target_sparsity=nan"),
    ("frequency_0", r"`frequency`.*integer >= 1.*Received: frequency=0"),
    ("frequency_bool", r"`frequency`.*Received: frequency=True"),
    ("begin_float", r"`begin_step`.*Received: begin_step=1.0"),
    ("power_nan", r"`power`.*finite number > 0.*Received: power=nan"),
    ("fraction_nan", r"`fraction`.*Received: fraction=nan"),
    ("factor_inf", r"`factor`.*Received: factor=inf"),
    ("scope", r"`scope`.*Received: scope=None"),
    ("min_flips", r"`min_flips`.*Received: min_flips=True"),
    ("keep_reference", r"`keep_reference`.*Received: keep_reference='no'"),
    ("kwargs", r"\['name'\].*single layer"),
    ("hybrid_nan", r"`power`.*Received: power=nan"),
])
def test_keras3_bad_arguments_are_refused(keras3_results, case, expected):
  import re  # pylint: disable=g-import-not-at-top
  message = keras3_results["arguments"][case]
  assert message is not None and re.search(expected, message), message
