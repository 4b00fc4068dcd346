"""Small models, data and NumPy references shared by the tests."""
import numpy as np

from keras_signflip.tf_keras._framework import keras, tfmot


def data(n=128, features=8, classes=3, seed=0):
  rng = np.random.RandomState(seed)
  return rng.randn(n, features).astype("float32"), rng.randint(0, classes, n)


def mlp(seed=3, features=8, hidden=16, classes=3):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.layers.Dense(hidden, activation="tanh", input_shape=(features,)),
      keras.layers.Dense(classes)])


def compile_sgd(model, lr=0.5, momentum=0.0):
  model.compile(keras.optimizers.SGD(lr, momentum=momentum),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def never():
  """A schedule that never prunes within a short test (flip counting only)."""
  return tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=10**6)


def reference_topk(scores, k, secondary=None):
  """NumPy reference: keep the k highest scores; ties by the higher secondary
  key (if given), then the lower position.

  Subnormal values count as 0, as in TensorFlow's CPU kernels (which flush
  denormals to zero).
  """
  def flat_of(arrays):
    flat = np.concatenate([np.ravel(s) for s in arrays]).astype(np.float32)
    return np.where(np.abs(flat) < np.finfo(np.float32).tiny, np.float32(0), flat)
  flat = flat_of(scores)
  second = np.zeros_like(flat) if secondary is None else flat_of(secondary)
  keep = np.zeros(flat.size, bool)
  keep[np.lexsort((np.arange(flat.size), -second, -flat))[:k]] = True
  out, i = [], 0
  for s in scores:
    out.append(keep[i:i + np.size(s)].reshape(np.shape(s)))
    i += np.size(s)
  return out


def reference_kept(n, sparsity):
  """TF-MOT's kept count, computed in float32 with round-half-to-even."""
  return int(max(np.round(np.float32(n) * (np.float32(1) - np.float32(sparsity))), 1))
