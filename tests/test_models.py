"""keras_signflip.models: FlipOut's CIFAR-10 VGG-19 and ResNet-18 on both families.

Expected sizes are counted here from the architectures as FlipOut's PyTorch code
writes them (AndreiXYZ/flipout, models/cifar10_models.py), layer by layer; the
counts at width 1 are the ones PyTorch reports for those modules.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
import tensorflow_model_optimization as tfmot

import keras_signflip as ksf
from keras_signflip import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"]
PYTORCH_TRAINABLE = {"vgg19": 20_040_522, "resnet18": 11_173_962}  # sum(p.numel()), 10 classes


def expected(name, width=1.0, classes=10):
  """(trainable parameters, prunable kernel weights, prunable layers) by formula:
  conv k x k: k*k*in*out (+ out bias in VGG), BatchNorm: 2 per channel
  (gamma, beta), Dense: in*classes + classes."""
  w = lambda c: max(int(round(c * width)), 1)  # noqa: E731
  convs = []  # (kernel size, in, out, bias)
  if name == "vgg19":
    cin = 3
    for item in VGG19:
      if item != "M":
        convs.append((3, cin, w(item), True))
        cin = w(item)
  else:
    convs.append((3, 3, w(64), False))
    cin = w(64)
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
      for block in range(2):
        s = stride if block == 0 else 1
        convs += [(3, cin, w(planes), False), (3, w(planes), w(planes), False)]
        if s != 1 or cin != w(planes):
          convs.append((1, cin, w(planes), False))
        cin = w(planes)
  kernels = sum(k * k * i * o for k, i, o, _ in convs) + cin * classes
  trainable = kernels + sum(o * (2 + bias) for _, _, o, bias in convs) + classes
  return trainable, kernels, len(convs) + 1


def _count(weights):
  return sum(int(v.shape.num_elements()) for v in weights)


@pytest.mark.parametrize("name", ["vgg19", "resnet18"])
def test_formula_is_pytorchs_count(name):
  assert expected(name)[0] == PYTORCH_TRAINABLE[name]


@pytest.mark.parametrize("name", ["vgg19", "resnet18"])
def test_tf_keras_model_has_flipouts_size_and_prunes_every_kernel(name):
  model = models.get(name)((32, 32, 3), 10)
  trainable, kernels, layers = expected(name)
  assert _count(model.trainable_weights) == trainable
  assert model.output_shape == (None, 10)
  pruned = ksf.prune_sign_flip(model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
      0.999, 0), criterion="magnitude", scope="global")
  masks = ksf.masks(pruned)
  assert len(masks) == layers and sum(m.size for m in masks.values()) == kernels


def test_width_narrows_every_layer():
  model = models.get("resnet18", width=0.125)((32, 32, 3), 7)
  assert _count(model.trainable_weights) == expected("resnet18", 0.125, 7)[0]
  assert model.get_layer("s4b2_conv2").kernel.shape == (3, 3, 64, 64)


@pytest.mark.parametrize("name,width", [("lenet5", 0.5), ("vgg19", 0), ("vgg19", -1.0),
                                        ("vgg19", True)])
def test_bad_width_is_refused(name, width):
  with pytest.raises(ValueError, match="width"):
    models.get(name, width=width)


def _pytorch_init_problems(tensors):
  """What differs from PyTorch's default Conv2d / Linear initialisation, which FlipOut
  keeps: kernel (..., out) and bias both U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in =
  the kernel's size over its outputs. `tensors`: {layer name: (kernel, bias or None)}.

  Three checks a tensor of n values fails with probability 1e-4 or less if drawn
  right: no |w| above the bound; the largest |w| at least q * bound, q = 1e-6^(1/n)
  (n uniform draws all fall below q * bound with probability q^n: a zero bias, or a
  bound from the wrong fan-in, fails it); Kolmogorov-Smirnov against the uniform law."""
  problems = []
  for name, (kernel, bias) in tensors.items():
    bound = 1 / np.sqrt(kernel.size / kernel.shape[-1])
    for what, values in (("kernel", kernel), ("bias", bias)):
      if values is None:
        continue
      values = np.abs(values.ravel()) / bound
      if values.max() > 1 + 1e-6:
        problems.append(f"{name} {what}: |w| up to {values.max():.4g} x the bound {bound:.4g}")
      if values.max() < 1e-6 ** (1 / values.size):
        problems.append(f"{name} {what}: |w| only up to {values.max():.4g} x the bound {bound:.4g}")
      p = stats.kstest(values[:20000], "uniform").pvalue  # |U(-b, b)| / b is U(0, 1)
      if p < 1e-4:
        problems.append(f"{name} {what}: not U(-{bound:.4g}, {bound:.4g}) (KS p={p:.2g})")
  return problems


def _conv_and_dense(model):
  return {l.name: (l.get_weights()[0], l.get_weights()[1] if l.use_bias else None)
          for l in model.layers if type(l).__name__ in ("Conv2D", "Dense")}


@pytest.mark.parametrize("name", ["vgg19", "resnet18"])
def test_initialisation_is_pytorchs_default(name):
  model = models.get(name, width=0.25)((32, 32, 3), 10)
  tensors = _conv_and_dense(model)
  assert len(tensors) == expected(name, 0.25)[2]
  assert _pytorch_init_problems(tensors) == []
  assert (name == "vgg19") == all(b is not None for _, b in tensors.values())
  for layer in model.layers:  # BatchNorm starts as PyTorch's: gamma 1, beta 0
    if type(layer).__name__ == "BatchNormalization":
      gamma, beta = layer.get_weights()[:2]
      assert np.all(gamma == 1) and np.all(beta == 0)


def test_glorot_is_not_pytorchs_default():
  """The check above can fail: Keras' default initialisation (Glorot, zero bias) fails it."""
  model = models.get("conv2")((32, 32, 3), 10)
  problems = _pytorch_init_problems(_conv_and_dense(model))
  assert any("bias: |w| only up to 0" in p for p in problems)  # zero biases
  assert any("kernel" in p for p in problems)


def _conv_numpy(x, kernel, stride, pad):
  """Cross-correlation as PyTorch's conv2d computes it: `pad` zeros on every side."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  k = kernel.shape[0]
  rows = (x.shape[1] - k) // stride + 1
  cols = (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], rows, cols, kernel.shape[-1]))
  for i in range(rows):
    for j in range(cols):
      patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
      out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, kernel)
  return out


def test_resnet18_strided_convolutions_pad_as_pytorch():
  """Stride-2 3x3 convolutions pad one pixel on every side (PyTorch's padding=1), so
  that their outputs are centred on the pixels the 1x1 shortcut reads."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  model = models.get("resnet18", width=0.0625)((32, 32, 3), 10)
  x = np.random.RandomState(0).randn(2, 32, 32, 3).astype("float32")
  for block in ("s2b1", "s3b1", "s4b1"):
    conv, proj = model.get_layer(f"{block}_conv1"), model.get_layer(f"{block}_proj")
    # The shortcut reads the block's input as it is.
    block_in, conv_out, proj_out = (t.numpy().astype("float64") for t in keras.Model(
        model.input, [proj.input, conv.output, proj.output])(x))
    np.testing.assert_allclose(conv_out, _conv_numpy(block_in, conv.kernel.numpy(), 2, 1),
                               rtol=1e-4, atol=1e-4, err_msg=block)
    np.testing.assert_allclose(proj_out, _conv_numpy(block_in, proj.kernel.numpy(), 2, 0),
                               rtol=1e-4, atol=1e-4, err_msg=block)


def test_keras3_models_have_the_same_sizes_and_initialisation(tmp_path, jax_cache_env):
  """Both models on Keras 3 (JAX), wrapped by prune_sign_flip, in a fresh process."""
  code = (
      "import json, math, sys, numpy as np, keras, keras_signflip as ksf\n"
      "from keras_signflip import models\n"
      "from keras_signflip.keras3 import schedules\n"
      "out = {}\n"
      "for name in ('vgg19', 'resnet18'):\n"
      "  m = models.get(name, keras)((32, 32, 3), 10)\n"
      "  t = sum(math.prod(v.shape) for v in m.trainable_weights)\n"
      "  p = ksf.prune_sign_flip(m, pruning_schedule=schedules.ConstantSparsity(0.999, 0),\n"
      "                          criterion='magnitude', scope='global')\n"
      "  masks = ksf.masks(p)\n"
      "  out[name] = [t, sum(v.size for v in masks.values()), len(masks)]\n"
      "  small = models.get(name, keras, width=0.25)((32, 32, 3), 10)\n"
      "  np.savez(f'{sys.argv[1]}/{name}.npz', **{\n"
      "      f'{l.name}|{i}': w for l in small.layers\n"
      "      if type(l).__name__ in ('Conv2D', 'Dense') for i, w in enumerate(l.get_weights())})\n"
      "print(json.dumps(out))\n")
  env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", **jax_cache_env)
  env.pop("TF_USE_LEGACY_KERAS", None)
  result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  counts = json.loads(result.stdout.strip().splitlines()[-1])
  for name in ("vgg19", "resnet18"):
    assert counts[name] == list(expected(name))
    saved = np.load(tmp_path / f"{name}.npz")
    layers = {k.split("|")[0] for k in saved.files}
    tensors = {l: (saved[f"{l}|0"], saved[f"{l}|1"] if f"{l}|1" in saved.files else None)
               for l in layers}
    assert len(tensors) == expected(name, 0.25)[2]
    assert _pytorch_init_problems(tensors) == []

