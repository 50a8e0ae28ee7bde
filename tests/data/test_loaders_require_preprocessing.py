"""Every loader needs the recipe by name: a forgotten argument must fail, never silently feed a
head-crop model whole frames (the wrong input gives confident wrong answers)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from core.data.image_cache import cached_images
from core.data.preprocess import HEAD_ID, WHOLE_FRAME_ID, load_for_model, load_many, prepare, prepare_framed

LOADERS = {"prepare": prepare, "prepare_framed": prepare_framed, "load_for_model": load_for_model,
           "load_many": load_many, "cached_images": cached_images}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_preprocessing_has_no_default(name) -> None:
    param = inspect.signature(LOADERS[name]).parameters["preprocessing"]
    assert param.default is inspect.Parameter.empty, f"{name} defaults to {param.default!r}"


def _png(tmp_path):
    import cv2

    img = np.zeros((40, 40), np.uint8)
    cv2.circle(img, (20, 20), 14, 200, -1)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), img)
    return img, path


def test_a_call_without_preprocessing_fails_and_with_it_works(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    img, path = _png(tmp_path)
    calls = {"prepare": ((img, 16), {}), "prepare_framed": ((img, 16), {}),
             "load_for_model": ((path, 16), {}), "load_many": (([path], 16), {}),
             "cached_images": (([path], 16, "k"), {})}
    for name, (args, kwargs) in calls.items():
        with pytest.raises(TypeError, match="preprocessing"):
            LOADERS[name](*args, **kwargs)
        out = LOADERS[name](*args, preprocessing=HEAD_ID)
        pixels = out.pixels if name == "prepare_framed" else out
        assert pixels.shape[-3:] == (16, 16, 1), name
    whole = prepare(img, 16, preprocessing=WHOLE_FRAME_ID)
    head = prepare(img, 16, preprocessing=HEAD_ID)
    assert not np.array_equal(whole, head)  # the two recipes differ, so the choice matters
