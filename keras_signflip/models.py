"""The model zoo of the pruning literature, for tf_keras or Keras 3.

| name | architecture | from |
|---|---|---|
| `lenet_300_100` | 300-100-classes dense, ReLU | Frankle & Carbin 2019 (MNIST) |
| `lenet5` | conv 6@5x5, pool, conv 16@5x5, pool, 120-84-classes | LeCun et al. 1998 |
| `conv2` | 2x conv64, pool, 256-256-classes | Frankle & Carbin 2019 (CIFAR-10) |
| `conv4` | conv64 x2, pool, conv128 x2, pool, 256-256-classes | same |
| `conv6` | conv64 x2, pool, conv128 x2, pool, conv256 x2, pool, 256-256-classes | same |
| `resnet20` | 3 stages x 3 basic blocks, 16/32/64 filters, BN | He et al. 2016 |
| `vgg19` | 16 conv3x3+BN (64..512), 5 pools, 512-classes | FlipOut's VGG-19 (CIFAR-10) |
| `resnet18` | 3x3 stem, 4 stages x 2 basic blocks, 64..512 filters, BN | FlipOut's ResNet-18 |
| `transformer_tiny` | 1 encoder block: 2 heads, FFN 64, LayerNorm, d=32 | Vaswani et al. 2017 |
| `bilstm_tiny` | TimeDistributed Dense 32, Bidirectional LSTM 32, classes | Graves et al. 2005 |

`transformer_tiny` and `bilstm_tiny` read an image's rows as a sequence of tokens
(Fashion-MNIST: 28 tokens of 28 features, `input_shape=(28, 28)`).

The output layer computes in float32 (the mixed-precision practice; a no-op
under the default float32 policy). Every builder takes `input_shape`,
`num_classes` and `keras` (the Keras
module to build with; defaults to tf_keras), returns a built
Functional model with logits, and is seeded by `keras.utils.set_random_seed`.
`vgg19` and `resnet18` are FlipOut's CIFAR-10 variants (AndreiXYZ/flipout,
models/cifar10_models.py), initialised as PyTorch's layers are (weights and biases
U(+-1/sqrt(fan_in))), and also take `width`, a factor on every layer's filters. The
ResNets' stride-2 3x3 convolutions pad one pixel on every side, as PyTorch's padding=1.
"""
__all__ = ["MODELS", "get", "lenet_300_100", "lenet5", "lenet5_caffe", "conv2", "conv4", "conv6",
           "resnet20", "vgg19", "resnet18", "transformer_tiny", "bilstm_tiny"]


def _keras(keras):
  """The Keras module to build with: the one given, else tf_keras."""
  if keras is not None:
    return keras
  from keras_signflip.tf_keras._framework import keras as tf_keras  # pylint: disable=g-import-not-at-top
  return tf_keras


def lenet_300_100(input_shape, num_classes, keras=None):
  keras = _keras(keras)
  L = keras.layers
  x = inputs = keras.Input(input_shape)
  x = L.Flatten()(x)
  x = L.Dense(300, activation="relu", name="fc1")(x)
  x = L.Dense(100, activation="relu", name="fc2")(x)
  return keras.Model(inputs, L.Dense(num_classes, name="output", dtype="float32")(x),
                     name="lenet_300_100")


def lenet5(input_shape, num_classes, keras=None):
  keras = _keras(keras)
  L = keras.layers
  x = inputs = keras.Input(input_shape)
  x = L.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(x)
  x = L.MaxPooling2D()(x)
  x = L.Conv2D(16, 5, activation="relu", name="conv2")(x)
  x = L.MaxPooling2D()(x)
  x = L.Flatten()(x)
  x = L.Dense(120, activation="relu", name="fc1")(x)
  x = L.Dense(84, activation="relu", name="fc2")(x)
  return keras.Model(inputs, L.Dense(num_classes, name="output", dtype="float32")(x), name="lenet5")


def lenet5_caffe(input_shape, num_classes, keras=None):
  """LeNet-5 as in Caffe's MNIST example (20-50-500, 431k weights): the LeNet-5 of
  Han et al. 2015 and Molchanov et al. 2017's sparse variational dropout tables."""
  keras = _keras(keras)
  L = keras.layers
  x = inputs = keras.Input(input_shape)
  x = L.Conv2D(20, 5, activation="relu", name="conv1")(x)
  x = L.MaxPooling2D()(x)
  x = L.Conv2D(50, 5, activation="relu", name="conv2")(x)
  x = L.MaxPooling2D()(x)
  x = L.Flatten()(x)
  x = L.Dense(500, activation="relu", name="fc1")(x)
  return keras.Model(inputs, L.Dense(num_classes, name="output", dtype="float32")(x),
                     name="lenet5_caffe")


def _conv_net(name, filters):
  """Frankle & Carbin's Conv-2/4/6: pairs of 3x3 convs, each pair pooled."""
  def build(input_shape, num_classes, keras=None):
    keras = _keras(keras)
    L = keras.layers
    x = inputs = keras.Input(input_shape)
    for i, f in enumerate(filters):
      x = L.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
      if i % 2 == 1:
        x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    x = L.Dense(256, activation="relu", name="fc1")(x)
    x = L.Dense(256, activation="relu", name="fc2")(x)
    return keras.Model(inputs, L.Dense(num_classes, name="output", dtype="float32")(x), name=name)
  build.__name__ = name
  build.__doc__ = f"{name}: {filters} 3x3 conv filters, then 256-256-classes."
  return build


conv2 = _conv_net("conv2", [64, 64])
conv4 = _conv_net("conv4", [64, 64, 128, 128])
conv6 = _conv_net("conv6", [64, 64, 128, 128, 256, 256])


def _basic_block(L, x, filters, stride, name, bn=None, init=None):
  """conv3x3-BN-ReLU-conv3x3-BN, plus the input (a 1x1 conv-BN projection where the
  shape changes), then ReLU. `bn`: BatchNormalization's keyword arguments; `init`:
  the convolutions' initializers (`_torch_init`'s), else Keras' defaults.

  A strided 3x3 convolution pads one pixel on every side, as PyTorch's padding=1:
  Keras' "same" pads only the bottom and right at stride 2, which centres each
  output one pixel off the 1x1 shortcut's."""
  bn = bn or {}
  init = init or (lambda: {})
  shortcut = x
  y = L.ZeroPadding2D(1)(x) if stride != 1 else x
  y = L.Conv2D(filters, 3, strides=stride, padding="same" if stride == 1 else "valid",
               use_bias=False, name=f"{name}_conv1", **init())(y)
  y = L.BatchNormalization(name=f"{name}_bn1", **bn)(y)
  y = L.ReLU()(y)
  y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2", **init())(y)
  y = L.BatchNormalization(name=f"{name}_bn2", **bn)(y)
  if stride != 1 or shortcut.shape[-1] != filters:
    shortcut = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj",
                        **init())(shortcut)
    shortcut = L.BatchNormalization(name=f"{name}_proj_bn", **bn)(shortcut)
  return L.ReLU()(L.Add()([y, shortcut]))


def resnet20(input_shape, num_classes, keras=None):
  """ResNet-20 for 32x32 images (He et al. 2016), projection shortcuts."""
  keras = _keras(keras)
  L = keras.layers
  x = inputs = keras.Input(input_shape)
  x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(x)
  x = L.ReLU()(L.BatchNormalization(name="stem_bn")(x))
  for stage, filters in enumerate([16, 32, 64]):
    for block in range(3):
      stride = 2 if stage > 0 and block == 0 else 1
      x = _basic_block(L, x, filters, stride, f"s{stage + 1}b{block + 1}")
  x = L.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, L.Dense(num_classes, name="output", dtype="float32")(x),
                     name="resnet20")


# FlipOut's CIFAR-10 models (AndreiXYZ/flipout, models/cifar10_models.py) use
# PyTorch's BatchNorm2d: running averages updated by 0.1 per step, epsilon 1e-5.
_TORCH_BN = {"momentum": 0.9, "epsilon": 1e-5}
VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _torch_init(keras):
  """PyTorch's default initialisation of Conv2d and Linear, which FlipOut keeps:
  weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5)).
  For the weights that is VarianceScaling(1/3, "fan_in", "uniform"), whose bound is
  sqrt(3 * scale / fan_in); a bias's bound needs its layer's fan-in, given here.
  Returns init(bias_fan_in=None) -> a layer's initializer arguments (new instances
  each call; a bias initializer only where the layer's fan-in is given)."""
  def init(bias_fan_in=None):
    arguments = {"kernel_initializer": keras.initializers.VarianceScaling(1 / 3, "fan_in",
                                                                          "uniform")}
    if bias_fan_in is not None:
      bound = 1 / float(bias_fan_in) ** 0.5
      arguments["bias_initializer"] = keras.initializers.RandomUniform(-bound, bound)
    return arguments
  return init


def _scaled(filters, width):
  """round(filters * width), at least 1: `width` < 1 gives the same network, narrower."""
  if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
    raise ValueError("Received an invalid value for `width`, expected a number > 0 (1: the "
                     f"published network). Received: width={width!r}")
  return max(int(round(filters * width)), 1)


def vgg19(input_shape, num_classes, keras=None, width=1.0):
  """VGG-19 with batch norm for 32x32 images, as FlipOut trains it on CIFAR-10.

  16 conv3x3 (with bias) -> BN -> ReLU, 64-64-M-128-128-M-256x4-M-512x4-M-512x4-M,
  then one Dense layer on the 512 features (no hidden dense layers): 20,040,522
  trainable parameters at width 1 and 10 classes, as in PyTorch, initialised as
  PyTorch initialises them (`_torch_init`).
  """
  keras = _keras(keras)
  L = keras.layers
  init = _torch_init(keras)
  x = inputs = keras.Input(input_shape)
  conv = 0
  for item in VGG19_CONFIG:
    if item == "M":
      x = L.MaxPooling2D()(x)
      continue
    conv += 1
    x = L.Conv2D(_scaled(item, width), 3, padding="same", name=f"conv{conv}",
                 **init(9 * x.shape[-1]))(x)
    x = L.ReLU()(L.BatchNormalization(name=f"bn{conv}", **_TORCH_BN)(x))
  x = L.Flatten()(x)
  return keras.Model(inputs, L.Dense(num_classes, name="output", dtype="float32",
                                     **init(x.shape[-1]))(x), name="vgg19")


def resnet18(input_shape, num_classes, keras=None, width=1.0):
  """ResNet-18 for 32x32 images, as FlipOut trains it on CIFAR-10.

  A 3x3 stem (64 filters, stride 1, no max-pool), basic blocks [2, 2, 2, 2] with
  64-128-256-512 filters (stride 2 entering stages 2-4, 1x1 projection shortcuts),
  global average pooling, Dense: 11,173,962 trainable parameters at width 1,
  initialised as PyTorch initialises them (`_torch_init`).
  """
  keras = _keras(keras)
  L = keras.layers
  init = _torch_init(keras)
  x = inputs = keras.Input(input_shape)
  x = L.Conv2D(_scaled(64, width), 3, padding="same", use_bias=False, name="stem",
               **init())(x)
  x = L.ReLU()(L.BatchNormalization(name="stem_bn", **_TORCH_BN)(x))
  for stage, filters in enumerate([64, 128, 256, 512]):
    for block in range(2):
      stride = 2 if stage > 0 and block == 0 else 1
      x = _basic_block(L, x, _scaled(filters, width), stride, f"s{stage + 1}b{block + 1}",
                       _TORCH_BN, init)
  x = L.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, L.Dense(num_classes, name="output", dtype="float32",
                                     **init(x.shape[-1]))(x), name="resnet18")


def transformer_tiny(input_shape, num_classes, keras=None):
  """One Transformer encoder block over a sequence of `input_shape` = (tokens, features).

  The embedding is one EinsumDense: its kernel (features x 32) embeds each token, its
  bias (tokens x 32) is a learned position embedding. Then post-norm self-attention
  (2 heads of 16) and a 64-unit ReLU feed-forward, each added back and normalised,
  then the mean over tokens and the logits.
  """
  keras = _keras(keras)
  L = keras.layers
  tokens, dim = input_shape[0], 32
  x = inputs = keras.Input(input_shape)
  x = L.EinsumDense("btf,fd->btd", output_shape=(tokens, dim), bias_axes="td", name="embed")(x)
  a = L.MultiHeadAttention(num_heads=2, key_dim=dim // 2, name="attention")(x, x)
  x = L.LayerNormalization(name="norm1")(L.Add()([x, a]))
  f = L.Dense(2 * dim, activation="relu", name="ffn1")(x)
  f = L.Dense(dim, name="ffn2")(f)
  x = L.LayerNormalization(name="norm2")(L.Add()([x, f]))
  x = L.GlobalAveragePooling1D()(x)
  return keras.Model(inputs, L.Dense(num_classes, name="output", dtype="float32")(x),
                     name="transformer_tiny")


def bilstm_tiny(input_shape, num_classes, keras=None):
  """A Bidirectional LSTM classifier of a sequence `input_shape` = (tokens, features):
  each token projected by a TimeDistributed Dense, 32 LSTM units each way, the logits
  from the two last states."""
  keras = _keras(keras)
  L = keras.layers
  x = inputs = keras.Input(input_shape)
  x = L.TimeDistributed(L.Dense(32, activation="relu"), name="project")(x)
  x = L.Bidirectional(L.LSTM(32), name="bilstm")(x)
  return keras.Model(inputs, L.Dense(num_classes, name="output", dtype="float32")(x),
                     name="bilstm_tiny")


MODELS = {f.__name__: f for f in (lenet_300_100, lenet5, lenet5_caffe, conv2, conv4, conv6,
                                  resnet20, vgg19, resnet18, transformer_tiny, bilstm_tiny)}


WIDTH_MODELS = ("vgg19", "resnet18")  # the builders that take `width`
# A builder's revision goes up when the function it builds changes (2: PyTorch's
# initialisation for vgg19 / resnet18, centred stride-2 padding in the ResNets), so that
# results and checkpoints of an older network are never mixed with a newer one's.
REVISIONS = {"vgg19": 2, "resnet18": 2, "resnet20": 2}


def revision(name):
  """The revision of builder `name` (1 unless REVISIONS says otherwise)."""
  return REVISIONS.get(name, 1)


def get(name, keras_module=None, width=1.0):
  """The builder called `name`; the error lists the valid names.

  Args:
    keras_module: None (tf_keras), or the Keras 3 `keras` module: the layers
      API is the same, so every builder takes either.
    width: filters scaled by `width` (models in WIDTH_MODELS only; e.g. tests'
      tiny networks). Defaults to 1, the published network.
  """
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}. Expected one of {sorted(MODELS)}.")
  builder = MODELS[name]
  _scaled(1, width)  # a valid width, else the error
  if width != 1.0:
    if name not in WIDTH_MODELS:
      raise ValueError(f"Model {name!r} has no `width`; only {list(WIDTH_MODELS)} do. "
                       f"Received: width={width!r}")
    return lambda input_shape, num_classes: builder(input_shape, num_classes, keras=keras_module,
                                                    width=width)
  return lambda input_shape, num_classes: builder(input_shape, num_classes, keras=keras_module)
