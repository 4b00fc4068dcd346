"""benchmarks/mnist_pkl.py: IDX files that keras_signflip.data reads back, and
no unpickling of a file other than the checked one."""
import gzip
import io
import pickle

import numpy as np
import pytest

from benchmarks import mnist_pkl
from keras_signflip import data as data_lib


def _fake_pickle(rng):
  """The classic layout: three (float32 p/256 images [n, 784], int labels) pairs."""
  def part(n):
    pixels = rng.integers(0, 256, (n, 784))
    return (pixels / 256).astype(np.float32), rng.integers(0, 10, n)
  buf = io.BytesIO()
  with gzip.GzipFile(fileobj=buf, mode="wb") as f:
    pickle.dump((part(5), part(3), part(4)), f)
  return buf.getvalue()


def test_idx_files_read_back_as_the_pickled_pixels(tmp_path):
  rng = np.random.default_rng(0)
  raw = _fake_pickle(rng)
  (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(gzip.open(io.BytesIO(raw)))
  files = mnist_pkl.idx_files(mnist_pkl.splits(raw))
  with pytest.raises(ValueError, match="not MNIST's"):  # a fake is not MNIST
    mnist_pkl.check_md5(files)
  mnist_pkl.write(files, str(tmp_path))
  data = data_lib.load("mnist", source="idx", idx_dir=str(tmp_path), log=lambda _: None)
  train = list(data.train.as_numpy_iterator())
  assert data.train_size == 8 and data.input_shape == (28, 28, 1)
  want = np.concatenate([x_tr, x_va]).reshape(-1, 28, 28, 1) * 256 / 255  # bytes p, read as p/255
  np.testing.assert_allclose(np.stack([x for x, _ in train]), want, rtol=1e-6)
  np.testing.assert_array_equal([y for _, y in train], np.concatenate([y_tr, y_va]))
  test = list(data.test.as_numpy_iterator())
  np.testing.assert_array_equal([y for _, y in test], y_te)
  assert not list(tmp_path.glob("*.tmp"))


def test_a_pickle_with_another_hash_is_refused_before_unpickling(tmp_path):
  path = tmp_path / "mnist.pkl.gz"
  path.write_bytes(_fake_pickle(np.random.default_rng(1)))
  with pytest.raises(ValueError, match="refusing to unpickle"):
    mnist_pkl.read_pickle_bytes(pkl=str(path))


def test_pixels_that_are_not_bytes_over_256_are_refused():
  buf = io.BytesIO()
  with gzip.GzipFile(fileobj=buf, mode="wb") as f:
    bad = (np.full((1, 784), 0.3, np.float32), np.zeros(1, int))
    pickle.dump((bad, bad, bad), f)
  with pytest.raises(ValueError, match="not p/256"):
    mnist_pkl.splits(buf.getvalue())
