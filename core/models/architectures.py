"""Registry of model architectures. The Train page lists the keys of :data:`ARCHITECTURES`.

Every model takes (S, S, 1) inputs in 0..255 and does its own scaling inside, so the saved
model carries its preprocessing. Outputs: a ``features`` layer (pooled embedding, used for
the out-of-distribution score), ``logits`` and ``probs`` (softmax). Transfer models are
built *flat* on ``input_tensor``: the backbone's layers sit in the outer graph, so Grad-CAM
can reach the last convolution without digging into a nested model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.lazy_tensorflow import keras
from core.options import Registry


@dataclass(frozen=True)
class ArchSpec:
    """How to build one architecture, and what it needs."""

    key: str
    title: str
    help: str  # one line for people, shown under the choice
    build: Callable[..., object]  # (num_classes, image_size, weights, width) -> keras.Model
    default_image_size: int
    transfer: bool  # True: ImageNet backbone with two-phase fine-tuning
    weights_file: str | None = None  # file name Keras caches under $KERAS_HOME/models
    weights_md5: str | None = None  # the hash Keras checks that file against
    weights_mb: float | None = None  # download size shown on the Train page


# Keras's default BN momentum (0.99) averages over ~100 steps, i.e. most of an epoch here, so
# early validation scores lag far behind the weights; 0.9 tracks them within ~10 steps.
_BN_MOMENTUM = 0.9


def _head(x, num_classes: int, dropout: float):
    k = keras()
    x = k.layers.GlobalAveragePooling2D(name="features")(x)
    x = k.layers.Dropout(dropout, name="head_dropout")(x)
    # float32 under a mixed policy too (core.training.precision): the loss reads these logits.
    x = k.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return k.layers.Activation("softmax", name="probs", dtype="float32")(x)


def _res_block(x, filters: int, name: str):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 projection) shortcut."""
    k = keras()
    L = k.layers
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = L.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x)
        shortcut = L.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = L.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn1")(y)
    y = L.Activation("relu", name=f"{name}_relu1")(y)
    y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = L.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn2")(y)
    y = L.Add(name=f"{name}_add")([y, shortcut])
    return L.Activation("relu", name=f"{name}_out")(y)


def build_custom_cnn(num_classes: int, image_size: int = 128, weights: str = "none", width: float = 1.0):
    """A small residual CNN designed for accuracy per FLOP on a CPU.

    A stride-2 stem halves the resolution before any expensive layer; four residual stages
    (32-64-128-256 channels at width 1.0) each end in max-pooling, so compute per stage stays
    roughly constant (~0.06 GMAC) while the receptive field covers the whole slice by stage 4.
    Batch norm makes a high learning rate safe; dropout before the classifier fights the
    small dataset. About 0.25 GMAC per 128×128 image and 1.2 M parameters.
    """
    k = keras()
    L = k.layers
    inputs = k.Input((image_size, image_size, 1), name="image")
    x = L.Rescaling(1.0 / 255.0, name="scale")(inputs)
    c = [max(8, int(round(f * width / 8)) * 8) for f in (32, 64, 128, 256)]
    x = L.Conv2D(c[0], 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = L.BatchNormalization(momentum=_BN_MOMENTUM, name="stem_bn")(x)
    x = L.Activation("relu", name="stem_relu")(x)
    for i, filters in enumerate(c):
        x = _res_block(x, filters, name=f"stage{i + 1}")
        if i < len(c) - 1:
            x = L.MaxPooling2D(2, name=f"stage{i + 1}_pool")(x)
    x = L.Dropout(0.1, name="spatial_dropout")(x)
    outputs = _head(x, num_classes, dropout=0.3)
    return k.Model(inputs, outputs, name="custom_cnn")


def _transfer_model(name: str, num_classes: int, image_size: int, backbone_fn, weights: str, dropout: float,
                    adapter=None, **backbone_kwargs):
    """Gray input → 3 channels → optional adapter → ImageNet backbone on ``input_tensor`` → head.

    Building the backbone on ``input_tensor`` keeps its layers in the outer graph (flat), so
    Grad-CAM reaches the last convolution directly.
    """
    k = keras()
    inputs = k.Input((image_size, image_size, 1), name="image")
    x = k.layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    if adapter is not None:
        x = adapter(x)
    backbone = backbone_fn(include_top=False, weights=_weights_arg(weights), input_tensor=x, **backbone_kwargs)
    return k.Model(inputs, _head(backbone.output, num_classes, dropout), name=name)


def build_resnet50(num_classes: int, image_size: int = 224, weights: str = "imagenet", width: float = 1.0):
    """ResNet50 with caffe-style preprocessing (BGR, ImageNet mean subtracted, no scaling)."""
    k = keras()
    # caffe mode: RGB->BGR then subtract the ImageNet channel means; for a gray image
    # replicated to 3 channels the swap is a no-op, the means are what matters.
    caffe = k.layers.Normalization(mean=[103.939, 116.779, 123.68], variance=[1.0, 1.0, 1.0], name="caffe_preprocess")
    return _transfer_model("resnet50", num_classes, image_size, k.applications.ResNet50, weights, 0.3, adapter=caffe)


def build_efficientnetb0(num_classes: int, image_size: int = 224, weights: str = "imagenet", width: float = 1.0):
    """EfficientNetB0: takes 0..255 input and normalises inside (its own Rescaling+Normalization)."""
    return _transfer_model("efficientnetb0", num_classes, image_size, keras().applications.EfficientNetB0, weights,
                           0.3)


def build_mobilenetv3small(num_classes: int, image_size: int = 160, weights: str = "imagenet", width: float = 1.0):
    """MobileNetV3-Small: the CPU-friendly backbone; rescales 0..255 inside the model."""
    return _transfer_model("mobilenetv3small", num_classes, image_size, keras().applications.MobileNetV3Small,
                           weights, 0.2, include_preprocessing=True)


def _weights_arg(weights: str) -> str | None:
    return "imagenet" if weights == "imagenet" else None


ARCHITECTURES: Registry[ArchSpec] = Registry("architecture", [
    ArchSpec(
        "custom_cnn", "Custom CNN (from scratch)",
        "Small residual network; trains in minutes on a laptop CPU. No download needed.",
        build_custom_cnn, 128, False,
    ),
    ArchSpec(
        "efficientnetb0", "EfficientNetB0 (transfer)",
        "ImageNet backbone, strong accuracy per FLOP; slow to train on CPU.",
        build_efficientnetb0, 224, True, "efficientnetb0_notop.h5", "50bc09e76180e00e4465e1a485ddc09d", 16.7,
    ),
    ArchSpec(
        "resnet50", "ResNet50 (transfer)",
        "Classic ImageNet backbone, 23 M parameters; needs a GPU to train comfortably.",
        build_resnet50, 224, True, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626", 94.7,
    ),
    ArchSpec(
        "mobilenetv3small", "MobileNetV3-Small (transfer, CPU-friendly)",
        "Tiny ImageNet backbone for CPUs.",
        build_mobilenetv3small, 160, True, "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", "d3e8ec802a04aa4fc771ee12a9a9b836", 4.3,
    ),
])


def get_arch(key: str) -> ArchSpec:
    from core.errors import WorkbenchError

    if key not in ARCHITECTURES:
        raise WorkbenchError(f"unknown architecture '{key}'; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[key]


def build_model(key: str, num_classes: int, image_size: int | None = None, weights: str = "none", width: float = 1.0):
    """Build a registered architecture (weights: 'imagenet' or 'none')."""
    spec = get_arch(key)
    return spec.build(num_classes, image_size or spec.default_image_size, weights, width)


def backbone_layers(model) -> list:
    """Layers of the pretrained backbone: everything between the input adapter and the head."""
    skip = {"image", "scale", "gray_to_rgb", "caffe_preprocess", "features", "head_dropout", "logits", "probs"}
    return [layer for layer in model.layers if layer.name not in skip and not layer.name.startswith("input")]
