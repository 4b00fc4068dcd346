"""The sparse SavedModel: densified once, when it loads, into variables that are not saved."""
import os

import numpy as np
import pytest

import keras_signflip as ksf
from keras_signflip.tf_keras import export as export_lib
from keras_signflip.tf_keras import sparse_products
from keras_signflip.tf_keras._framework import keras, tf, tfmot


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


def _saved(path):
  """{name: shape} of the variables in a SavedModel's checkpoint."""
  return dict(tf.train.list_variables(os.path.join(path, "variables", "variables")))


def test_export_serves_like_the_stripped_model_and_saves_no_dense_copy(tmp_path):
  model, x = _pruned_conv_net()
  stripped = ksf.strip_pruning(model)
  want = stripped(x, training=False).numpy()
  path = str(tmp_path / "export")
  ksf.export_saved_model(model, path, verbose=False)
  packed = [w for w in stripped.weights if len(w.shape) >= 2 and np.mean(w.numpy() == 0) >= .5]
  saved = _saved(path)
  assert packed and all(list(w.shape) not in saved.values() for w in packed)
  caches = [shape for name, shape in saved.items() if "cache" in name]
  assert len(caches) == len(packed) and all(shape == [0] for shape in caches)  # saved empty
  serve = tf.saved_model.load(path).signatures["serving_default"]
  assert not {"If", "StatelessIf"} & _ops(serve)  # no first-call check: filled at load
  for _ in range(2):
    got = list(serve(tf.constant(x)).values())[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_exports_loaded_together_keep_their_own_weights(tmp_path):
  model, x = _pruned_conv_net()
  stripped = ksf.strip_pruning(model)
  ksf.export_saved_model(stripped, str(tmp_path / "a"), verbose=False)
  want_a = stripped(x, training=False).numpy()
  kernel = stripped.get_layer("d").kernel
  kernel.assign(kernel * 2)
  ksf.export_saved_model(stripped, str(tmp_path / "b"), verbose=False)
  want_b = stripped(x, training=False).numpy()
  assert np.max(np.abs(want_a - want_b)) > 1e-3
  serve_a = tf.saved_model.load(str(tmp_path / "a")).signatures["serving_default"]
  serve_b = tf.saved_model.load(str(tmp_path / "b")).signatures["serving_default"]
  np.testing.assert_allclose(list(serve_a(tf.constant(x)).values())[0], want_a, atol=1e-5)
  np.testing.assert_allclose(list(serve_b(tf.constant(x)).values())[0], want_b, atol=1e-5)


def test_a_tf1_session_loader_runs_the_densifying_init_op(tmp_path):
  """What TF Serving does: load the MetaGraph into a session, run its init op."""
  model, x = _pruned_conv_net()
  want = ksf.strip_pruning(model)(x, training=False).numpy()
  path = str(tmp_path / "export")
  ksf.export_saved_model(model, path, verbose=False)
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    signature = meta.signature_def["serving_default"]
    (input_name,), (output_name,) = signature.inputs, signature.outputs
    got = session.run(signature.outputs[output_name].name,
                      {signature.inputs[input_name].name: x})
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("values_dtype,tolerance", [("float16", 2e-3), ("int8", 3e-2)])
def test_quantised_values_serve_within_their_bound_and_are_smaller(tmp_path, values_dtype,
                                                                     tolerance):
  model, x = _pruned_conv_net()
  want = ksf.strip_pruning(model)(x, training=False).numpy()
  full = ksf.export_saved_model(model, str(tmp_path / "f32"), verbose=False)
  small = ksf.export_saved_model(model, str(tmp_path / values_dtype), verbose=False,
                                 values_dtype=values_dtype)
  assert small["gzip_bytes"] < full["gzip_bytes"]
  serve = tf.saved_model.load(str(tmp_path / values_dtype)).signatures["serving_default"]
  got = list(serve(tf.constant(x)).values())[0].numpy()
  assert np.max(np.abs(got - want)) <= tolerance * np.max(np.abs(want))


def test_quantised_int8_weights_are_per_channel_roundings():
  from keras_signflip.tf_keras import export as export_lib  # pylint: disable=g-import-not-at-top
  w = np.random.RandomState(0).randn(6, 4).astype(np.float32) * [1, 10, 0.1, 0]
  w[np.abs(w) < 0.3] = 0
  packed = export_lib._Packed(w, "w", values_dtype="int8")  # pylint: disable=protected-access
  scales = np.where(np.abs(w).max(0) > 0, np.abs(w).max(0) / 127, 1)
  np.testing.assert_allclose(packed.densify().numpy(), np.round(w / scales) * scales, rtol=1e-6)


@pytest.mark.parametrize("density,encoding", [(0.5, "bits"), (0.1, "gaps"), (0.002, "gaps"),
                                              (0.0, "gaps")])
def test_packed_positions_round_trip_in_the_smaller_encoding(density, encoding):
  rng = np.random.RandomState(0)
  w = (rng.randn(64, 50) * (rng.rand(64, 50) < density)).astype(np.float32)
  if density:
    w.flat[[0, 1, 2000, 3199]] = [1.5, -2.0, 0.25, 3.0]  # edges and a run of > 255 zeros
  packed = export_lib._Packed(w, "w")  # pylint: disable=protected-access
  assert getattr(packed, encoding) is not None
  assert getattr(packed, "gaps" if encoding == "bits" else "bits") is None
  np.testing.assert_array_equal(packed.densify().numpy(), w)


def test_bad_export_options_write_nothing(tmp_path):
  model, _ = _pruned_conv_net()
  for kwargs in ({"values_dtype": "int4"}, {"values_dtype": "int8", "sparse": False}):
    with pytest.raises(ValueError, match="values_dtype"):
      ksf.export_saved_model(model, str(tmp_path / "x"), verbose=False, **kwargs)
  assert not os.listdir(tmp_path)


def _pruned_pointwise_net():
  """Dense layers, a 1x1 convolution, a residual add and batch norm, pruned
  per layer to 90% so that every kernel qualifies for sparse products."""
  keras.utils.set_random_seed(0)
  inputs = keras.Input((6, 6, 3))
  a = keras.layers.Conv2D(8, 1, activation="relu", name="pw")(inputs)
  b = keras.layers.Conv2D(8, 3, padding="same", name="c3")(a)
  x = keras.layers.BatchNormalization(name="bn")(keras.layers.Add()([a, b]))
  x = keras.layers.Dense(32, activation="relu", name="d")(keras.layers.Flatten()(x))
  base = keras.Model(inputs, keras.layers.Dense(3, name="out")(x))
  model = ksf.prune_sign_flip(base, criterion="magnitude",
                              pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                                  0.9, 0, frequency=1))
  model.compile("sgd", "mse")
  x = np.random.RandomState(0).randn(32, 6, 6, 3).astype("float32")
  model.fit(x, np.zeros((32, 3), "float32"), batch_size=8, epochs=1, verbose=0,
            callbacks=[ksf.UpdatePruningStep()])
  return model, x


@pytest.fixture(scope="module")
def pointwise_net():
  return _pruned_pointwise_net()[0]


def _ops(signature):
  return {n.op for f in signature.graph.as_graph_def().library.function for n in f.node_def}


# pw sees 36 rows per image: one image (36 rows) is sparse, three (108) dense.
@pytest.mark.parametrize("kernels,plans,ops", [
    ("sparse", {"pw": (("coo", None),), "d": (("coo", None),), "out": (("coo", None),)},
     {"SparseTensorDenseMatMul"}),
    ({"d": 4, "pw": 100, "out": None},
     {"d": (("coo", 4),), "pw": (("coo", 100),), "out": (("coo", None),)},
     {"SparseTensorDenseMatMul"}),
    ({"d": [("ell", 2), ("coo", 8)], "pw": [("ell", 40)], "out": [("ell", None)]},
     {"d": (("ell", 2), ("coo", 8)), "pw": (("ell", 40),), "out": (("ell", None),)},
     {"SparseTensorDenseMatMul", "GatherV2"}),
])
def test_sparse_kernels_serve_like_the_stripped_model(tmp_path, kernels, plans, ops):
  model, x = _pruned_pointwise_net()
  want = ksf.strip_pruning(model)(x, training=False).numpy()
  path = str(tmp_path / "export")
  report = ksf.export_saved_model(model, path, verbose=False, kernels=kernels)
  assert report["kernels"] == plans
  caches = {n: shape for n, shape in _saved(path).items() if "sparse_" in n or "ell_" in n}
  assert caches and all(0 in shape for shape in caches.values())  # saved empty
  serve = tf.saved_model.load(path).signatures["serving_default"]
  assert ops <= _ops(serve)
  for n in (1, 3, 32, 1):  # every branch of the row-count choice
    got = list(serve(tf.constant(x[:n])).values())[0].numpy()
    np.testing.assert_allclose(got, want[:n], rtol=1e-5, atol=1e-5)


def test_ell_layout_against_numpy():
  rng = np.random.RandomState(0)
  w = rng.randn(7, 5).astype(np.float32) * (rng.rand(7, 5) < 0.4)
  w[:, 3] = 0  # an empty column
  keep = w != 0
  width = sparse_products.ell_width(keep)
  assert width == keep.sum(axis=0).max()
  rows, values = (t.numpy() for t in sparse_products.ell_from_keep(keep, w[keep], width))
  for j in range(5):  # column j: its non-zero rows in order, then zero padding
    nz = np.nonzero(w[:, j])[0]
    np.testing.assert_array_equal(rows[j, :len(nz)], nz)
    np.testing.assert_array_equal(values[j, :len(nz)], w[nz, j])
    assert not values[j, len(nz):].any()
  x = rng.randn(3, 7).astype(np.float32)
  np.testing.assert_allclose(sparse_products.ell_matmul(x, rows, values).numpy(), x @ w,
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_in,density,dtype", [(100, 0.7, "int16"), (40000, 0.002, "int32")])
def test_ell_product_in_slot_chunks_matches_numpy(n_in, density, dtype):
  """K above the 32 slots summed per gather (several chunks, the last partial);
  int16 row indices where the input fits them, int32 beyond."""
  rng = np.random.RandomState(1)
  w = rng.randn(n_in, 6).astype(np.float32) * (rng.rand(n_in, 6) < density)
  keep = w != 0
  width = sparse_products.ell_width(keep)
  assert width > sparse_products.ELL_SLOTS and width % sparse_products.ELL_SLOTS
  rows, values = sparse_products.ell_from_keep(keep, w[keep], width)
  assert rows.dtype.name == dtype
  x = rng.randn(5, n_in).astype(np.float32)
  np.testing.assert_allclose(sparse_products.ell_matmul(x, rows, values).numpy(), x @ w,
                             rtol=1e-4, atol=1e-4)


def test_int8_sparse_kernels_apply_the_channel_scales(tmp_path):
  model, x = _pruned_pointwise_net()
  ksf.export_saved_model(model, str(tmp_path / "dense"), verbose=False, values_dtype="int8")
  ksf.export_saved_model(model, str(tmp_path / "sparse"), verbose=False, values_dtype="int8",
                         kernels="sparse")
  outs = [list(tf.saved_model.load(str(tmp_path / k)).signatures["serving_default"](
      tf.constant(x)).values())[0].numpy() for k in ("dense", "sparse")]
  np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)


def test_auto_kernels_pick_measured_layers_and_serve_like_the_stripped_model(tmp_path):
  model, x = _pruned_pointwise_net()
  want = ksf.strip_pruning(model)(x, training=False).numpy()
  report = ksf.export_saved_model(model, str(tmp_path / "auto"), verbose=False, kernels="auto")
  assert set(report["kernels"]) <= {"pw", "d", "out"}
  for plan in report["kernels"].values():
    assert plan == sparse_products.check_plan(plan)
    assert all(rows in sparse_products.AUTO_ROWS for _, rows in plan)
  serve = tf.saved_model.load(str(tmp_path / "auto")).signatures["serving_default"]
  got = list(serve(tf.constant(x)).values())[0].numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_plan_takes_the_fastest_format_until_dense_is_not_clearly_beaten():
  timings = [(1, {"ell": 0.3, "coo": 0.8}, 1.0), (2, {"ell": 0.4, "coo": 0.5}, 1.0),
             (4, {"ell": 0.7, "coo": 0.6}, 1.0), (8, {"ell": 0.95, "coo": 0.85}, 1.0),
             (16, {"ell": 0.95, "coo": 0.92}, 1.0), (32, {"ell": 0.1, "coo": 0.1}, 1.0)]
  # ELL for 1-2 rows, COO for 4-8; at 16 neither is <= 0.9x dense; 32 is not reached
  assert sparse_products.choose_plan(timings) == (("ell", 2), ("coo", 8))
  assert sparse_products.choose_plan([(1, {"ell": 1.0, "coo": 1.0}, 1.0)]) == ()
  assert sparse_products.choose_plan([]) == ()
  # 2x faster, but 30 us saved is less than a served cond and XLA launch cost
  assert sparse_products.choose_plan([(1, {"ell": 30e-6, "coo": 50e-6}, 60e-6)]) == ()


def test_only_pointwise_products_qualify_for_sparse_kernels():
  layers = keras.layers
  assert export_lib.sparse_kernel_layer(layers.Dense(3))
  assert export_lib.sparse_kernel_layer(layers.Conv2D(3, 1))
  for layer in (layers.Conv2D(3, 3), layers.Conv2D(3, 1, strides=2),
                layers.Conv2D(3, 1, dilation_rate=2), layers.Conv2DTranspose(3, 1),
                layers.DepthwiseConv2D(1), layers.Conv2D(3, 1, data_format="channels_first")):
    assert not export_lib.sparse_kernel_layer(layer), layer


@pytest.mark.parametrize("kwargs,match", [
    ({"kernels": "fast"}, "kernels"),
    ({"kernels": "sparse", "sparse": False}, "sparse=True"),
    ({"kernels": {"c3": 4}}, "c3"),
    ({"kernels": {"d": -1}}, r"kernels\['d'\].*>= 0"),
    ({"kernels": {"d": [("csr", 4)]}}, "unknown format 'csr'"),
    ({"kernels": {"d": [("ell", 8), ("coo", 4)]}}, "ascending"),
    ({"kernels": {"d": [("ell", None), ("coo", 4)]}}, "None only last"),
    ({"kernels": {"d": "fast"}}, r"kernels\['d'\]"),
])
def test_bad_kernel_options_write_nothing(tmp_path, kwargs, match, pointwise_net):
  model = pointwise_net  # one model for every case: a refused export changes nothing
  before = [w.numpy() for w in model.weights]
  with pytest.raises(ValueError, match=match):
    ksf.export_saved_model(model, str(tmp_path / "x"), verbose=False, **kwargs)
  assert not os.listdir(tmp_path)
  for w, b in zip(model.weights, before):
    np.testing.assert_array_equal(w.numpy(), b, err_msg=w.name)
