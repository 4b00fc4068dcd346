"""Session setup: Keras 2, two logical CPU devices (for MirroredStrategy).

tests/ mirrors the package: the core's tests at the top (and the tests that
compare or launch the families), tests/tf_keras, tests/keras3, tests/lottery,
then tests/examples and tests/benchmarks for the binaries.

tests/keras3 runs only in the per-backend processes that tests/test_keras3.py
starts (KSF_KERAS3_BACKEND_TESTS=1, KERAS_BACKEND=...), without this setup.
"""
import gc
import os

import pytest

# A test process holds millions of objects (TensorFlow's, earlier tests' graphs);
# with the default thresholds the collector rescans them often, about 5% of the
# suite's time. Fewer, later collections (still all of them, cycles included).
gc.set_threshold(50_000, 20, 10)

# Two xdist workers on two cores: one compute thread per process (TensorFlow's
# intra-op pool, OpenMP's for oneDNN and PyTorch), inherited by the processes the
# tests start. Larger pools only spin on the other worker's core (less CPU and wall
# time with one thread, measured on tests/examples and tests/lottery).
# (Inter-op stays TensorFlow's default: MirroredStrategy's two devices run at once.)
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The same for XLA's CPU runtime (the JAX processes the tests start, TensorFlow's XLA-fused
# mask updates here), and its LLVM backend unoptimised: the tests' models are tiny and JAX
# compiles every primitive it runs eagerly, so compiling costs far more than running
# (both measured: less CPU time on the Keras 3 models part on JAX). The level changes
# how fast the code runs, not what it computes (no fast-math either way).
os.environ.setdefault("XLA_FLAGS",
                      "--xla_cpu_multi_thread_eigen=false --xla_backend_optimization_level=0")

if os.environ.get("KSF_KERAS3_BACKEND_TESTS"):
  collect_ignore = []
else:
  collect_ignore = ["keras3"]
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

  import tensorflow as tf  # noqa: E402

  _cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      _cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(scope="session")
def jax_cache_env(tmp_path_factory):
  """Environment for the JAX processes a test starts: one compilation cache per
  pytest worker, so that a model rebuilt, reloaded or resumed with the same
  structure is compiled once (the executables are those XLA would compile)."""
  return {"JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_compilation_cache")),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


# The tests that each start processes for half a minute or more. On two xdist workers
# (--dist worksteal) a long test that starts last leaves the other worker idle until it
# ends; started first, they overlap with the short tests the other worker steals.
RUN_FIRST = ("tests/test_keras3.py::test_keras3_path_on_backend", "tests/benchmarks/",
             "tests/examples/test_faults_binaries.py::test_keras3",
             "tests/examples/test_faults_binaries.py::test_kill_9",
             "tests/examples/test_train_binary.py::test_multi_worker",
             "tests/test_keras3.py::test_train_binary_keras3")


def pytest_collection_modifyitems(items):
  """Runs RUN_FIRST's tests first (a stable sort: the same order on every worker)."""
  items.sort(key=lambda item: not item.nodeid.startswith(RUN_FIRST))
