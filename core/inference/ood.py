"""'Probably not a brain MRI': out-of-distribution scores fitted on the training data.

Two model-based scores (Mahalanobis distance of the pooled features to the nearest class
mean with a shared, shrunk covariance — Lee et al. 2018; and the energy score −logsumexp of
the logits — Liu et al. 2020) plus cheap image checks that need no model at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.imageio import DecodedImage

COLOUR_LIMIT = 12.0  # Hasler–Süsstrunk colourfulness; MRI stored as RGB scores < 2
COLOUR_SHARE_LIMIT = 0.15  # share of truly coloured pixels; grey Kaggle JPEGs with chroma noise: <= 5 %
BLANK_STD = 4.0  # intensity standard deviation below which an image carries no structure
MAX_ASPECT = 2.0  # MRI slices are square or close to it


@dataclass
class OODModel:
    means: np.ndarray  # (k, d) class means of training features
    precision: np.ndarray  # (d, d) inverse of the shared covariance
    maha_threshold: float  # 99th percentile on validation data
    energy_threshold: float

    def mahalanobis(self, features: np.ndarray) -> np.ndarray:
        """Distance to the nearest class mean, one value per row."""
        f = np.asarray(features, dtype=np.float64)
        d = f[:, None, :] - self.means[None, :, :]
        m = np.einsum("nkd,de,nke->nk", d, self.precision, d)
        return np.sqrt(np.maximum(m.min(axis=1), 0.0))

    def save(self, path: Path) -> None:
        np.savez_compressed(path, means=self.means, precision=self.precision,
                            maha_threshold=self.maha_threshold, energy_threshold=self.energy_threshold)

    @classmethod
    def load(cls, path: Path) -> OODModel:
        with np.load(path) as z:
            return cls(z["means"], z["precision"], float(z["maha_threshold"]), float(z["energy_threshold"]))


def energy(logits: np.ndarray) -> np.ndarray:
    """Energy score −logsumexp(logits): higher means less like the training data."""
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return -(m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))


def fit_ood(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
            val_logits: np.ndarray, quantile: float = 0.99) -> OODModel:
    """Fit class means and a shrunk shared covariance; thresholds from validation quantiles."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(train_features, dtype=np.float64)
    labels = np.asarray(train_labels)
    classes = np.unique(labels)
    means = np.stack([f[labels == c].mean(axis=0) for c in classes])
    centred = f - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf().fit(centred).precision_
    model = OODModel(means, precision, 0.0, 0.0)
    model.maha_threshold = float(np.quantile(model.mahalanobis(val_features), quantile))
    model.energy_threshold = float(np.quantile(energy(val_logits), quantile))
    return model


def image_checks(image: DecodedImage) -> list[str]:
    """Warnings from the image alone: colour photo, blank, extreme aspect ratio."""
    out = []
    # Both: colourful overall, and colour on more than a few pixels (grey slices stored as RGB JPEGs
    # show chroma noise at edges that lifts the first measure alone; issue 24 found six such Kaggle slices).
    if image.colourfulness > COLOUR_LIMIT and (image.colour_share is None or image.colour_share > COLOUR_SHARE_LIMIT):
        out.append("This is a colour image; MRI slices are grayscale.")
    if float(image.pixels.std()) < BLANK_STD:
        out.append("The image is (nearly) blank: it has almost no contrast.")
    w, h = image.size
    if max(w, h) / max(1, min(w, h)) > MAX_ASPECT:
        out.append(f"Unusual shape ({w}×{h}): MRI slices are close to square.")
    return out
