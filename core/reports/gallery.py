"""Thumbnails of evaluated images with the CAM of their predicted class (the Evaluate page's galleries)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.data.imageio import decode_image
from core.data.preprocess import prepare_framed, resize_square
from core.errors import WorkbenchError
from core.inference.gradcam import compute_cam
from core.inference.overlay import overlay
from core.models.runs import Run


def gallery_images(run: Run, model, root: str | Path, rows: pd.DataFrame, cam_method: str | None = "gradcam",
                   display_size: int = 160, alpha: float = 0.4) -> list[np.ndarray]:
    """RGB uint8 images for prediction rows, each overlaid with the CAM of its predicted class.

    The CAM is computed on the model's own input (the card's image size) and drawn on a larger
    copy of the same slice so small models still give a readable picture. A file that can no
    longer be read becomes a grey square rather than an error.
    """
    index = {c: i for i, c in enumerate(run.class_names)}
    out = []
    for row in rows.itertuples():
        try:
            image = decode_image(Path(root) / str(row.file))
        except WorkbenchError:
            out.append(np.full((display_size, display_size, 3), 128, np.uint8))
            continue
        ensemble = run.card.is_ensemble  # ``model`` is then its EnsemblePredictor (members' maps averaged)
        prepared = model.prepare_framed(image) if ensemble and cam_method else \
            prepare_framed(image, run.image_size, run.preprocessing)
        # Show the original intensities of the part the model saw, at a readable size.
        shown = resize_square(prepared.framing.crop(image.pixels), max(display_size, run.image_size))[..., 0]
        if cam_method is None:
            out.append(np.repeat(shown[..., None], 3, axis=-1))
            continue
        heat = model.explain_for(image, prepared, index[row.predicted], cam_method) if ensemble else \
            compute_cam(model, prepared.pixels, index[row.predicted], cam_method)
        out.append(overlay(shown, heat, alpha))
    return out
