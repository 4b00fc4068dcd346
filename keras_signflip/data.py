"""Image-classification data through TFDS, with an offline IDX fallback.

`load(name, ...)` returns a `Data` (train and test `tf.data` pipelines plus
shapes) and says where the data came from. Sources, in order for
`source="auto"`:

1. a TFDS dataset already prepared under `data_dir`;
2. local IDX files (`mnist`, `fashion_mnist`) under `idx_dir`, by default
   where Debian's `dataset-fashion-mnist` package puts them;
3. a TFDS download.

It never installs anything: when no source has the data, the error names the
command that gets it (`make data` runs `apt-get install dataset-fashion-mnist`).

Images are scaled to [0, 1] float32; labels are int64.
"""
import gzip
import os
from typing import NamedTuple

import numpy as np

import tensorflow as tf  # tf.data only: the data loader needs neither tf_keras nor TF-MOT

__all__ = ["Data", "load", "pipeline", "read_idx", "DEFAULT_IDX_DIR", "SOURCES"]

DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist"
SOURCES = ("auto", "tfds", "idx")
IDX_DATASETS = {"mnist", "fashion_mnist"}
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class Data(NamedTuple):
  train: tf.data.Dataset      # unbatched (image, label)
  test: tf.data.Dataset       # unbatched (image, label)
  input_shape: tuple
  num_classes: int
  train_size: int
  source: str                 # a sentence saying where the data came from


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

  Raises:
    ValueError: unknown source, or no data could be found or fetched; the
      message says how to get it.
  """
  if source not in SOURCES:
    raise ValueError(f"Unknown data source {source!r}; expected one of {list(SOURCES)}.")
  if source == "idx" or (source == "auto" and name in IDX_DATASETS
                         and not _tfds_prepared(name, data_dir)):
    if name not in IDX_DATASETS:
      raise ValueError(f"IDX files exist only for {sorted(IDX_DATASETS)}, not {name!r}.")
    if _has_idx(idx_dir):
      data = _from_idx(name, idx_dir)
      log(f"Data: {data.source}")
      return data
    if source == "idx":
      raise ValueError(
          f"No IDX files for {name} in {idx_dir}. Install them with "
          "`sudo apt-get install dataset-fashion-mnist` (Fashion-MNIST; or `make data`), or pass "
          "--idx_dir=DIR holding train-images-idx3-ubyte.gz and the other three files.")
  try:
    data = _from_tfds(name, data_dir, download=not _tfds_prepared(name, data_dir))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f"Could not load {name!r} through TFDS ({type(e).__name__}: "
        f"{str(e).splitlines()[0] if str(e) else ''}). Check the name, the "
        "network, or prepare it with `tfds build` and pass --data_dir; for "
        "Fashion-MNIST offline, run `sudo apt-get install dataset-fashion-mnist` "
        "(or `make data`), or pass --idx_dir=DIR with the IDX files.") from e
  log(f"Data: {data.source}")
  return data


def pipeline(dataset, batch_size, shuffle_seed=None, cache=True, take=None):
  """(take) -> cache -> (shuffle with a fixed seed) -> batch -> prefetch.

  A fixed `shuffle_seed` gives the same order on every run, so a resumed epoch
  sees the batches the interrupted one saw. To reshuffle per epoch without
  refilling the cache, pass an already cached dataset and `cache=False`.
  """
  if take:
    dataset = dataset.take(take)
  if cache:
    dataset = dataset.cache()
  if shuffle_seed is not None:
    dataset = dataset.shuffle(10_000, seed=shuffle_seed, reshuffle_each_iteration=False)
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
