"""Session setup: Keras 2, two logical CPU devices (for MirroredStrategy).

tests/keras3 runs only in the per-backend processes that tests/test_keras3.py
starts (KSF_KERAS3_BACKEND_TESTS=1, KERAS_BACKEND=...), without this setup.
"""
import os

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
