"""The sparse SavedModel: densified once, at the first call, into a cache saved empty."""
import os

import numpy as np

import keras_signflip as ksf
from keras_signflip.tf_keras._compat import keras, tf, tfmot


def _pruned_conv_net():
  keras.utils.set_random_seed(0)
  base = keras.Sequential([
      keras.layers.Conv2D(8, 3, input_shape=(8, 8, 1), name="c"),
      keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(),
      keras.layers.Flatten(), keras.layers.Dense(16, activation="relu", name="d"),
      keras.layers.Dense(3, name="out")])
  model = ksf.prune_sign_flip(base, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
      0.9, 0, frequency=1),
                              criterion="magnitude", scope="global")
  model.compile("sgd", "mse")
  x = np.random.RandomState(0).randn(32, 8, 8, 1).astype("float32")
  model.fit(x, np.zeros((32, 3), "float32"), batch_size=8, epochs=1, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  assert ksf.sparsity_report(model)["overall"] > 0.89
  return model, x


def test_export_serves_like_the_stripped_model_and_saves_no_dense_copy(tmp_path):
  model, x = _pruned_conv_net()
  want = ksf.strip_pruning(model)(x, training=False).numpy()
  path = str(tmp_path / "export")
  ksf.export_saved_model(model, path, verbose=False)
  saved = dict(tf.train.list_variables(os.path.join(path, "variables", "variables")))
  caches = [name for name in saved if "cache" in name and "OPTIMIZER" not in name]
  assert caches and all(saved[name] == [0] for name in caches)  # saved empty
  serve = tf.saved_model.load(path).signatures["serving_default"]
  for _ in range(3):  # the first call fills the cache, later ones read it
    got = list(serve(tf.constant(x)).values())[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
