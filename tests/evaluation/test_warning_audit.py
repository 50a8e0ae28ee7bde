"""The warning audit: how many wrong answers carry a warning, as Predict & Explain shows them.

The tiny ensemble predicts the demo's test images, plain (from the model's own source) and re-styled (a
batch the site check tells apart). The audit's figures must be exactly what the prediction path gives, and
a batch the site check flags must warn on every slice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import WorkbenchError

pytestmark = pytest.mark.slow


@pytest.fixture
def ensemble(tiny_ensemble_copy):
    return tiny_ensemble_copy


def _labelled(folder: Path) -> tuple[list[Path], list[str]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return files, [p.parent.name for p in files]


def test_the_slice_figures_are_the_prediction_paths_own(ensemble, demo_root):
    from core.evaluation.warning_audit import audit_warnings
    from core.inference.ensemble_predict import load_predictor
    from core.inference.predict import predict_files

    files, labels = _labelled(demo_root / "Testing")
    audit = audit_warnings(ensemble, files, labels, [False] * len(files))
    results = predict_files(load_predictor(ensemble.run_id), [(str(f), f.read_bytes()) for f in files])
    correct = np.array([r.label == t for r, t in zip(results, labels)])
    warned = np.array([bool(r.warnings) for r in results])
    assert audit.n_images == len(files) and audit.accuracy == pytest.approx(correct.mean())
    assert audit.per_slice["n_wrong"] == int((~correct).sum())
    assert audit.per_slice["silent_wrong"] == pytest.approx((~correct & ~warned).mean())
    if correct.any():
        assert audit.per_slice["correct_warned"] == pytest.approx(warned[correct].mean())
    assert audit.leakage_free["n_images"] == len(files)
    assert "near_duplicate" not in audit.flags_on_wrong  # a note, not a warning


def test_a_batch_the_site_check_flags_warns_on_every_slice(ensemble, demo_root, tmp_path):
    from test_site import make_site

    from core.evaluation.warning_audit import audit_warnings
    from core.inference.notices import SITE_SHIFT

    files, labels = _labelled(make_site(demo_root, tmp_path / "site"))  # darker and resized: another site
    audit = audit_warnings(ensemble, files, labels)
    assert audit.site_check is not None and audit.site_check["shift_detected"], audit.site_check
    after = audit.with_site_check
    assert after["correct_warned"] in (None, 1.0) and after["wrong_warned"] in (None, 1.0)
    assert after["silent_wrong"] == 0.0
    assert audit.per_slice["silent_wrong"] >= after["silent_wrong"]
    if audit.per_slice["n_wrong"]:
        assert audit.flags_on_wrong[SITE_SHIFT] == audit.per_slice["n_wrong"]
    assert audit.leakage_free is None  # no overlap told: no leakage-free figures


def test_too_few_images_for_the_site_check_say_so(ensemble, demo_root):
    from core.evaluation.warning_audit import audit_warnings
    from core.inference.notices import MIN_IMAGES

    files, labels = _labelled(demo_root / "Testing")
    audit = audit_warnings(ensemble, files[:5], labels[:5])
    assert audit.site_check is None and audit.with_site_check is None
    assert f"at least {MIN_IMAGES} images" in audit.site_problem


def test_unreadable_files_are_listed_and_left_out(ensemble, demo_root, tmp_path):
    from core.evaluation.warning_audit import audit_warnings

    files, labels = _labelled(demo_root / "Testing")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    audit = audit_warnings(ensemble, [*files[:4], broken], [*labels[:4], labels[0]])
    assert audit.n_images == 5 and len(audit.unreadable) == 1 and "broken.png" in audit.unreadable[0]
    assert audit.per_slice["n_wrong"] + round(audit.accuracy * 4) == 4  # the four readable images only


@pytest.mark.parametrize("files, labels, overlap", [
    (["a.png"], [], None),
    (["a.png"], ["glioma"], [False, True]),
])
def test_every_image_needs_its_class(ensemble, files, labels, overlap):
    from core.evaluation.warning_audit import audit_warnings

    with pytest.raises(WorkbenchError, match="true class"):
        audit_warnings(ensemble, [Path(f) for f in files], labels, overlap)


def test_nothing_readable_is_refused(ensemble, tmp_path):
    from core.evaluation.warning_audit import audit_warnings

    bad = tmp_path / "x.png"
    bad.write_bytes(b"")
    with pytest.raises(WorkbenchError, match="none of the evaluated images"):
        audit_warnings(ensemble, [bad], ["glioma"])


def test_cli_evaluate_warnings(ensemble, capsys):
    from core.cli import main

    assert main(["evaluate", "--model", ensemble.run_id, "--warnings", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    audit = out["warnings"]
    assert audit["n_images"] == out["n_images"]
    assert audit["accuracy"] == pytest.approx(out["accuracy"])  # the upload path answers as the evaluation did
    from core.models.runs import resolve_run

    kept = resolve_run(ensemble.run_id).card.evaluation["warnings"]  # beside the held-out accuracy, for the model box
    assert kept["n_images"] == audit["n_images"] and kept["silent_wrong"] == pytest.approx(
        audit["per_slice"]["silent_wrong"], abs=1e-6)
    assert main(["evaluate", "--model", ensemble.run_id, "--warnings"]) == 0
    text = capsys.readouterr().out
    assert "wrong answers carry a warning" in text and "wrong without a warning" in text



def test_a_cancel_between_steps_stops_the_audit(ensemble, demo_root, monkeypatch):
    import core.inference.predict as predict_module
    from core.evaluation.warning_audit import audit_warnings
    from core.jobs import JobCancelled

    files, labels = _labelled(demo_root / "Testing")
    calls = []
    monkeypatch.setattr("core.evaluation.warning_audit.CHUNK", 8)  # several steps even on the tiny set
    real = predict_module.predict_files
    monkeypatch.setattr(predict_module, "predict_files", lambda p, items, **kw: calls.append(len(items)) or real(p, items, **kw))

    def cancel_on_second_step(fraction, text):
        if fraction > 0.05:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        audit_warnings(ensemble, files[:24], labels[:24], progress=cancel_on_second_step)
    assert calls == [8]  # one chunk predicted, then the cancel was heard
