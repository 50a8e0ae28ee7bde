"""Class activation maps: which regions of the slice drove the model's score for a class.

The pipeline lives in :class:`BaseCAM` (find the layer, build a gradient model once, take the
gradient of the class score with respect to the layer's feature map, weight the channels,
ReLU, resize, normalise). A method only decides how channel weights come from the
gradients, as in pytorch-grad-cam's ``base_cam.py``. The result is a float array in [0, 1];
colour and overlay are :mod:`core.inference.overlay`'s business.

References: Selvaraju et al. 2017 (Grad-CAM); Chattopadhay et al. 2018 (Grad-CAM++).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from core.errors import WorkbenchError
from core.inference.cam_model import (
    SCORE_LAYER,
    as_batch,
    find_target_layer,
    fused_gradient_model,
    gradient_model,
    multiscale_layers,
    traced_gradients,
)
from core.options import Registry

__all__ = ["CAM_METHODS", "DEFAULT_CAM_METHOD", "CamMethod", "SCORE_LAYER", "BaseCAM", "compute_cam",
           "find_target_layer", "gradient_model", "multiscale_layers", "normalise"]


class BaseCAM:
    """The Grad-CAM pipeline; subclasses override :meth:`channel_weights` only.

    Args:
        model: a Keras classifier (with a ``logits`` layer if possible).
        layer_name: the feature-map layer to explain; None = the last one (nested models too).
    """

    def __init__(self, model: Any, layer_name: str | None = None) -> None:
        self.model = model
        self.grad_model, self.layer_name = gradient_model(model, layer_name)

    def channel_weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """(h, w, c) activations and gradients -> (c,) channel weights."""
        raise NotImplementedError

    def activations_and_grads(self, image: np.ndarray, class_index: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        """Feature map, d(score)/d(feature map), both (h, w, c) float64, and the class used."""
        x = as_batch(image, self.model.inputs[0].shape)
        feats, grads, idx = run_gradients(self.grad_model, x, _checked_class(self.grad_model, class_index))
        return feats[0], grads[0], idx

    def cam_map(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """(h, w, c) activations and gradients -> (h, w) map before ReLU; channel-weighted by default."""
        return activations @ self.channel_weights(activations, grads)

    def raw(self, image: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """The unnormalised map at the input's size (float32, ≥ 0): comparable between classes."""
        acts, grads, _ = self.activations_and_grads(image, class_index)
        return self.raw_from(acts, grads, np.asarray(image).shape[:2])

    def raw_from(self, activations: np.ndarray, grads: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """:meth:`raw` from a feature map and its gradient already computed; ``size`` is (height, width)."""
        cam = np.maximum(self.cam_map(activations, grads), 0.0)  # ReLU: keep only evidence *for* the class
        return cv2.resize(cam.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)

    def __call__(self, image: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """The map for one image.

        Args:
            image: (S, S, 1) uint8 or float 0..255, as made by :func:`core.data.preprocess.prepare`.
            class_index: the class to explain; None = the predicted class.
        Returns:
            float32 (S, S) in [0, 1]; all zeros when nothing supports the class.
        Raises:
            WorkbenchError: wrong image shape or class index.
        """
        return normalise(self.raw(image, class_index))


def _checked_class(grad_model: Any, class_index: int | None) -> int | None:
    """``class_index`` when the gradient model has that many classes (its last output is the scores)."""
    n = int(grad_model.outputs[-1].shape[-1])
    if class_index is not None and not 0 <= int(class_index) < n:
        raise WorkbenchError(f"class index {class_index} is out of range (the model has {n} classes)", "Grad-CAM")
    return class_index


def run_gradients(grad_model: Any, batch: np.ndarray, class_index: int | None
                  ) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Every feature map of ``grad_model`` and its gradient, (h, w, c) float64, and the class used."""
    from core.lazy_tensorflow import tf as load_tf

    tf = load_tf()
    run = traced_gradients(grad_model, batch.shape)
    feats, grads, idx = run(tf.constant(batch), tf.constant(-1 if class_index is None else int(class_index), tf.int32))
    as_array = lambda t: np.nan_to_num(np.asarray(t, dtype=np.float64)[0])  # noqa: E731
    return [as_array(f) for f in feats], [as_array(g) for g in grads], int(idx)


def normalise(cam: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] by its maximum (all zeros when it has no positive value)."""
    top = float(cam.max()) if cam.size else 0.0
    if not np.isfinite(top) or top <= 1e-12:
        return np.zeros(cam.shape, dtype=np.float32)
    return np.clip(cam / top, 0.0, 1.0).astype(np.float32)


class GradCAM(BaseCAM):
    """Grad-CAM: a channel's weight is its gradient averaged over the feature map."""

    def channel_weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return grads.mean(axis=(0, 1))


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++: positive gradients weighted per position, which separates several instances."""

    def channel_weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        g2 = grads**2
        g3 = g2 * grads
        sum_acts = activations.sum(axis=(0, 1))
        alpha = g2 / (2 * g2 + sum_acts[None, None, :] * g3 + 1e-7)
        alpha = np.where(grads != 0, alpha, 0.0)
        return (np.maximum(grads, 0.0) * alpha).sum(axis=(0, 1))


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al. 2021): each position weighted by its own positive gradient.

    Position-wise weights keep fine detail in earlier, higher-resolution layers, where one
    weight per channel (Grad-CAM) blurs; the paper fuses several layers, as :func:`compute_cam`
    does for this method by default.
    """

    def cam_map(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return (np.maximum(grads, 0.0) * activations).sum(axis=-1)


@dataclass(frozen=True)
class CamMethod:
    """One CAM method: its name for people, and how :func:`compute_cam` runs it."""

    key: str
    title: str
    help: str
    cam: type[BaseCAM]
    layers: int = 1  # how many of the last resolutions it fuses when no layer is named


CAM_METHODS: Registry[CamMethod] = Registry("CAM method", [
    CamMethod("gradcam", "Grad-CAM", "One weight per channel (the mean gradient), last convolution.", GradCAM),
    CamMethod("gradcam++", "Grad-CAM++", "Positive gradients weighted per position, last convolution.",
              GradCAMPlusPlus),
    CamMethod("layercam", "LayerCAM", "Each position weighted by its own positive gradient, fused over the last "
              "two resolutions.", LayerCAM, layers=2),
])
#: What Predict & Explain, Evaluate and the CLI use unless told otherwise: chosen by the pointing
#: game on the default model's validation images with a tumour box (python -m bench.cam_choice:
#: LayerCAM over the last two resolutions 72.8 %, Grad-CAM on the last layer 34.7 %, whose coarse
#: 8×8 map put pituitary peaks mid-brain; see bench/README.md).
DEFAULT_CAM_METHOD = "layercam"


def compute_cam(model: Any, image: np.ndarray, class_index: int | None = None, method: str = "gradcam",
                layer_name: str | list[str] | tuple[str, ...] | None = None, normalised: bool = True) -> np.ndarray:
    """Class activation map of one prepared image.

    Args:
        model: the Keras classifier.
        image: (S, S, 1) uint8 or float 0..255 (not modified).
        class_index: class to explain; None = the predicted class.
        method: a key of :data:`CAM_METHODS`.
        layer_name: feature-map layer, or several to fuse (mean of their maps); None = the last
            one (searched inside nested models), or for multi-layer methods the last layer at
            each of the last resolutions (:func:`multiscale_layers`).
        normalised: scale to [0, 1] by the map's maximum; False keeps the raw scale, so maps of
            different classes of one image can be compared.
    Returns:
        float32 (S, S) heatmap, in [0, 1] when normalised.
    Raises:
        WorkbenchError: unknown method, no usable layer, wrong shape or class index.
    """
    if method not in CAM_METHODS:
        raise WorkbenchError(f"unknown CAM method '{method}'; choose one of {', '.join(CAM_METHODS)}", "Grad-CAM")
    spec = CAM_METHODS[method]
    if layer_name is None and spec.layers > 1:
        layer_name = multiscale_layers(model, spec.layers) or None
    if isinstance(layer_name, list | tuple):
        cams = [spec.cam(model, name) for name in layer_name]  # checks every name first
        fused = fused_gradient_model(model, tuple(layer_name))
        size = np.asarray(image).shape[:2]
        if fused is not None:  # one pass gives every layer's gradient, for one class: the predicted one
            feats, grads, _ = run_gradients(fused, as_batch(image, model.inputs[0].shape),
                                            _checked_class(fused, class_index))
            raws = [cam.raw_from(a, g, size) for cam, a, g in zip(cams, feats, grads)]
        else:  # a nested backbone: layer by layer, the class fixed by the first pass
            if class_index is None:
                class_index = cams[0].activations_and_grads(image, None)[2]
            raws = [cam.raw(image, class_index) for cam in cams]
        # Each layer's map scaled to its own maximum first, so the coarse layer cannot drown the fine one.
        maps = [normalise(raw) for raw in raws]
        fused = np.mean(maps, axis=0).astype(np.float32)
        return normalise(fused) if normalised else fused
    cam = spec.cam(model, layer_name)
    return cam(image, class_index) if normalised else cam.raw(image, class_index)
