"""core.training.augment: seeded, shape-preserving transforms in range, and honest anatomy warnings."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import AUGMENT_PRESETS, AugmentConfig
from core.training.augment import (
    TRANSFORM_NOTES,
    affine_warp,
    anatomy_warnings,
    augment_batch,
    preview_variants,
)

B, H, W = 8, 32, 40  # non-square: catches swapped axes

SINGLE = {
    "rotation_deg": AugmentConfig(rotation_deg=25),
    "zoom": AugmentConfig(zoom=0.2),
    "translate": AugmentConfig(translate=0.15),
    "horizontal_flip": AugmentConfig(horizontal_flip=True),
    "vertical_flip": AugmentConfig(vertical_flip=True),
    "brightness": AugmentConfig(brightness=0.2),
    "contrast": AugmentConfig(contrast=0.4),
    "blur": AugmentConfig(blur=1.5),
    "noise": AugmentConfig(noise=0.05),
    "gamma": AugmentConfig(gamma=0.5),
    "downsample": AugmentConfig(downsample=0.6),
}


def batch(channels: int = 1, seed: int = 0) -> np.ndarray:
    """A float32 (B, H, W, C) batch in 0..255 with asymmetric content (so flips are visible)."""
    rng = np.random.default_rng(seed)
    out = rng.uniform(0, 255, (B, H, W, channels)).astype(np.float32)
    out[:, : H // 3, : W // 4] = 250.0  # a bright top-left corner
    return out


def run(images: np.ndarray, cfg: AugmentConfig, seed: int = 1) -> np.ndarray:
    return augment_batch(images, np.array([seed, 0], dtype=np.int64), cfg).numpy()


def test_every_transform_has_a_note() -> None:
    assert set(SINGLE) == set(TRANSFORM_NOTES)


@pytest.mark.parametrize("name", sorted(SINGLE))
@pytest.mark.parametrize("channels", [1, 3])
def test_each_transform_keeps_shape_dtype_and_range_and_changes_something(name: str, channels: int) -> None:
    images = batch(channels)
    out = run(images, SINGLE[name])
    assert out.shape == images.shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert np.isfinite(out).all()
    assert not np.allclose(out, images), f"{name} did nothing"


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_each_transform_is_deterministic_for_a_seed_and_varies_with_it(name: str) -> None:
    images = batch()
    a, b = run(images, SINGLE[name], seed=5), run(images, SINGLE[name], seed=5)
    np.testing.assert_array_equal(a, b)
    c = run(images, SINGLE[name], seed=6)
    assert not np.array_equal(a, c)


def test_items_of_a_batch_get_different_draws() -> None:
    same = np.repeat(batch()[:1], B, axis=0)
    out = run(same, AUGMENT_PRESETS["standard"])
    assert len({out[i].tobytes() for i in range(B)}) == B


def test_identity_config_returns_the_input_unchanged() -> None:
    images = batch(3)
    cfg = AugmentConfig()
    assert cfg.is_identity and AUGMENT_PRESETS["none"].is_identity
    np.testing.assert_array_equal(run(images, cfg), images)


def test_input_array_is_not_modified() -> None:
    images = batch(3)
    before = images.copy()
    run(images, AUGMENT_PRESETS["strong"])
    preview_variants(images[0].astype(np.uint8), AUGMENT_PRESETS["strong"])
    np.testing.assert_array_equal(images, before)


@pytest.mark.parametrize(("field", "flip"), [("horizontal_flip", np.fliplr), ("vertical_flip", np.flipud)])
def test_flip_gives_an_exact_mirror_or_the_original(field: str, flip) -> None:
    images = np.repeat(batch()[:1], 16, axis=0)
    out = run(images, AugmentConfig(**{field: True}), seed=3)
    flipped = 0
    for i in range(len(out)):
        if np.array_equal(out[i], images[i]):
            continue
        np.testing.assert_array_equal(out[i], flip(images[i]))
        flipped += 1
    assert 0 < flipped < len(out), "each item is flipped with probability 1/2"


# --- the geometric warp, with known parameters ------------------------------------------------------

def warp(images: np.ndarray, theta: float = 0.0, scale: float = 1.0, tx: float = 0.0, ty: float = 0.0,
         fx: float = 1.0, fy: float = 1.0) -> np.ndarray:
    """affine_warp with one set of parameters for every image of the batch."""
    n = len(images)
    p = [np.full(n, v, np.float32) for v in (theta, scale, tx, ty, fx, fy)]
    return affine_warp(images, *p).numpy()


def dot(row: int, col: int, h: int = 9, w: int = 11) -> np.ndarray:
    """A black (1, h, w, 1) image with one white pixel."""
    img = np.zeros((1, h, w, 1), np.float32)
    img[0, row, col] = 255.0
    return img


def lit(image: np.ndarray) -> dict[tuple[int, int], float]:
    """(row, col) -> value of the pixels that are not black."""
    return {(int(r), int(c)): round(float(image[0, r, c, 0]), 3) for r, c in zip(*np.nonzero(image[0, ..., 0] > 1e-3))}


def test_no_rotation_no_zoom_no_shift_is_the_identity() -> None:
    images = batch()
    np.testing.assert_array_equal(warp(images), images)


def test_a_whole_pixel_shift_moves_a_pixel_exactly() -> None:
    assert lit(warp(dot(4, 5), tx=3.0, ty=-2.0)) == {(2, 8): 255.0}  # right 3, up 2


def test_a_half_pixel_shift_interpolates_bilinearly() -> None:
    assert lit(warp(dot(4, 5), tx=0.5)) == {(4, 5): 127.5, (4, 6): 127.5}


def test_pixels_shifted_in_from_outside_are_black() -> None:
    out = warp(np.full((1, H, W, 1), 200.0, np.float32), tx=5.0)
    assert out[0, :, :5].max() == 0.0 and out[0, :, 6:].min() == 200.0


def test_rotation_turns_about_the_centre_clockwise_as_displayed() -> None:
    # centre (4, 5); the pixel 2 to the right of it goes 2 below it after a quarter turn
    out = warp(dot(4, 7), theta=np.pi / 2)
    assert list(lit(out)) == [(6, 5)] and lit(out)[(6, 5)] == pytest.approx(255.0, abs=0.01)


def test_zoom_scales_distances_from_the_centre() -> None:
    out = warp(dot(4, 6), scale=2.0)  # 1 right of the centre -> 2 right, spread over 2 pixels
    assert int(np.argmax(out[0, 4, :, 0])) == 7 and out[0, 4, 7, 0] == 255.0


def test_brightness_adds_one_constant_per_image() -> None:
    images = np.full((B, H, W, 1), 128.0, np.float32)
    images[:, ::2] = 100.0
    out = run(images, AugmentConfig(brightness=0.1))  # at most ±25.5: never clips here
    shift = out - images
    for i in range(B):
        assert np.allclose(shift[i], shift[i].flat[0], atol=1e-3)
        assert abs(shift[i].flat[0]) <= 25.5 + 1e-3


def test_contrast_keeps_the_mean() -> None:
    images = np.full((B, H, W, 1), 120.0, np.float32)
    images[:, :, ::2] = 140.0
    out = run(images, AugmentConfig(contrast=0.5))  # spread ×0.5..1.5 around 130: never clips
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 130.0, atol=1e-2)


def test_preview_variants_shapes_and_dtype() -> None:
    gray = batch()[0, ..., 0].astype(np.uint8)
    out = preview_variants(gray, AUGMENT_PRESETS["standard"], n=6, seed=2)
    assert out.shape == (6, H, W) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, preview_variants(gray, AUGMENT_PRESETS["standard"], n=6, seed=2))
    rgb = batch(3)[0].astype(np.uint8)
    assert preview_variants(rgb, AUGMENT_PRESETS["light"], n=2).shape == (2, H, W, 3)


def test_anatomy_warnings() -> None:
    assert anatomy_warnings(AugmentConfig()) == []
    for preset in AUGMENT_PRESETS.values():
        assert anatomy_warnings(preset) == [], "the offered presets are anatomically plausible"
    vflip = anatomy_warnings(AugmentConfig(vertical_flip=True))
    assert len(vflip) == 1 and "Vertical flip" in vflip[0]
    zoom = anatomy_warnings(AugmentConfig(zoom=0.4))
    assert len(zoom) == 1 and "Zoom" in zoom[0] and "40%" in zoom[0]
    assert anatomy_warnings(AugmentConfig(zoom=0.25)) == []  # the boundary is allowed
    assert anatomy_warnings(AugmentConfig(horizontal_flip=True)) == []  # brains are roughly symmetric
    everything = AugmentConfig(
        rotation_deg=45, zoom=0.5, translate=0.3, vertical_flip=True, brightness=0.5, contrast=0.5
    )
    assert len(anatomy_warnings(everything)) == 5


def test_blur_smooths_each_image_by_its_own_amount() -> None:
    images = batch()
    out = run(images, AugmentConfig(blur=2.0))
    rough = lambda x: np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))  # noqa: E731
    assert (rough(out) < rough(images)).all()
    assert np.ptp(rough(out)) > 1.0  # different sigmas per image, not one for the batch
    # Mass is kept away from the zero-padded border (a normalised kernel, not a darkening one).
    assert abs(out[:, 8:-8, 8:-8].mean() - images[:, 8:-8, 8:-8].mean()) < 2.0


def test_noise_is_rician_and_lifts_a_black_background() -> None:
    black = np.zeros((B, H, W, 1), np.float32)
    out = run(black, AugmentConfig(noise=0.1))
    assert (out >= 0).all() and out.mean() > 1.0  # a modulus is never negative, so the mean rises


def test_blur_and_noise_leave_the_other_transforms_draws_unchanged() -> None:
    images = batch()
    geometric = AugmentConfig(rotation_deg=20, zoom=0.1, horizontal_flip=True)
    plain = run(images, geometric)
    noisy = run(images, AugmentConfig(rotation_deg=20, zoom=0.1, horizontal_flip=True, noise=0.01))
    # Weak noise on top of the same geometry: close everywhere (a different draw would move pixels a lot).
    assert np.abs(noisy - plain).mean() < 3.0


def test_gamma_keeps_black_black_and_white_white() -> None:
    images = np.zeros((B, H, W, 1), np.float32)
    images[:, :, W // 2:] = 255.0
    out = run(images, AugmentConfig(gamma=0.8))
    assert np.abs(out[:, :, : W // 2]).max() < 0.5 and np.abs(out[:, :, W // 2 + 2:] - 255).max() < 0.5


def test_downsample_only_loses_detail_it_never_adds_it() -> None:
    # A checkerboard's pixel-to-pixel contrast can only shrink when resolution is lost.
    images = np.indices((H, W)).sum(axis=0) % 2 * 255.0
    images = np.repeat(images[None, ..., None], B, axis=0).astype(np.float32)
    out = run(images, AugmentConfig(downsample=0.7))
    changed = [i for i in range(B) if not np.allclose(out[i], images[i])]
    assert changed, "no image of the batch was downsampled"
    for i in changed:
        assert np.abs(np.diff(out[i, ..., 0], axis=1)).mean() < np.abs(np.diff(images[i, ..., 0], axis=1)).mean()


def test_adding_gamma_leaves_the_other_draws_unchanged() -> None:
    base = AugmentConfig(rotation_deg=10, zoom=0.1, blur=1.0)
    images = batch()
    np.testing.assert_array_equal(run(images, base), run(images, base))
    with_gamma = run(images, AugmentConfig(rotation_deg=10, zoom=0.1, blur=1.0, gamma=1e-9))
    np.testing.assert_allclose(with_gamma, run(images, base), atol=1e-2)
