"""keras_signflip.models: FlipOut's CIFAR-10 VGG-19 and ResNet-18 on both families.

Expected sizes are counted here from the architectures as FlipOut's PyTorch code
writes them (AndreiXYZ/flipout, models/cifar10_models.py), layer by layer; the
counts at width 1 are the ones PyTorch reports for those modules.
"""
import json
import os
import subprocess
import sys

import pytest
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


def test_keras3_models_have_the_same_sizes(jax_cache_env):
  """Both models on Keras 3 (JAX), wrapped by prune_sign_flip, in a fresh process."""
  code = (
      "import json, math, keras, keras_signflip as ksf\n"
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
      "print(json.dumps(out))\n")
  env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", **jax_cache_env)
  env.pop("TF_USE_LEGACY_KERAS", None)
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  counts = json.loads(result.stdout.strip().splitlines()[-1])
  for name in ("vgg19", "resnet18"):
    assert counts[name] == list(expected(name))

