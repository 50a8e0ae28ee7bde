"""Exact (content) and perceptual hashes, and grouping of near-duplicates by Hamming distance."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np


def content_hash(data: bytes) -> str:
    """SHA-256 of the file bytes: equal only for byte-identical files."""
    return hashlib.sha256(data).hexdigest()


HASH_WORDS = 4  # 256-bit hashes, stored as 4 uint64 words


def perceptual_hash(gray: np.ndarray) -> np.ndarray:
    """256-bit DCT perceptual hash (pHash) of a grayscale image, as 4 uint64 words.

    Re-encoding, rescaling and small shifts change few bits, so near-copies have a small
    Hamming distance (Zauner 2010). Brain slices share their coarse layout, so the classic
    64-bit hash puts unrelated scans a few bits apart; 16×16 DCT coefficients separate them
    (measured on the Kaggle data: nearest-neighbour distances are bimodal with a gap near 20).
    """
    small = cv2.resize(gray.astype(np.float32), (64, 64), interpolation=cv2.INTER_AREA)
    coeffs = cv2.dct(small)[:16, :16].flatten()[1:]  # drop DC: it only encodes mean brightness
    bits = np.append(coeffs > np.median(coeffs), False)
    return np.packbits(bits).view(">u8").astype(np.uint64)


def hash_to_hex(h: np.ndarray) -> str:
    return "".join(f"{int(w):016x}" for w in h)


def hex_to_hash(text: str) -> np.ndarray:
    return np.array([int(text[i : i + 16], 16) for i in range(0, 16 * HASH_WORDS, 16)], dtype=np.uint64)


def hashes_from_hex(texts: list[str]) -> np.ndarray:
    """(N, 4) uint64 array from hex strings (empty input gives shape (0, 4))."""
    if not texts:
        return np.zeros((0, HASH_WORDS), dtype=np.uint64)
    return np.stack([hex_to_hash(t) for t in texts])


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between (n, 4) and (m, 4) hash arrays, as uint16 (n, m)."""
    out = np.zeros((len(a), len(b)), dtype=np.uint16)
    for w in range(a.shape[1]):
        out += np.bitwise_count(np.bitwise_xor(a[:, None, w], b[None, :, w])).astype(np.uint16)
    return out


def near_pairs(hashes: np.ndarray, threshold: int, chunk: int = 1024) -> list[tuple[int, int]]:
    """All index pairs (i < j) whose hashes differ in at most ``threshold`` bits."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(hashes), chunk):
        block = hamming_matrix(hashes[start : start + chunk], hashes)
        ii, jj = np.nonzero(block <= threshold)
        ii = ii + start
        keep = ii < jj
        pairs.extend(zip(ii[keep].tolist(), jj[keep].tolist()))
    return pairs


def group_pairs(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Union-find over index pairs; returns a group id per index (ids are the smallest member)."""
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)])


def nearest_distance(query: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For each query hash, the smallest Hamming distance to any reference hash (999 if none)."""
    query = np.asarray(query, dtype=np.uint64)
    reference = np.asarray(reference, dtype=np.uint64)
    out = np.full(len(query), 999, dtype=np.int64)
    if len(reference) == 0:
        return out
    for start in range(0, len(query), chunk):
        out[start : start + chunk] = hamming_matrix(query[start : start + chunk], reference).min(axis=1)
    return out
