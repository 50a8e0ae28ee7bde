"""Every registered architecture builds, speaks the shared interface, and scales inside itself.

Transfer backbones are built with random weights (nothing is downloaded) at 32-64 px.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import WorkbenchError
from core.models.architectures import ARCHITECTURES, backbone_layers, build_model, get_arch

pytestmark = pytest.mark.slow
N_CLASSES = 4


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def built(request):
    """(key, size, model) for every registered architecture, built once per module."""
    size = 32 if request.param == "custom_cnn" else 48
    return request.param, size, build_model(request.param, N_CLASSES, size, "none", width=0.25)


def test_outputs_are_softmax_probabilities(built):
    _, size, model = built
    assert model.input_shape == (None, size, size, 1)
    assert model.output_shape == (None, N_CLASSES)
    x = np.random.default_rng(0).integers(0, 256, (3, size, size, 1)).astype(np.float32)  # raw 0..255
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (3, N_CLASSES) and np.isfinite(probs).all() and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_named_layers_for_features_logits_and_probabilities(built):
    _, _, model = built
    features, logits, probs = (model.get_layer(n) for n in ("features", "logits", "probs"))
    assert len(features.output.shape) == 2  # pooled embedding (used by the OOD score)
    assert logits.output.shape[-1] == N_CLASSES
    assert model.layers[-1] is probs and probs.dtype_policy.compute_dtype == "float32"


def test_transfer_backbones_sit_flat_in_the_model(built):
    key, _, model = built
    layers = backbone_layers(model)
    names = {layer.name for layer in layers}
    assert not names & {"image", "features", "head_dropout", "logits", "probs"}
    if ARCHITECTURES[key].transfer:
        # Grad-CAM needs the last convolution in the outer graph, not inside a nested Model.
        assert len(layers) > 20 and not any(hasattr(layer, "layers") for layer in layers)
        assert any("conv" in type(layer).__name__.lower() for layer in layers)


@pytest.mark.parametrize("key", sorted(ARCHITECTURES))
def test_specs_are_consistent(key):
    spec = ARCHITECTURES[key]
    assert spec.key == key and spec.title and spec.help
    assert 32 <= spec.default_image_size <= 512
    if spec.transfer:
        assert spec.weights_file and spec.weights_md5 and spec.weights_mb
    else:
        assert spec.weights_file is None


def test_custom_cnn_width_scales_the_parameter_count():
    small = build_model("custom_cnn", N_CLASSES, 32, "none", width=0.25).count_params()
    large = build_model("custom_cnn", N_CLASSES, 32, "none", width=1.0).count_params()
    assert large > 8 * small


def test_unknown_architecture_is_a_workbench_error():
    with pytest.raises(WorkbenchError, match="unknown architecture 'vgg99'.*custom_cnn"):
        get_arch("vgg99")
