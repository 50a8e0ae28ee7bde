"""Grad-CAM: shape and range for every architecture and method, localisation on a model whose
evidence is known, nested backbones, untouched inputs, caching and every error path."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import WorkbenchError
from core.inference.gradcam import CAM_METHODS, compute_cam, find_target_layer, gradient_model
from core.models.architectures import ARCHITECTURES, build_model

SIZE = 32


def _keras():
    from core.lazy_tensorflow import keras

    return keras()


def _image(seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 1), dtype=np.uint8)


def _square_image(size: int = 16, corner: str = "top_left") -> np.ndarray:
    """Black image with a bright 4×4 square in one corner: the only evidence there is."""
    img = np.zeros((size, size, 1), dtype=np.uint8)
    if corner == "top_left":
        img[:4, :4] = 255
    else:
        img[-4:, -4:] = 255
    return img


def _evidence_model(nested: bool):
    """A model whose class-0 score is the image's brightness, seen through a 4×4 feature map.

    The 1×1 convolution copies the (scaled) image, max-pooling makes a coarse map, and the
    logits are [+mean, −mean] of that map: class 0's evidence is exactly where the image is
    bright, class 1 has none anywhere. Weights are set by hand, so the test is deterministic.
    """
    k = _keras()
    L = k.layers
    inputs = k.Input((16, 16, 1), name="image")
    x = L.Rescaling(1 / 255.0, name="scale")(inputs)
    conv = L.Conv2D(1, 1, activation="relu", name="copy_conv")
    pool = L.MaxPooling2D(4, name="coarse_map")
    if nested:
        inner_in = k.Input((16, 16, 1))
        backbone = k.Model(inner_in, pool(conv(inner_in)), name="backbone")
        x = backbone(x)
    else:
        x = pool(conv(x))
    x = L.GlobalAveragePooling2D(name="features")(x)
    logits = L.Dense(2, name="logits")
    x = logits(x)
    outputs = L.Activation("softmax", name="probs")(x)
    model = k.Model(inputs, outputs)
    conv.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    logits.set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    return model


# --- every architecture × method ------------------------------------------------------------

@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def arch_model(request):
    return build_model(request.param, 4, SIZE, weights="none", width=0.25)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_cam_shape_and_range_for_every_architecture(arch_model, method):
    cam = compute_cam(arch_model, _image(), method=method)
    assert cam.shape == (SIZE, SIZE)
    assert cam.dtype == np.float32
    assert np.all(np.isfinite(cam))
    assert cam.min() >= 0.0 and cam.max() <= 1.0


@pytest.mark.slow
def test_every_architecture_has_a_feature_map_layer(arch_model):
    layer = find_target_layer(arch_model)
    assert len(layer.output.shape) == 4
    assert layer.name not in ("image", "features", "logits", "probs")


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_input_is_not_modified(method, dtype):
    model = _evidence_model(nested=False)
    image = _square_image().astype(dtype)
    before = image.copy()
    compute_cam(model, image, method=method)
    assert image.dtype == dtype
    np.testing.assert_array_equal(image, before)


# --- localisation -----------------------------------------------------------------------------

@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("method", sorted(CAM_METHODS))
@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_cam_peaks_where_the_evidence_is(nested, method, corner):
    model = _evidence_model(nested)
    # The named coarse map holds all the evidence (multi-layer methods would also fuse the 1×1 copy).
    cam = compute_cam(model, _square_image(corner=corner), class_index=0, method=method, layer_name="coarse_map")
    assert cam.shape == (16, 16)
    near, far = (slice(0, 4), slice(8, 16)) if corner == "top_left" else (slice(12, 16), slice(0, 8))
    peak = np.unravel_index(int(cam.argmax()), cam.shape)
    assert near.start <= peak[0] < near.stop and near.start <= peak[1] < near.stop
    assert cam[near, near].mean() > 0.5  # the evidence is hot ...
    assert cam[far, :].max() < 0.05 and cam[:, far].max() < 0.05  # ... the opposite half is not


def test_default_class_is_the_predicted_one():
    model = _evidence_model(nested=False)
    image = _square_image()
    np.testing.assert_array_equal(compute_cam(model, image), compute_cam(model, image, class_index=0))


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_no_evidence_gives_an_all_zero_map_without_nan(method):
    model = _evidence_model(nested=False)
    # Class 1's score falls wherever the image is bright: after ReLU nothing supports it.
    cam = compute_cam(model, _square_image(), class_index=1, method=method)
    assert np.all(np.isfinite(cam)) and not cam.any()
    # A black image has zero activations and zero gradients everywhere.
    cam = compute_cam(model, np.zeros((16, 16, 1), np.uint8), class_index=0, method=method)
    assert np.all(np.isfinite(cam)) and not cam.any()


# --- nested backbones, layer search and caching ------------------------------------------------

def test_find_target_layer_searches_inside_nested_models():
    model = _evidence_model(nested=True)
    assert find_target_layer(model).name == "coarse_map"
    assert find_target_layer(model, "copy_conv").name == "copy_conv"
    cam = compute_cam(model, _square_image(), layer_name="copy_conv")
    assert cam.shape == (16, 16) and cam[:4, :4].min() > 0.9 and cam[8:, 8:].max() < 0.05


@pytest.mark.slow
def test_nested_transfer_backbone_as_a_layer():
    """The classic failure: MobileNetV3 as one nested layer instead of a flat graph."""
    k = _keras()
    inputs = k.Input((SIZE, SIZE, 1))
    x = k.layers.Concatenate()([inputs, inputs, inputs])
    backbone = k.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                                               include_preprocessing=True)
    x = backbone(x)
    x = k.layers.GlobalAveragePooling2D(name="features")(x)
    x = k.layers.Dense(4, name="logits")(x)
    model = k.Model(inputs, k.layers.Activation("softmax")(x))
    layer = find_target_layer(model)
    assert layer in backbone.layers  # found inside, not at the top level
    for method in CAM_METHODS:
        cam = compute_cam(model, _image(3), method=method)
        assert cam.shape == (SIZE, SIZE) and 0.0 <= cam.min() and cam.max() <= 1.0


def _evidence_backbone():
    """The nested part of :func:`_evidence_model` on its own: copy the image, pool to 4×4."""
    k = _keras()
    inner_in = k.Input((16, 16, 1))
    conv = k.layers.Conv2D(1, 1, activation="relu", name="copy_conv")
    backbone = k.Model(inner_in, k.layers.MaxPooling2D(4, name="coarse_map")(conv(inner_in)), name="backbone")
    conv.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    return backbone


def test_nested_backbone_with_a_skip_connection_around_it():
    """Layers after the backbone may also read earlier tensors: the map is the plain nested one's."""
    k = _keras()
    L = k.layers
    inputs = k.Input((16, 16, 1), name="image")
    x = L.Rescaling(1 / 255.0, name="scale")(inputs)
    pooled = L.GlobalAveragePooling2D(name="features")(_evidence_backbone()(x))
    skipped = L.GlobalAveragePooling2D(name="skip")(x)  # bypasses the backbone
    logits = L.Dense(2, name="logits")
    model = k.Model(inputs, L.Activation("softmax")(logits(L.Concatenate()([pooled, skipped]))))
    logits.set_weights([np.array([[1.0, -1.0], [0.0, 0.0]], np.float32), np.zeros(2, np.float32)])
    plain = _evidence_model(nested=True)
    for method in CAM_METHODS:
        for corner in ("top_left", "bottom_right"):
            image = _square_image(corner=corner)
            np.testing.assert_allclose(compute_cam(model, image, 0, method, normalised=False),
                                       compute_cam(plain, image, 0, method, normalised=False), atol=1e-6)


def test_nested_backbone_in_a_sequential_model():
    k = _keras()
    logits = k.layers.Dense(2, name="logits")
    model = k.Sequential([k.Input((16, 16, 1)), k.layers.Rescaling(1 / 255.0), _evidence_backbone(),
                          k.layers.GlobalAveragePooling2D(), logits, k.layers.Activation("softmax")])
    logits.set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    assert find_target_layer(model).name == "coarse_map"
    for method in CAM_METHODS:
        cam = compute_cam(model, _square_image(corner="bottom_right"), method=method, layer_name="coarse_map")
        assert np.unravel_index(int(cam.argmax()), cam.shape) >= (12, 12)  # the evidence is hot ...
        assert cam[:8, :].max() < 0.05 and cam[:, :8].max() < 0.05  # ... the opposite half is not


def test_backbone_used_twice_is_refused():
    """Which of its two calls would the map explain? The message says what to do instead."""
    k = _keras()
    inputs = k.Input((16, 16, 1))
    backbone = _evidence_backbone()
    pool = k.layers.GlobalAveragePooling2D()
    both = k.layers.Concatenate()([pool(backbone(inputs)), pool(backbone(k.layers.Rescaling(-1.0, 255.0)(inputs)))])
    model = k.Model(inputs, k.layers.Dense(2, name="logits")(both))
    assert find_target_layer(model).name == "coarse_map"  # inside the backbone: no outer layer is 4-D
    with pytest.raises(WorkbenchError, match="'backbone' is used 2 times.*pass layer_name"):
        compute_cam(model, _square_image())


def test_gradient_model_is_built_once_per_model_and_layer():
    model = _evidence_model(nested=False)
    first, name = gradient_model(model)
    again, _ = gradient_model(model)
    other, other_name = gradient_model(model, "copy_conv")
    assert first is again and other is not first
    assert (name, other_name) == ("coarse_map", "copy_conv")


# --- errors -----------------------------------------------------------------------------------

def test_model_without_feature_map_is_refused():
    k = _keras()
    inputs = k.Input((8,))
    model = k.Model(inputs, k.layers.Dense(2, name="logits")(inputs))
    with pytest.raises(WorkbenchError, match="no convolutional"):
        find_target_layer(model)


def test_unknown_layer_name_and_non_feature_map_layer_are_refused():
    model = _evidence_model(nested=False)
    with pytest.raises(WorkbenchError, match="no layer named 'nope'"):
        compute_cam(model, _square_image(), layer_name="nope")
    with pytest.raises(WorkbenchError, match="4-D"):
        compute_cam(model, _square_image(), layer_name="logits")


def test_bad_method_class_and_shape_are_refused():
    model = _evidence_model(nested=False)
    with pytest.raises(WorkbenchError, match="unknown CAM method"):
        compute_cam(model, _square_image(), method="eigencam")
    with pytest.raises(WorkbenchError, match="out of range"):
        compute_cam(model, _square_image(), class_index=2)
    with pytest.raises(WorkbenchError, match="expects images of shape"):
        compute_cam(model, np.zeros((20, 20, 1), np.uint8))
    with pytest.raises(WorkbenchError, match="one \\(H, W, 1\\) image"):
        compute_cam(model, np.zeros((1, 16, 16, 1), np.uint8))


def test_layercam_fuses_the_last_resolutions_as_a_mean_of_normalised_maps():
    from core.inference.gradcam import multiscale_layers

    model = _evidence_model(nested=False)
    assert multiscale_layers(model, 2) == ["coarse_map", "copy_conv"]  # 4×4 then 16×16, preprocessing skipped
    image = _square_image()
    fused = compute_cam(model, image, class_index=0, method="layercam")
    parts = [compute_cam(model, image, class_index=0, method="layercam", layer_name=n)
             for n in ("coarse_map", "copy_conv")]
    expected = np.mean(parts, axis=0)
    np.testing.assert_allclose(fused, expected / expected.max(), atol=1e-6)
    assert fused[:4, :4].max() == 1.0 and fused[8:, 8:].max() == 0.0


def test_raw_maps_keep_their_scale_so_classes_can_be_compared():
    model = _evidence_model(nested=False)
    image = _square_image()
    raw = compute_cam(model, image, class_index=0, layer_name="coarse_map", normalised=False)
    dim = compute_cam(model, (image // 2).astype(np.uint8), class_index=0, layer_name="coarse_map", normalised=False)
    assert raw.max() > 1.5 * dim.max() > 0  # half the evidence, about half the raw heat


@pytest.mark.parametrize("class_index", [None, 0, 1])
def test_a_multi_layer_map_runs_the_network_once_and_matches_layer_by_layer(monkeypatch, class_index):
    """The fused pass (every layer's gradient from one tape) gives the maps the per-layer passes give."""
    import core.inference.gradcam as gradcam

    model = _evidence_model(nested=False)
    image = _square_image(corner="bottom_right")
    calls = []
    real_run = gradcam.run_gradients
    monkeypatch.setattr(gradcam, "run_gradients", lambda *a: calls.append(a) or real_run(*a))
    fused = compute_cam(model, image, class_index=class_index, method="layercam")
    assert len(calls) == 1 and len(calls[0][0].outputs) == 3  # two feature maps and the scores, one pass
    calls.clear()
    monkeypatch.setattr(gradcam, "fused_gradient_model", lambda *a: None)  # as for a nested backbone
    per_layer = compute_cam(model, image, class_index=class_index, method="layercam")
    assert len(calls) == (3 if class_index is None else 2)
    np.testing.assert_array_equal(fused, per_layer)
    assert fused[-4:, -4:].max() == (1.0 if class_index in (None, 0) else 0.0)
