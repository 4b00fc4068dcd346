"""Image-classification data through TFDS, with offline IDX and CIFAR-10 fallbacks.

`load(name, ...)` returns a `Data` (train and test `tf.data` pipelines plus
shapes) and says where the data came from. Sources, in order for
`source="auto"`:

1. a TFDS dataset already prepared under `data_dir`;
2. local files: IDX files (`mnist`, `fashion_mnist`) under `idx_dir`, by
   default where Debian's `dataset-fashion-mnist` package puts them; CIFAR-10's
   python batches (`cifar10`: `data_batch_1`..`5`, `test_batch`) in `data_dir`,
   its `cifar-10-batches-py/`, or where `keras.datasets.cifar10` saves them;
3. a TFDS download.

It never installs anything: when no source has the data, the error names the
command that gets it (`make data` runs `apt-get install dataset-fashion-mnist`).

Images are scaled to [0, 1] float32; labels are int64. CIFAR-10 is then
normalised per channel and comes with its training augmentation, as FlipOut
trains it (`Data.augment`, applied by `pipeline` after the cache).
"""
import gzip
import os
import pickle
from typing import NamedTuple

import numpy as np

import tensorflow as tf  # tf.data only: the data loader needs neither tf_keras nor TF-MOT

__all__ = ["Data", "load", "pipeline", "read_idx", "read_cifar_batch", "crop_and_flip",
           "DEFAULT_IDX_DIR", "SOURCES"]

DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist"
SOURCES = ("auto", "tfds", "idx", "pickle")
IDX_DATASETS = {"mnist", "fashion_mnist"}
PICKLE_DATASETS = {"cifar10"}
# FlipOut's CIFAR-10 normalisation (AndreiXYZ/flipout, utils/data_loaders.py).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
_CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
# Where keras.datasets.cifar10.load_data() extracts the batches.
_KERAS_CIFAR10_DIR = os.path.join("~", ".keras", "datasets", "cifar-10-batches-py")
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class Data(NamedTuple):
  train: tf.data.Dataset      # unbatched (image, label)
  test: tf.data.Dataset       # unbatched (image, label)
  input_shape: tuple
  num_classes: int
  train_size: int
  source: str                 # a sentence saying where the data came from
  augment: object = None      # (image, label, seed [2]) -> (image, label), or None


def read_idx(path):
  """Reads an IDX file (optionally .gz) into a NumPy array (LeCun's format)."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    raw = f.read()
  if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise ValueError(f"{path} is not an unsigned-byte IDX file.")
  ndim = raw[3]
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_path(idx_dir, stem):
  for name in (stem + ".gz", stem):
    if os.path.exists(os.path.join(idx_dir, name)):
      return os.path.join(idx_dir, name)
  return None


def _has_idx(idx_dir):
  return all(_idx_path(idx_dir, s) for files in _IDX_FILES.values() for s in files)


def _from_idx(name, idx_dir):
  arrays = {}
  for split, (images, labels) in _IDX_FILES.items():
    x = read_idx(_idx_path(idx_dir, images))[..., None]
    y = read_idx(_idx_path(idx_dir, labels)).astype(np.int64)
    arrays[split] = (x, y)
  return Data(tf.data.Dataset.from_tensor_slices(arrays["train"]).map(_scale),
              tf.data.Dataset.from_tensor_slices(arrays["test"]).map(_scale),
              arrays["train"][0].shape[1:], 10, len(arrays["train"][1]),
              f"{name}: local IDX files in {idx_dir}")


class _ArraysOnly(pickle.Unpickler):
  """Unpickles dicts, lists and NumPy arrays only: a pickle naming any other
  callable (which could run code) is refused."""
  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
              ("numpy._core.numeric", "_frombuffer"),
              ("_codecs", "encode")}  # bytes in a protocol-2 pickle written by Python 3

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch; refusing "
                                   "to load it (a pickle can run code).")
    return super().find_class(module, name)


def read_cifar_batch(path):
  """(images uint8 [n, 32, 32, 3], labels int64 [n]) of one CIFAR-10 python batch:
  a pickled dict whose b"data" rows hold 1024 red, 1024 green, 1024 blue bytes."""
  with open(path, "rb") as f:
    batch = _ArraysOnly(f, encoding="bytes").load()
  if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
    raise ValueError(f"{path} is not a CIFAR-10 python batch (no b'data' and b'labels').")
  images = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return images, np.asarray(batch[b"labels"], np.int64)


def _cifar10_dir(data_dir):
  """The first of data_dir, data_dir/cifar-10-batches-py and Keras' download
  directory that holds all six batches, else None."""
  candidates = ([data_dir, os.path.join(data_dir, "cifar-10-batches-py")] if data_dir else [])
  for directory in candidates + [os.path.expanduser(_KERAS_CIFAR10_DIR)]:
    if all(os.path.exists(os.path.join(directory, f))
           for files in _CIFAR10_FILES.values() for f in files):
      return directory
  return None


def _from_pickle(name, directory):
  arrays = {}
  for split, files in _CIFAR10_FILES.items():
    parts = [read_cifar_batch(os.path.join(directory, f)) for f in files]
    arrays[split] = tuple(np.concatenate(a) for a in zip(*parts))
  return Data(tf.data.Dataset.from_tensor_slices(arrays["train"]).map(_scale),
              tf.data.Dataset.from_tensor_slices(arrays["test"]).map(_scale),
              (32, 32, 3), 10, len(arrays["train"][1]),
              f"{name}: CIFAR-10 python batches in {directory}")


def _normalize_cifar10(image, label):
  return (image - CIFAR10_MEAN) / CIFAR10_STD, label


def crop_and_flip(image, label, seed):
  """FlipOut's CIFAR-10 training augmentation on one normalised image: pad 4
  pixels of black (0 before normalisation: -mean / std after), crop a random
  window of the original size, flip left-right with probability 1/2. `seed`:
  an int [2] tensor (stateless draws: the same seed, the same image)."""
  fill = -tf.constant(CIFAR10_MEAN, tf.float32) / tf.constant(CIFAR10_STD, tf.float32)
  padded = tf.pad(image - fill, [[4, 4], [4, 4], [0, 0]]) + fill
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  image = tf.image.stateless_random_crop(padded, tf.shape(image), crop_seed)
  return tf.image.stateless_random_flip_left_right(image, flip_seed), label


def _as_cifar10(data):
  """`data` normalised per channel, with FlipOut's augmentation for training."""
  return data._replace(train=data.train.map(_normalize_cifar10),
                       test=data.test.map(_normalize_cifar10), augment=crop_and_flip)


def _scale(image, label):
  return tf.cast(image, tf.float32) / 255.0, tf.cast(label, tf.int64)


def _from_tfds(name, data_dir, download):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir)
  if download:
    builder.download_and_prepare()
  info = builder.info
  image_key = "image" if "image" in info.features else next(iter(info.features))
  if "label" not in info.features:
    raise ValueError(f"TFDS dataset {name!r} has no 'label' feature; it is not "
                     "an image-classification dataset.")

  def as_pair(example):
    return _scale(example[image_key], example["label"])
  train = builder.as_dataset(split="train").map(as_pair)
  test_split = "validation" if info.splits and "test" not in info.splits else "test"
  test = builder.as_dataset(split=test_split).map(as_pair)
  return Data(train, test, tuple(info.features[image_key].shape),
              info.features["label"].num_classes, _size(info, train),
              f"{name}: TFDS ({builder.data_dir})")


def _size(info, dataset):
  """Examples in the train split: TFDS metadata, else cardinality, else a count."""
  if info.splits and "train" in info.splits:
    return info.splits["train"].num_examples
  cardinality = int(dataset.cardinality())
  if cardinality >= 0:
    return cardinality
  return int(dataset.reduce(0, lambda n, _: n + 1))


def _tfds_prepared(name, data_dir):
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    return tf.io.gfile.exists(os.path.join(tfds.builder(name, data_dir=data_dir).data_dir,
                                           "dataset_info.json"))
  except Exception:  # pylint: disable=broad-except
    return False  # unknown name or unreadable dir: let the next source decide.


def load(name, source="auto", idx_dir=DEFAULT_IDX_DIR, data_dir=None, log=print):
  """Loads `name` (a TFDS image-classification dataset) as a `Data`.

  Args:
    data_dir: TFDS's data directory; for `cifar10` also where its python
      batches may lie (in it or in its `cifar-10-batches-py/`).

  Raises:
    ValueError: unknown source, or no data could be found or fetched; the
      message says how to get it.
  """
  if source not in SOURCES:
    raise ValueError(f"Unknown data source {source!r}; expected one of {list(SOURCES)}.")
  data = _load(name, source, idx_dir, data_dir)
  if name == "cifar10":
    data = _as_cifar10(data)
  log(f"Data: {data.source}")
  return data


def _load(name, source, idx_dir, data_dir):
  """`load` before CIFAR-10's normalisation."""
  if source == "pickle" or (source == "auto" and name in PICKLE_DATASETS
                            and not _tfds_prepared(name, data_dir) and _cifar10_dir(data_dir)):
    if name not in PICKLE_DATASETS:
      raise ValueError(f"Python batches exist only for {sorted(PICKLE_DATASETS)}, not {name!r}.")
    directory = _cifar10_dir(data_dir)
    if directory is None:
      raise ValueError(
          f"Could not load {name!r}: no CIFAR-10 python batches (data_batch_1..5, test_batch) "
          f"in --data_dir={data_dir}, its cifar-10-batches-py/ or {_KERAS_CIFAR10_DIR}. Extract "
          "cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) and pass "
          "--data_dir=DIR, or prepare TFDS's cifar10 (`tfds build cifar10`).")
    return _from_pickle(name, directory)
  if source == "idx" or (source == "auto" and name in IDX_DATASETS
                         and not _tfds_prepared(name, data_dir)):
    if name not in IDX_DATASETS:
      raise ValueError(f"IDX files exist only for {sorted(IDX_DATASETS)}, not {name!r}.")
    if _has_idx(idx_dir):
      return _from_idx(name, idx_dir)
    if source == "idx":
      raise ValueError(
          f"No IDX files for {name} in {idx_dir}. Install them with "
          "`sudo apt-get install dataset-fashion-mnist` (Fashion-MNIST; or `make data`), or pass "
          "--idx_dir=DIR holding train-images-idx3-ubyte.gz and the other three files.")
  try:
    return _from_tfds(name, data_dir, download=not _tfds_prepared(name, data_dir))
  except Exception as e:  # pylint: disable=broad-except
    searched = (f"--data_dir={data_dir}, its cifar-10-batches-py/ or " if data_dir else "")
    looked = (f" No python batches in {searched}{_KERAS_CIFAR10_DIR} either."
              if source == "auto" and name in PICKLE_DATASETS and not _cifar10_dir(data_dir)
              else "")
    raise ValueError(
        f"Could not load {name!r} through TFDS ({type(e).__name__}: "
        f"{str(e).splitlines()[0] if str(e) else ''}).{looked} Check the name, the "
        "network, or prepare it with `tfds build` and pass --data_dir; for "
        "Fashion-MNIST offline, run `sudo apt-get install dataset-fashion-mnist` "
        "(or `make data`), or pass --idx_dir=DIR with the IDX files; for CIFAR-10 offline, "
        "pass --data_dir=DIR with its python batches.") from e


def pipeline(dataset, batch_size, shuffle_seed=None, cache=True, take=None, augment=None,
             shuffle_buffer=10_000):
  """(take) -> cache -> (shuffle with a fixed seed) -> (augment) -> batch -> prefetch.

  A fixed `shuffle_seed` gives the same order on every run, so a resumed epoch
  sees the batches the interrupted one saw. To reshuffle per epoch without
  refilling the cache, pass an already cached dataset and `cache=False`.
  `augment` (e.g. `Data.augment`) gets the seed (shuffle_seed, position in the
  epoch), so an epoch's augmented images are as reproducible as its order; it
  runs after the cache, so every epoch draws anew. `shuffle_buffer` at least the
  number of examples draws a full permutation (PyTorch's DataLoader(shuffle=True));
  the default buffer of 10,000 is what the LeNet studies ran with.
  """
  if take:
    dataset = dataset.take(take)
  if cache:
    dataset = dataset.cache()
  if shuffle_seed is not None:
    dataset = dataset.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
  if augment is not None:
    base = tf.constant(shuffle_seed or 0, tf.int64)
    dataset = dataset.enumerate().map(
        lambda i, example: augment(*example, tf.stack([base, i])),
        num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
