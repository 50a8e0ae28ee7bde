"""The shortcut check: how well do a few global image statistics alone predict the class?

No network and no anatomy: only brightness percentiles and spread inside the head, how much
of the frame is background, how much of it the head's box fills and that box's shape. When
these predict the class far above chance, the classes differ in *source style* (collection,
scanner, export), and a network can score well by learning that style instead of the tumour
(Geirhos et al. 2020, "Shortcut learning in deep neural networks"). On the Kaggle brain-tumour
data they do: the classes come from different collections.

The figure is cross-validated (5 folds); near-duplicate groups stay in one fold when the scan
found them, so a copied slice cannot carry its style across.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

HEAD_LEVEL = 20  # pixel value (of 255) above which a pixel counts as head, not background
FOLDS = 5
MIN_PER_CLASS = 2 * FOLDS  # fewer images in a class and a cross-validated figure means little
STAT_SIZE = 128  # statistics are computed on the whole frame at this side

#: Column -> plain-language name, in the order the chart shows them.
STATISTICS: dict[str, str] = {
    "p10": "Dark head tissue (10th percentile)",
    "p50": "Typical head brightness (median)",
    "p90": "Bright head tissue (90th percentile)",
    "spread": "Contrast inside the head (standard deviation)",
    "background": "Share of the frame that is background",
    "box_fill": "Share of the frame the head's box fills",
    "aspect": "Head box width / height",
}


#: File-level signals (issue 24): how a file was stored, not what it shows. On the Kaggle data colour
#: mode alone nearly separates No tumour (1,564 RGB / 27 grayscale) from glioma (121 / 1,200).
FILE_STATISTICS: dict[str, str] = {
    "rgb": "Stored as a colour (RGB) file",
    "file_kb": "File size (kB)",
    "width": "Image width (pixels)",
    "height": "Image height (pixels)",
    "jpeg_quality": "JPEG quality (estimated; 0 = not a JPEG)",
}
#: The IJG standard luminance table (quality 50), to estimate a JPEG's quality from its own table.
_STD_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                      14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                      92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)


def jpeg_quality(path) -> float:
    """The IJG quality (1-100) a JPEG was saved with, estimated from its luminance table; 0 for other files.

    Reads the header only (no pixel decoding).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            tables = getattr(img, "quantization", None)
            if img.format != "JPEG" or not tables:
                return 0.0
            luma = np.asarray(tables[min(tables)], dtype=np.float64)
    except Exception:  # noqa: BLE001 - a file the scan could read but whose header is odd: no figure
        return 0.0
    scale = 100.0 * luma.mean() / _STD_LUMA.mean()
    quality = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return float(np.clip(round(quality), 1, 100))


def file_statistics(paths: list, modes: list[str], widths, heights) -> pd.DataFrame:
    """The :data:`FILE_STATISTICS` of each file, one row each (sizes from the disk, quality from the header)."""
    import os

    rows = []
    for path, mode, w, h in zip(paths, modes, widths, heights):
        try:
            kb = os.stat(path).st_size / 1024
        except OSError:
            kb = 0.0
        rows.append((float(str(mode) not in ("L", "I", "I;16", "F", "1", "MONOCHROME1", "MONOCHROME2")), kb,
                     float(w), float(h), jpeg_quality(path)))
    return pd.DataFrame(rows, columns=list(FILE_STATISTICS), dtype=np.float64)


def image_statistics(images: np.ndarray) -> pd.DataFrame:
    """The global statistics of (N, S, S, 1) or (N, S, S) uint8 whole-frame images, one row each."""
    x = np.asarray(images)
    if x.ndim == 4:
        x = x[..., 0]
    rows = []
    for img in x:
        head = img > HEAD_LEVEL
        values = img[head]
        if values.size:
            p10, p50, p90 = np.percentile(values, [10, 50, 90])
            ys, xs = np.nonzero(head)
            bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            rows.append((p10, p50, p90, float(values.std()), 1 - values.size / img.size,
                         bh * bw / img.size, bw / bh))
        else:
            rows.append((0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0))
    return pd.DataFrame(rows, columns=list(STATISTICS), dtype=np.float64)


@dataclass
class ShortcutResult:
    """What the check found; ``accuracy`` is None when the data are too few to say."""

    accuracy: float | None  # cross-validated accuracy of the statistics-only classifier
    chance: float  # accuracy of always answering the most common class
    n_images: int
    per_class: pd.DataFrame  # label, statistic (plain name), key, mean
    grouped: bool  # near-duplicate groups were kept within one fold
    reason: str | None = None  # why no figure was computed
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    file_accuracy: float | None = None  # the same check on the file-level signals alone (None: not given)

    @property
    def verdict(self) -> str:
        """One plain-language paragraph for instructors."""
        if self.accuracy is None:
            return f"No figure: {self.reason}"
        acc, chance = self.accuracy, self.chance
        what = ("Brightness, contrast, framing and how the file was stored (colour mode, file size, image size, "
                "JPEG quality)" if self.file_accuracy is not None else "Brightness, contrast and framing")
        lead = (f"{what} alone — no network, no anatomy — predict the class of "
                f"{acc:.0%} of these images (always guessing the most common class: {chance:.0%}).")
        if self.file_accuracy is not None:
            lead += (f" The file-level signals by themselves already predict {self.file_accuracy:.0%}: a model "
                     "never sees them directly, but colour mode and JPEG compression leave traces in the pixels.")
        if acc >= chance + 0.30:
            return lead + (" The classes differ strongly in image style, so a model can score well by "
                           "recognising which collection or scanner an image came from rather than the tumour. "
                           "Check a model on images from another source, or with the style-shift test on the "
                           "Evaluate page, before trusting its accuracy.")
        if acc >= chance + 0.10:
            return lead + (" The classes differ somewhat in image style; a model may partly learn that. "
                           "The style-shift test on the Evaluate page shows how much it relies on it.")
        return lead + " Image style carries little information about the class here: good."


def shortcut_check(images: np.ndarray, labels: list[str] | np.ndarray, groups: list | np.ndarray | None = None,
                   seed: int = 0, files: pd.DataFrame | None = None) -> ShortcutResult:
    """Cross-validated accuracy of a gradient-boosting classifier on :func:`image_statistics`.

    Args:
        images: (N, S, S[, 1]) uint8 whole-frame images.
        labels: the class name of each image.
        groups: near-duplicate group of each image (None: every image its own group).
        seed: fold assignment and classifier seed.
        files: :func:`file_statistics` of the same images (None: pixel statistics only).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    y = np.asarray(labels).astype(str)
    stats = image_statistics(images)
    if files is not None:
        stats = pd.concat([stats, files.reset_index(drop=True)], axis=1)
    names = {**STATISTICS, **FILE_STATISTICS}
    per_class = (stats.assign(label=y).groupby("label").mean().reset_index()
                 .melt(id_vars="label", var_name="key", value_name="mean"))
    per_class["statistic"] = per_class["key"].map(names)
    per_class = per_class[["label", "statistic", "key", "mean"]]
    classes, counts = np.unique(y, return_counts=True)
    chance = float(counts.max() / counts.sum()) if len(y) else 0.0
    base = dict(chance=chance, n_images=len(y), per_class=per_class, grouped=groups is not None)
    if len(classes) < 2:
        return ShortcutResult(None, reason="the dataset has fewer than two classes.", **base)
    if counts.min() < MIN_PER_CLASS:
        small = ", ".join(f"{c} ({n})" for c, n in zip(classes, counts) if n < MIN_PER_CLASS)
        return ShortcutResult(None, reason=f"too few images to cross-validate: every class needs at least "
                                           f"{MIN_PER_CLASS}, and {small} has fewer.", **base)
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
    # One OpenMP thread: on a busy 2-core server (a training running beside it) the default
    # thread pool spin-waits and the same fit took 268 s instead of 12 s.
    def predicted(columns: pd.DataFrame) -> np.ndarray:
        with threadpool_limits(1):
            if groups is not None:
                cv = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
                return cross_val_predict(clf, columns.to_numpy(), y, groups=np.asarray(groups), cv=cv)
            cv = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
            return cross_val_predict(clf, columns.to_numpy(), y, cv=cv)

    pred = predicted(stats)
    file_accuracy = float((predicted(files) == y).mean()) if files is not None else None
    cm = confusion_matrix(y, pred, labels=classes)
    confusion = {str(t): {str(p): int(v) for p, v in zip(classes, row)} for t, row in zip(classes, cm)}
    return ShortcutResult(float((pred == y).mean()), confusion=confusion, file_accuracy=file_accuracy, **base)


def dataset_shortcut(ds, report, progress=None, seed: int = 0) -> ShortcutResult:
    """:func:`shortcut_check` on a scanned dataset's readable images (whole frames, cached on disk)."""
    from core.data.image_cache import cached_images
    from core.data.preprocess import WHOLE_FRAME_ID

    files = report.readable
    paths = [ds.abspath(p) for p in files["path"]]
    images = cached_images(paths, STAT_SIZE, ds.fingerprint, progress, preprocessing=WHOLE_FRAME_ID)
    groups = None
    if "near_group" in files.columns:
        near = files["near_group"].to_numpy(np.int64)
        # -1 marks "no near-duplicate": each such image is a group of its own.
        groups = np.where(near >= 0, near, near.max(initial=0) + 1 + np.arange(len(near)))
    signals = file_statistics(paths, files["mode"].tolist(), files["width"], files["height"])
    return shortcut_check(images, files["label"].to_numpy(), groups, seed, files=signals)
