"""The one preprocessing path shared by training, evaluation, calibration and prediction.

A decoded slice becomes a (S, S, 1) uint8 array here; everything after that (scaling to the
range a network expects, channel replication for ImageNet backbones) lives *inside* the Keras
model. Which recipe a model was trained with is recorded in its card (``preprocessing.id``),
and every caller passes that id, so a model is always fed the way it was trained.

Recipes sit in a small registry. ``head-v2`` exists because the Kaggle classes come from
different collections whose framing and brightness differ by class: a network fed the raw
frame learns part of that "source style". The recipe removes what should not matter:

1. **Find the head** (:func:`find_head`): Otsu threshold of a blurred, downscaled copy, keep
   the large connected components (text labels and specks are small), their convex hull is
   the head mask and its bounding box the head box.
2. **Frame it**: a square crop around the box with a 6 % margin, resized to S×S, so the head
   fills the frame the same way whatever the scanner's field of view.
3. **Standardise intensity inside the head**: rank-based histogram equalisation over the head
   mask, background set to 0. Any monotonic change of brightness, contrast or gamma gives
   (nearly) the same input, as does matching the histogram to another image's.

An image with no detectable head (blank, text screenshot) is kept whole, equalised over the
frame, and reported as ``head_found=False`` so prediction can warn about it.

``frame-eq-v1`` does step 3 without step 2: the scanner's framing stays (a second view of the
slice for an ensemble's members) while the brightness style goes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.data.imageio import DecodedImage, decode_image
from core.data.shared_work import per_image
from core.errors import WorkbenchError
from core.options import Registry

#: The whole-frame recipe: live (a choice on the Train page), and what cards written before the
#: recipe registry used.
WHOLE_FRAME_ID = "gray-uint8-resize-area-v1"
HEAD_ID = "head-v2"
#: The whole frame with the head's intensities standardised: keeps the scanner's framing (a different
#: view from the head crop, for ensembles) without the brightness style that differs by class.
FRAME_EQ_ID = "frame-eq-v1"
#: The recipe new models are trained with.
PREPROCESSING_ID = HEAD_ID

WORK_SIDE = 256  # head detection runs on a copy this size: fast, and precise enough for a box
MARGIN = 0.06  # crop margin around the head box, fraction of the box's longer side
MIN_HEAD_AREA = 0.03  # a head covers at least this share of the frame; less is "no head"
MIN_PART = 0.08  # components at least this share of the largest one belong to the head


@dataclass(frozen=True)
class Framing:
    """Where the model's input came from in the original image, in normalised coordinates.

    ``(x0, y0, x1, y1)`` may reach outside [0, 1] when the square crop was padded. The
    identity framing (0, 0, 1, 1) means the whole frame was used.
    """

    x0: float = 0.0
    y0: float = 0.0
    x1: float = 1.0
    y1: float = 1.0
    head_found: bool = True

    def window(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The framing as a pixel window (left, top, right, bottom) of an (h, w) image."""
        return (int(round(self.x0 * w)), int(round(self.y0 * h)), int(round(self.x1 * w)), int(round(self.y1 * h)))

    def crop(self, pixels: np.ndarray) -> np.ndarray:
        """The part of the original (H, W) image the model saw, zero-padded, original intensities."""
        h, w = pixels.shape[:2]
        return _crop_padded(pixels, self.window(h, w))

    def place(self, heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A map over the model input placed back onto an original image of ``shape`` (H, W).

        Outside the framed window the map is 0 (the model did not see it).
        """
        h, w = shape
        left, top, right, bottom = self.window(h, w)
        if right - left < 1 or bottom - top < 1:
            return np.zeros((h, w), np.float32)
        big = cv2.resize(np.asarray(heat, np.float32), (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
        out = np.zeros((h, w), np.float32)
        y0, x0 = max(0, top), max(0, left)
        y1, x1 = min(h, bottom), min(w, right)
        if y1 > y0 and x1 > x0:
            out[y0:y1, x0:x1] = big[y0 - top:y1 - top, x0 - left:x1 - left]
        return out

    def box_to_input(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """A normalised box of the original image in the model input's normalised coordinates."""
        w, h = self.x1 - self.x0, self.y1 - self.y0
        return ((box[0] - self.x0) / w, (box[1] - self.y0) / h, (box[2] - self.x0) / w, (box[3] - self.y0) / h)


@dataclass(frozen=True)
class Prepared:
    """A model input and where it came from."""

    pixels: np.ndarray  # (S, S, 1) uint8
    framing: Framing


@dataclass(frozen=True)
class Recipe:
    """One registered preprocessing recipe."""

    key: str  # recorded in the model card as ``preprocessing.id``
    title: str
    help: str  # what it does, recorded in the model card as ``preprocessing.description``
    apply: Callable[[np.ndarray, int], Prepared]  # (H, W) uint8, size -> Prepared


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D uint8 image to (size, size, 1) without keeping aspect.

    INTER_AREA when shrinking (anti-aliased), INTER_LINEAR when enlarging.
    """
    h, w = pixels.shape[:2]
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    out = cv2.resize(pixels, (size, size), interpolation=interp)
    return out[..., None]


def _legacy(pixels: np.ndarray, size: int) -> Prepared:
    return Prepared(resize_square(pixels, size), Framing())


@per_image
def find_head(pixels: np.ndarray) -> tuple[tuple[float, float, float, float], np.ndarray] | None:
    """The head's normalised bounding box and its mask at :data:`WORK_SIDE` scale, or None.

    Args:
        pixels: (H, W) uint8 slice.
    Returns:
        ((x0, y0, x1, y1) in [0, 1], bool mask (h, w) of the downscaled image), or None when no
        structure large enough to be a head stands out from the background.
    """
    h, w = pixels.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1 else pixels
    blur = cv2.GaussianBlur(small, (0, 0), 2.0)
    if int(blur.max()) - int(blur.min()) < 8:
        return None  # flat: nothing to find
    otsu, _ = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Half of Otsu keeps dim scalp and skull inside the head; the floor keeps noisy background out.
    threshold = max(12.0, 0.5 * float(otsu))
    binary = (blur > threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.max() < MIN_HEAD_AREA * binary.size:
        return None
    keep = 1 + np.flatnonzero(areas >= MIN_PART * areas.max())
    points = np.column_stack(np.nonzero(np.isin(labels, keep)))[:, ::-1].astype(np.int32)  # (x, y)
    hull = cv2.convexHull(points)
    mask = np.zeros(binary.shape, np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    x, y, bw, bh = cv2.boundingRect(hull)
    sh, sw = binary.shape
    return (x / sw, y / sh, (x + bw) / sw, (y + bh) / sh), mask.astype(bool)


def square_crop(box: tuple[float, float, float, float], h: int, w: int) -> tuple[int, int, int, int]:
    """A square pixel window (may extend past the image) around a normalised box, with margin.

    Args:
        box: (x0, y0, x1, y1) as fractions of the image's width and height.
        h, w: the image's height and width in pixels.

    Returns:
        (left, top, right, bottom) in pixels; shared by head framing and the reframing shift.
    """
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    side = max(x1 - x0, y1 - y0) * (1 + 2 * MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(8.0, side)
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    return left, top, left + s, top + s


def _crop_padded(img: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """``img[top:bottom, left:right]``, zero-padded where the window leaves the image."""
    left, top, right, bottom = window
    h, w = img.shape[:2]
    pad = max(0, -left, -top, right - w, bottom - h)
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    return img[top + pad:bottom + pad, left + pad:right + pad]


def equalise_inside(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rank-based histogram equalisation of the masked pixels; 0 outside the mask.

    Each value becomes 255 × its mid-rank among the masked pixels, so the output depends only
    on the *order* of intensities inside the head: brightness, contrast, gamma and histogram
    matching (all monotonic) leave it (nearly) unchanged.
    """
    out = np.zeros_like(pixels, dtype=np.uint8)
    values = pixels[mask]
    if values.size == 0:
        return out
    counts = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    below = np.cumsum(counts) - counts
    table = np.clip(np.rint(255.0 * (below + 0.5 * counts) / values.size), 1, 255).astype(np.uint8)
    out[mask] = table[values]
    return out


def _head_v2(pixels: np.ndarray, size: int) -> Prepared:
    h, w = pixels.shape[:2]
    found = find_head(pixels)
    if found is None:
        # No head: keep the whole frame so the model still sees something, and say so.
        img = resize_square(pixels, size)[..., 0]
        return Prepared(equalise_inside(img, np.ones_like(img, bool))[..., None], Framing(head_found=False))
    box, mask_small = found
    window = square_crop(box, h, w)
    crop = _crop_padded(pixels, window)
    mask_full = cv2.resize(mask_small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    mask_crop = _crop_padded(mask_full, window)
    img = resize_square(crop, size)[..., 0]
    mask = cv2.resize(mask_crop, (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    left, top, right, bottom = window
    framing = Framing(left / w, top / h, right / w, bottom / h, head_found=True)
    return Prepared(equalise_inside(img, mask)[..., None], framing)


def _frame_eq(pixels: np.ndarray, size: int) -> Prepared:
    img = resize_square(pixels, size)[..., 0]
    found = find_head(pixels)
    if found is None:
        return Prepared(equalise_inside(img, np.ones_like(img, bool))[..., None], Framing(head_found=False))
    mask = cv2.resize(found[1].astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    return Prepared(equalise_inside(img, mask)[..., None], Framing())


RECIPES: Registry[Recipe] = Registry("preprocessing", (
    Recipe(WHOLE_FRAME_ID, "Whole frame",
           "decode to 8-bit grayscale (core.data.imageio), resize to image_size×image_size (INTER_AREA when "
           "shrinking), feed 0..255 floats; scaling is inside the model", _legacy),
    Recipe(HEAD_ID, "Head crop + intensity standardisation",
           "decode to 8-bit grayscale (core.data.imageio); find the head (Otsu on a blurred copy, large "
           "components, convex hull); square crop around it with a 6 % margin, resized to "
           "image_size×image_size; rank-based histogram equalisation inside the head, background 0; feed "
           "0..255 floats; scaling is inside the model", _head_v2),
    Recipe(FRAME_EQ_ID, "Whole frame + intensity standardisation",
           "decode to 8-bit grayscale (core.data.imageio); resize the whole frame to image_size×image_size "
           "(INTER_AREA when shrinking); find the head (Otsu on a blurred copy, large components, convex hull) "
           "and apply rank-based histogram equalisation inside it, background 0; feed 0..255 floats; scaling is "
           "inside the model", _frame_eq),
))


def get_recipe(preprocessing: str) -> Recipe:
    """The registered recipe ``preprocessing``; a clear error for an unknown id."""
    if preprocessing not in RECIPES:
        raise WorkbenchError(f"this workbench does not know the preprocessing '{preprocessing}' the model was "
                             f"trained with (it knows {', '.join(RECIPES)}); update the workbench",
                             "preprocessing")
    return RECIPES[preprocessing]


def prepare_framed(image: DecodedImage | np.ndarray, size: int, preprocessing: str) -> Prepared:
    """Model input for a decoded image (or a 2-D uint8 array), with its framing."""
    pixels = image.pixels if isinstance(image, DecodedImage) else np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    return get_recipe(preprocessing).apply(pixels, size)


def prepare(image: DecodedImage | np.ndarray, size: int, preprocessing: str) -> np.ndarray:
    """Model input for an already decoded image: (size, size, 1) uint8."""
    return prepare_framed(image, size, preprocessing).pixels


def load_for_model(source: str | Path | bytes, size: int, name: str | None = None, *,
                   preprocessing: str) -> np.ndarray:
    """Decode a file or bytes and prepare it: (size, size, 1) uint8. Raises WorkbenchError."""
    return prepare(decode_image(source, name), size, preprocessing)


def prepare_batch(images: np.ndarray, size: int, preprocessing: str) -> np.ndarray:
    """Apply a recipe to each image of an (N, H, W, 1) uint8 batch: (N, size, size, 1) uint8."""
    recipe = get_recipe(preprocessing)
    out = np.zeros((len(images), size, size, 1), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = recipe.apply(np.asarray(img)[..., 0], size).pixels
    return out


def load_many(paths: Sequence[str | Path], size: int, progress: Callable[[int, int], None] | None = None,
              workers: int = 4, *, preprocessing: str) -> np.ndarray:
    """Decode and prepare many files in parallel threads: (N, size, size, 1) uint8."""
    get_recipe(preprocessing)  # fail before any work
    out = np.zeros((len(paths), size, size, 1), dtype=np.uint8)

    def one(i: int) -> int:
        out[i] = load_for_model(paths[i], size, preprocessing=preprocessing)
        return i

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, _ in enumerate(pool.map(one, range(len(paths))), start=1):
            if progress and (done % 64 == 0 or done == len(paths)):
                progress(done, len(paths))
    return out
