"""core.data.hashing: Hamming-distance properties, near pairs and union-find groups on crafted hashes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.data.demo import phantom
from core.data.hashing import (
    HALF_WORDS,
    HASH_WORDS,
    content_hash,
    group_pairs,
    hamming_matrix,
    hash_to_hex,
    hashes_from_hex,
    hex_to_hash,
    near_pairs,
    nearest_distance,
    perceptual_hash,
)

words = st.lists(st.integers(0, 2**64 - 1), min_size=HASH_WORDS, max_size=HASH_WORDS)
hash_arrays = st.lists(words, min_size=1, max_size=12).map(lambda rows: np.array(rows, dtype=np.uint64))


def flip(h: np.ndarray, bits: list[int], halves: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """A copy of one (8,) hash with bit positions (0..255) flipped in the given halves
    (0 = full-frame hash, 1 = head-crop hash)."""
    out = h.copy()
    for half in halves:
        for b in bits:
            out[half * HALF_WORDS + b // 64] ^= np.uint64(1) << np.uint64(b % 64)
    return out


def _reference_distance(x: np.ndarray, y: np.ndarray) -> int:
    """Plain-Python definition: min over the two 256-bit halves of the popcount of x XOR y."""
    halves = [sum(bin(int(x[w]) ^ int(y[w])).count("1") for w in range(h * HALF_WORDS, (h + 1) * HALF_WORDS))
              for h in (0, 1)]
    return min(halves)


@settings(max_examples=100, deadline=None, database=None)
@given(a=hash_arrays, b=hash_arrays)
def test_hamming_matrix_matches_its_definition(a: np.ndarray, b: np.ndarray) -> None:
    d_ab = hamming_matrix(a, b)
    assert d_ab.shape == (len(a), len(b)) and d_ab.dtype == np.uint16
    assert (d_ab <= 64 * HALF_WORDS).all()
    np.testing.assert_array_equal(d_ab, hamming_matrix(b, a).T)  # symmetric
    assert (np.diag(hamming_matrix(a, a)) == 0).all()  # identity
    expected = [[_reference_distance(x, y) for y in b] for x in a]
    np.testing.assert_array_equal(d_ab, expected)


def test_distance_is_the_closer_half() -> None:
    # A shifted copy: the full-frame halves differ a lot, the head-crop halves barely.
    h = np.zeros(HASH_WORDS, np.uint64)
    shifted = flip(flip(h, list(range(60)), halves=(0,)), [3, 4], halves=(1,))
    assert int(hamming_matrix(h[None], shifted[None])[0, 0]) == 2
    assert int(hamming_matrix(h[None], flip(h, list(range(60)), halves=(0,))[None])[0, 0]) == 0


@settings(max_examples=50, deadline=None, database=None)
@given(h=words.map(lambda w: np.array(w, dtype=np.uint64)), bits=st.sets(st.integers(0, 255), max_size=256))
def test_distance_counts_flipped_bits(h: np.ndarray, bits: set[int]) -> None:  # same bits in both halves
    other = flip(h, sorted(bits))
    assert int(hamming_matrix(h[None], other[None])[0, 0]) == len(bits)


def test_extremes() -> None:
    zero = np.zeros((1, HASH_WORDS), np.uint64)
    ones = np.full((1, HASH_WORDS), 2**64 - 1, np.uint64)
    assert hamming_matrix(zero, ones)[0, 0] == 256
    assert hamming_matrix(ones, ones)[0, 0] == 0


def test_hex_round_trip() -> None:
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**63, HASH_WORDS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    text = hash_to_hex(h)
    assert len(text) == 16 * HASH_WORDS
    np.testing.assert_array_equal(hex_to_hash(text), h)
    assert hashes_from_hex([text, text]).shape == (2, HASH_WORDS)
    assert hashes_from_hex([]).shape == (0, HASH_WORDS)


def test_near_pairs_and_groups_on_crafted_hashes() -> None:
    base_a = np.zeros(HASH_WORDS, np.uint64)
    base_b = np.full(HASH_WORDS, 2**64 - 1, np.uint64)
    hashes = np.stack(
        [
            base_a,  # 0
            flip(base_a, [1, 70, 200]),  # 1: 3 bits from 0
            flip(base_a, [1, 70, 200, 5, 6, 7, 8]),  # 2: 4 from 1, 7 from 0
            base_b,  # 3: far from everything above
            flip(base_b, list(range(10))),  # 4: 10 bits from 3
            flip(base_a, list(range(0, 256, 2))),  # 5: 128 from 0 and from 3: alone
        ]
    )
    assert near_pairs(hashes, threshold=3) == [(0, 1)]
    assert sorted(near_pairs(hashes, threshold=7)) == [(0, 1), (0, 2), (1, 2)]
    assert sorted(near_pairs(hashes, threshold=10)) == [(0, 1), (0, 2), (1, 2), (3, 4)]
    assert near_pairs(hashes, threshold=0) == []
    # chunking must not change the answer
    assert sorted(near_pairs(hashes, threshold=10, chunk=2)) == sorted(near_pairs(hashes, threshold=10))
    groups = group_pairs(len(hashes), near_pairs(hashes, threshold=10))
    np.testing.assert_array_equal(groups, [0, 0, 0, 3, 3, 5])


def test_group_pairs_is_transitive_and_uses_the_smallest_member() -> None:
    # A chain 5-4, 4-2, 2-7 and a separate pair 1-6: ids are the smallest member of each group.
    groups = group_pairs(8, [(4, 5), (2, 4), (2, 7), (1, 6)])
    np.testing.assert_array_equal(groups, [0, 1, 2, 3, 2, 2, 1, 2])
    np.testing.assert_array_equal(group_pairs(3, []), [0, 1, 2])


def test_nearest_distance() -> None:
    ref = np.stack([np.zeros(HASH_WORDS, np.uint64), np.full(HASH_WORDS, 2**64 - 1, np.uint64)])
    query = np.stack([flip(ref[0], [3]), flip(ref[1], [1, 2]), flip(ref[0], list(range(128)))])
    np.testing.assert_array_equal(nearest_distance(query, ref), [1, 2, 128])
    np.testing.assert_array_equal(nearest_distance(query, ref[:0]), [999, 999, 999])


def test_content_hash() -> None:
    assert content_hash(b"abc") == content_hash(b"abc")
    assert content_hash(b"abc") != content_hash(b"abd")
    assert len(content_hash(b"")) == 64


def test_perceptual_hash_properties() -> None:
    img = phantom("glioma", np.random.default_rng(0), 128) // 2  # 0..127: room to brighten
    h = perceptual_hash(img)
    assert h.shape == (HASH_WORDS,) and h.dtype == np.uint64
    copy = img.copy()
    perceptual_hash(img)
    np.testing.assert_array_equal(img, copy)  # input untouched
    # Mean brightness lives in the DC coefficient only, which the hash drops.
    assert hamming_matrix(h[None], perceptual_hash(img + 60)[None])[0, 0] <= 2
    assert hamming_matrix(h[None], perceptual_hash(img * 2)[None])[0, 0] <= 2  # contrast: same signs
    unrelated = perceptual_hash(phantom("glioma", np.random.default_rng(1), 128))
    assert hamming_matrix(h[None], unrelated[None])[0, 0] > 20
    # The last bit of each half is padding (255 coefficients in 256 bits): always zero.
    assert int(h[HALF_WORDS - 1]) & 1 == 0 and int(h[-1]) & 1 == 0


def _on_canvas(img: np.ndarray, side: int, x: int, y: int) -> np.ndarray:
    """The slice drawn ``side`` px wide at (x, y) on a black 128-px field, as in real scans."""
    import cv2

    canvas = np.zeros((128, 128), np.uint8)
    canvas[y : y + side, x : x + side] = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return canvas


@pytest.mark.parametrize("seed", range(4))
def test_shifted_and_rescaled_copies_stay_near(seed: int) -> None:
    """The head-crop half makes shifts and rescalings cheap (the full-frame hash alone missed them)."""
    img = phantom("meningioma", np.random.default_rng(seed), 128)
    base = perceptual_hash(_on_canvas(img, 100, 14, 14))
    other = perceptual_hash(_on_canvas(phantom("meningioma", np.random.default_rng(seed + 10), 128), 100, 14, 14))
    unrelated = int(hamming_matrix(base[None], other[None])[0, 0])
    assert unrelated > 40
    for shifted in (_on_canvas(img, 100, 16, 14), _on_canvas(img, 100, 20, 10)):
        assert hamming_matrix(base[None], perceptual_hash(shifted)[None])[0, 0] <= 20
    # A 10 % rescale lands between the two: far closer than an unrelated slice, but only about
    # half of such copies fall under the default 20-bit threshold (a documented limitation).
    rescaled = int(hamming_matrix(base[None], perceptual_hash(_on_canvas(img, 90, 19, 19))[None])[0, 0])
    assert rescaled < unrelated / 2
