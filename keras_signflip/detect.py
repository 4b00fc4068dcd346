"""Which Keras an object belongs to, without importing either one.

The tf_keras path (TF-MOT) and the Keras 3 path share every public entry
point; they are told apart by the module that defines the object's class:
`tf_keras.*` (Keras 2) or `keras.*` (Keras 3, also what `tf.keras` is on
TensorFlow >= 2.16 unless TF_USE_LEGACY_KERAS=1).
"""

__all__ = ["is_keras3_object"]


def is_keras3_object(obj):
  """True for Keras 3 layers, models and optimizers (a list: if any element is one)."""
  if isinstance(obj, (list, tuple)):
    return any(is_keras3_object(o) for o in obj)
  for cls in type(obj).__mro__:
    root = (cls.__module__ or "").split(".")[0]
    if root == "tf_keras":
      return False
    if root == "keras" and cls.__name__ in ("Layer", "Operation", "Model", "BaseOptimizer"):
      return True
  return False
