"""Colour for heatmaps, applied last: a [0, 1] map becomes RGB, then is blended onto the slice.

Blending is done in float and clipped, never in uint8, where 200 + 100 silently wraps to 44
(the bug that makes the hottest region of an overlay turn dark).
"""

from __future__ import annotations

import cv2
import numpy as np

from core.errors import WorkbenchError

#: Colormap name -> OpenCV colormap id. Pages list the keys.
COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "turbo": cv2.COLORMAP_TURBO,
    "hot": cv2.COLORMAP_HOT,
}


def _check_heatmap(heatmap: np.ndarray) -> np.ndarray:
    heat = np.asarray(heatmap)
    if heat.ndim != 2:
        raise WorkbenchError(f"the heatmap must be a 2-D array, got shape {heat.shape}", "overlay")
    if heat.size == 0:
        raise WorkbenchError("the heatmap is empty", "overlay")
    heat = heat.astype(np.float32)
    if not np.all(np.isfinite(heat)):
        raise WorkbenchError("the heatmap contains NaN or infinite values", "overlay")
    if heat.min() < 0.0 or heat.max() > 1.0:
        raise WorkbenchError(
            f"the heatmap must lie in [0, 1], got values from {heat.min():.3g} to {heat.max():.3g}; "
            "normalise it first (core.inference.gradcam returns [0, 1])", "overlay")
    return heat


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A [0, 1] heatmap as a uint8 (H, W, 3) RGB picture.

    Raises:
        WorkbenchError: unknown colormap, or the heatmap is not 2-D in [0, 1].
    """
    if colormap not in COLORMAPS:
        raise WorkbenchError(f"unknown colormap '{colormap}'; choose one of {', '.join(COLORMAPS)}", "overlay")
    heat = _check_heatmap(heatmap)
    levels = np.clip(np.rint(heat * 255.0), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(levels, COLORMAPS[colormap])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise WorkbenchError(f"the image must be uint8 (0..255), got {img.dtype}", "overlay")
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=-1)
    if img.ndim == 3 and img.shape[-1] == 3:
        return img
    raise WorkbenchError(f"the image must be (H, W), (H, W, 1) or (H, W, 3), got {img.shape}", "overlay")


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Blend a coloured heatmap onto a grayscale or RGB uint8 image.

    Args:
        image: uint8 (H, W), (H, W, 1) or (H, W, 3).
        heatmap: float (h, w) in [0, 1]; resized to the image when the sizes differ.
        alpha: heatmap opacity in [0, 1] (0 = only the image, 1 = only the heatmap).
        colormap: a key of :data:`COLORMAPS`.
    Returns:
        uint8 (H, W, 3) RGB.
    Raises:
        WorkbenchError: bad alpha, colormap, image or heatmap (the message says which).
    """
    if not (isinstance(alpha, int | float) and 0.0 <= float(alpha) <= 1.0):
        raise WorkbenchError(f"alpha (the heatmap opacity) must be between 0 and 1, got {alpha}", "overlay")
    rgb = _as_rgb(image)
    heat = _check_heatmap(heatmap)
    h, w = rgb.shape[:2]
    if heat.shape != (h, w):
        heat = np.clip(cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    colour = colorize(heat, colormap).astype(np.float32)
    blended = (1.0 - float(alpha)) * rgb.astype(np.float32) + float(alpha) * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
