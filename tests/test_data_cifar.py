"""CIFAR-10 from its python batches (keras_signflip.data): values, labels, FlipOut's
normalisation and augmentation, checked against NumPy statements of the format
(3072 bytes a row: 1024 red, 1024 green, 1024 blue) and of torchvision's
RandomCrop(32, padding=4) + RandomHorizontalFlip."""
import os
import pickle

import numpy as np
import pytest

from keras_signflip import data as data_lib

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)  # FlipOut's utils/data_loaders.py
STD = np.array([0.2023, 0.1994, 0.2010], np.float32)
PER_BATCH, TEST = 4, 6


def write_batches(directory, seed=0):
  """Synthetic CIFAR-10 python batches; returns {split: (rows uint8 [n, 3072], labels)}."""
  rng = np.random.default_rng(seed)
  os.makedirs(directory, exist_ok=True)
  written = {"train": ([], []), "test": ([], [])}
  for name, n in [(f"data_batch_{i}", PER_BATCH) for i in range(1, 6)] + [("test_batch", TEST)]:
    rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    with open(os.path.join(directory, name), "wb") as f:
      pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": rows}, f, protocol=2)
    split = "test" if name == "test_batch" else "train"
    written[split][0].append(rows)
    written[split][1].extend(labels)
  return {k: (np.concatenate(rows), np.array(labels)) for k, (rows, labels) in written.items()}


def normalised(rows):
  """NumPy: rows -> [n, 32, 32, 3] images in [0, 1], normalised per channel."""
  n = len(rows)
  images = np.stack([rows[:, c * 1024:(c + 1) * 1024].reshape(n, 32, 32) for c in range(3)], -1)
  return (images / 255.0 - MEAN) / STD


def _arrays(dataset):
  """(images, labels) of an unbatched dataset."""
  images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
  return np.stack(images), np.array(labels)


def _batch(dataset):
  """(images, labels) of a pipeline's first batch."""
  x, y = next(iter(dataset))
  return x.numpy(), y.numpy()


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py")
  written = write_batches(directory)
  # Found in --data_dir's cifar-10-batches-py/, as the tarball extracts.
  return data_lib.load("cifar10", data_dir=os.path.dirname(directory), log=lambda _: None), written


def test_batches_are_read_in_order_and_normalised(cifar):
  data, written = cifar
  assert data.input_shape == (32, 32, 3) and data.num_classes == 10
  assert data.train_size == 5 * PER_BATCH and "python batches" in data.source
  for split, dataset in (("train", data.train), ("test", data.test)):
    images, labels = _arrays(dataset)
    np.testing.assert_array_equal(labels, written[split][1])
    np.testing.assert_allclose(images, normalised(written[split][0]), atol=1e-5)


def _candidates(image):
  """Every image RandomCrop(32, padding=4) + RandomHorizontalFlip can give: 81 windows of
  the image padded with black (0 before normalisation), each flipped or not."""
  black = -MEAN / STD
  padded = np.tile(black, (40, 40, 1))
  padded[4:36, 4:36] = image
  windows = [padded[i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
  return np.stack(windows + [w[:, ::-1] for w in windows])


def test_augmentation_crops_and_flips_training_batches_only(cifar):
  data, written = cifar
  plain = normalised(written["train"][0])
  shuffled, order = _batch(data_lib.pipeline(data.train, 32, shuffle_seed=5))
  (a, labels), (b, _), (c, _) = [
      _batch(data_lib.pipeline(data.train, 32, shuffle_seed=seed, augment=data.augment))
      for seed in (5, 5, 6)]
  np.testing.assert_array_equal(labels, order)  # augmenting keeps the shuffled order
  np.testing.assert_array_equal(a, b)  # the same seed, the same images (a resumed epoch)
  assert not np.array_equal(a, c)  # another epoch's seed draws anew
  assert not np.allclose(a, shuffled)
  moved = 0
  for image, label in zip(a, labels):
    source = [i for i, y in enumerate(written["train"][1]) if y == label]
    options = np.concatenate([_candidates(plain[i]) for i in source])
    distance = np.abs(options - image).reshape(len(options), -1).max(1)
    assert distance.min() < 1e-5  # one of torchvision's crops, flipped or not
    moved += not any(np.allclose(plain[i], image, atol=1e-5) for i in source)
  assert moved > len(a) // 2
  # The test split never goes through `augment`: what the examples evaluate is the plain set.
  np.testing.assert_allclose(_batch(data_lib.pipeline(data.test, 32))[0],
                             normalised(written["test"][0]), atol=1e-5)


def test_missing_batches_say_how_to_get_them(tmp_path):
  with pytest.raises(ValueError, match="Could not load 'cifar10'.*data_batch_1.*--data_dir"):
    data_lib.load("cifar10", source="pickle", data_dir=str(tmp_path), log=lambda _: None)
  with pytest.raises(ValueError, match="only for"):
    data_lib.load("mnist", source="pickle", data_dir=str(tmp_path), log=lambda _: None)


def test_auto_without_batches_or_network_names_the_directory_it_searched(tmp_path, monkeypatch):
  def offline(*args, **kwargs):
    raise ConnectionError("no network")
  monkeypatch.setattr(data_lib, "_from_tfds", offline)
  with pytest.raises(ValueError, match=f"ConnectionError.*No python batches in --data_dir="
                                       f"{tmp_path}, its cifar-10-batches-py/"):
    data_lib.load("cifar10", data_dir=str(tmp_path), log=lambda _: None)
  # Asked for TFDS by name, it never searched for batches, so it does not say it did.
  write_batches(str(tmp_path))
  with pytest.raises(ValueError, match="ConnectionError") as raised:
    data_lib.load("cifar10", source="tfds", data_dir=str(tmp_path), log=lambda _: None)
  assert "No python batches" not in str(raised.value)


class _Exploit:
  def __reduce__(self):
    return (os.system, ("true",))


def test_a_pickle_naming_other_code_is_refused(tmp_path):
  path = str(tmp_path / "data_batch_1")
  with open(path, "wb") as f:
    pickle.dump({b"data": _Exploit(), b"labels": [0]}, f)
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    data_lib.read_cifar_batch(path)


def test_a_buffer_as_large_as_the_data_draws_a_full_permutation():
  """FlipOut's DataLoader permutes all 50k images every epoch; a 10-example buffer
  over 100 can only start with one of the first 10."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  numbers = tf.data.Dataset.range(100)
  def first_and_all(buffer, seed):
    order = np.concatenate([b.numpy() for b in data_lib.pipeline(
        numbers, 100, shuffle_seed=seed, shuffle_buffer=buffer)])
    assert sorted(order) == list(range(100))
    return order[0], order
  small = [first_and_all(10, seed)[0] for seed in range(20)]
  full = [first_and_all(100, seed)[0] for seed in range(20)]
  assert max(small) < 10 and max(full) >= 10
  # A fixed seed gives the same permutation; another seed, another one.
  np.testing.assert_array_equal(first_and_all(100, 3)[1], first_and_all(100, 3)[1])
  assert not np.array_equal(first_and_all(100, 3)[1], first_and_all(100, 4)[1])
