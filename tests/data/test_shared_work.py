"""core.data.shared_work: an ensemble's members find the head and hash an image once, with the same results."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.hashing import perceptual_hash
from core.data.preprocess import find_head, prepare_framed
from core.data.shared_work import per_image, shared_image_work


def _slice(seed: int = 0) -> np.ndarray:
    """A bright disc (a head) on black, with noise: something find_head finds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :96]
    img = np.where((yy - 50) ** 2 + (xx - 44) ** 2 < 30 ** 2, 120, 0) + rng.integers(0, 40, (96, 96))
    return img.astype(np.uint8)


def _counted():
    calls = []

    @per_image
    def work(pixels: np.ndarray) -> np.ndarray:
        calls.append(1)
        return pixels.astype(np.int64).sum(axis=0)

    return work, calls


def test_inside_a_block_the_work_is_done_once_per_buffer_and_outside_every_time():
    work, calls = _counted()
    img = _slice()
    work(img), work(img)
    assert len(calls) == 2  # outside: as always
    with shared_image_work():
        first = work(img)
        again = work(img[..., None][..., 0])  # a view of the same buffer: the same image
        assert again is first and len(calls) == 3
        with shared_image_work():  # nested: the same memo
            assert work(img) is first and len(calls) == 3
        other = work(img.copy())  # equal pixels in another buffer: computed (never keyed by content)
        assert len(calls) == 4 and np.array_equal(other, first)
        work(img[:10])  # another shape of the buffer: computed
        assert len(calls) == 5
    work(img)
    assert len(calls) == 6  # the block's memo is gone


def test_results_shared_inside_a_block_are_read_only():
    work, _ = _counted()
    with shared_image_work():
        out = work(_slice())
        with pytest.raises(ValueError):
            out[0] = 1
    assert work(_slice()).flags.writeable  # outside: the caller's own array, as before


def test_calls_with_more_arguments_are_not_shared():
    calls = []

    @per_image
    def work(pixels: np.ndarray, scale: int = 1) -> int:
        calls.append(1)
        return int(pixels.sum()) * scale

    img = _slice()
    with shared_image_work():
        assert work(img, 2) == 2 * work(img, scale=1)
        work(img, 2)
    assert len(calls) == 3


@pytest.mark.parametrize("recipe", ["head-v2", "frame-eq-v1", "gray-uint8-resize-area-v1"])
def test_members_prepared_inside_a_block_get_exactly_what_they_get_alone(recipe):
    img = _slice(3)
    alone = [prepare_framed(img, size, recipe) for size in (32, 48)]
    with shared_image_work():
        shared = [prepare_framed(img, size, recipe) for size in (32, 48)]
    for a, b in zip(alone, shared):
        assert np.array_equal(a.pixels, b.pixels) and a.framing == b.framing
    with shared_image_work():
        box, mask = find_head(img)
        assert (box, mask.tolist()) == (find_head(img)[0], find_head(img)[1].tolist())
        assert np.array_equal(perceptual_hash(img), perceptual_hash(img.copy()))
