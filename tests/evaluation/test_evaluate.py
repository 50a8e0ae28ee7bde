"""The evaluation engine on a tiny trained model (core.evaluation.evaluate, core.reports.eval_report).

Each test evaluates a private copy of the session's tiny run: evaluation writes a summary into
the card, and the shared run must stay as its other users expect it.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import WorkbenchError
from core.evaluation import compare, eval_sets
from core.evaluation import evaluate as ev
from core.evaluation.eval_sets import EvalSet
from core.evaluation.evaluate import evaluate_run
from core.models.runs import CARD_FILE, best_run, list_runs, load_model, resolve_run, update_card

pytestmark = pytest.mark.slow


@pytest.fixture
def run_copy(tiny_run, isolated_workbench_dirs):
    """A copy of the tiny run inside this test's own model registry."""
    dest = isolated_workbench_dirs["models"] / tiny_run.run_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tiny_run.path, dest)
    return resolve_run(tiny_run.run_id)


def train_files(run) -> list[str]:
    """Relative paths of the run's training images (everything not held out for val/test)."""
    from core.data.datasets import open_folder

    data = run.card.data
    held_out = set(data["val_files"]) | set(data["test_files"])
    return [p for p in open_folder(data["root"]).files["path"] if p not in held_out]


def set_card(run, **changes):
    card = json.loads((run.path / CARD_FILE).read_text())
    for dotted, value in changes.items():
        target = card
        *parents, leaf = dotted.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    (run.path / CARD_FILE).write_text(json.dumps(card))
    return resolve_run(run.run_id)


def test_card_test_split_predictions_are_consistent(run_copy):
    result = evaluate_run(run_copy, EvalSet("card_test"))
    p = result.predictions
    names = run_copy.class_names
    assert result.metrics["n_images"] == len(run_copy.card.data["test_files"]) == len(p)
    assert list(p["file"]) == run_copy.card.data["test_files"]
    probs = p[[f"prob_{c}" for c in names]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (p["predicted"] == [names[i] for i in probs.argmax(axis=1)]).all()
    assert np.allclose(p["confidence"], probs.max(axis=1))
    # The leakage-free split keeps near-duplicate groups whole: no test image is a near-copy.
    assert result.n_overlapping == 0 and not p["overlap"].any()
    assert (p["train_distance"] > run_copy.card.data["data_config"]["near_dup_threshold"]).all()
    assert result.leakage_free["n_images"] == result.metrics["n_images"]
    assert result.metrics["accuracy"] == pytest.approx(p["correct"].mean())


def test_temperature_from_card_is_applied(run_copy):
    from core.data.image_cache import cached_images
    from core.inference.calibration import softmax

    run = set_card(run_copy, results__temperature=3.0)
    result = evaluate_run(run, EvalSet("card_test"), use_cache=False)
    root = Path(run.card.data["root"])
    images = cached_images([root / f for f in result.predictions["file"]], run.image_size, "t",
                           preprocessing=run.preprocessing)
    logits = ev.predict_logits(run, images)
    probs = result.predictions[[f"prob_{c}" for c in run.class_names]].to_numpy()
    assert np.allclose(probs, softmax(logits, 3.0), atol=1e-5)
    assert not np.allclose(probs, softmax(logits, 1.0), atol=1e-3)


def test_copied_training_images_are_flagged_and_left_out(run_copy, tmp_path):
    """Exact and re-encoded copies of training images are near-duplicates; fresh test images are not."""
    from PIL import Image

    data = run_copy.card.data
    root = Path(data["root"])
    from core.data.datasets import open_folder

    files = open_folder(root).files
    label = dict(zip(files["path"], files["label"]))
    train = train_files(run_copy)
    picked_train = [next(p for p in train if label[p] == c) for c in ("glioma", "meningioma")]
    picked_test = [next(p for p in data["test_files"] if label[p] == c) for c in ("notumor", "pituitary")]
    folder = tmp_path / "eval"
    for i, rel in enumerate(picked_train + picked_test):
        dest = folder / label[rel] / f"img_{i}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, dest)
    jpeg = folder / label[picked_train[0]] / "reencoded.jpg"  # same slice, different bytes
    Image.open(root / picked_train[0]).convert("L").save(jpeg, quality=80)

    result = evaluate_run(run_copy, EvalSet("folder", str(folder)))
    p = result.predictions.set_index("file")
    flagged = sorted(p.index[p["overlap"]])
    expected = sorted([f"{label[r]}/img_{i}.png" for i, r in enumerate(picked_train)]
                      + [f"{label[picked_train[0]]}/reencoded.jpg"])
    assert flagged == expected
    for i, rel in enumerate(picked_train):
        assert p.loc[f"{label[rel]}/img_{i}.png", "train_distance"] == 0  # byte-identical: same pHash
    assert 0 <= p.loc[f"{label[picked_train[0]]}/reencoded.jpg", "train_distance"] <= 20
    assert result.n_overlapping == 3
    assert result.metrics["n_images"] == 5 and result.leakage_free["n_images"] == 2
    assert sorted(result.subset(leakage_free=True)["file"]) == sorted(
        f"{label[r]}/img_{i}.png" for i, r in enumerate(picked_test, start=2))


def test_overlap_distances_read_current_and_legacy_card_hashes(pixels, tmp_path):
    """Cards written before the head-crop hash half hold 64 hex digits; they must still match."""
    from core.data.hashing import hash_to_hex, perceptual_hash
    from core.models.card import ModelCard
    from core.models.runs import Run

    a, b = (hash_to_hex(perceptual_hash(pixels(seed, 64))) for seed in (1, 2))
    for train in ([a], [a[:64]]):
        run = Run("r", tmp_path, ModelCard(data={"train_hashes": train}))
        dist = eval_sets.overlap_distances(run, [a, b])
        assert dist[0] == 0 and dist[1] > 20
    assert eval_sets.overlap_distances(Run("r", tmp_path, ModelCard()), [a]) is None


def test_class_mismatch_is_refused(run_copy, demo_root):
    # class_order_sha256 "" = a card from before the class-order binding, which would refuse it first
    run = set_card(run_copy, class_names=["glioma", "meningioma", "notumor"], class_order_sha256="")
    with pytest.raises(WorkbenchError, match="class names do not match.*pituitary"):
        evaluate_run(run, EvalSet("folder", str(demo_root)))


def test_cache_hit_returns_identical_result_without_predicting(run_copy, monkeypatch):
    first = evaluate_run(run_copy, EvalSet("card_test"))
    assert not first.from_cache

    def no_predicting(*args, **kwargs):
        raise AssertionError("a cache hit must not predict again")

    monkeypatch.setattr(ev, "predict_logits", no_predicting)
    second = evaluate_run(run_copy, EvalSet("card_test"))
    assert second.from_cache
    pd.testing.assert_frame_equal(first.predictions, second.predictions)
    strip = lambda s: {k: v for k, v in s.items() if k != "from_cache"}  # noqa: E731
    assert strip(first.summary()) == strip(second.summary())
    assert ev.cached_evaluation(run_copy, EvalSet("card_test")).metrics == first.metrics
    with pytest.raises(AssertionError, match="must not predict"):
        evaluate_run(run_copy, EvalSet("card_test"), use_cache=False)


def test_missing_training_data_is_explained(run_copy, tmp_path):
    run = set_card(run_copy, data__root=str(tmp_path / "gone"))
    with pytest.raises(WorkbenchError, match="not on this machine"):
        evaluate_run(run, EvalSet("card_test"))


def test_changed_dataset_with_missing_test_image_is_refused(run_copy, tmp_path, demo_root):
    moved = tmp_path / "copy"
    shutil.copytree(demo_root, moved)
    run = set_card(run_copy, data__root=str(moved))
    (moved / run.card.data["test_files"][0]).unlink()
    with pytest.raises(WorkbenchError, match="1 of the .* held-out test images are missing"):
        evaluate_run(run, EvalSet("card_test"))


def test_dataset_test_uses_testing_folder(run_copy, demo_root):
    result = evaluate_run(run_copy, EvalSet("dataset_test", str(demo_root)))
    assert result.predictions["file"].str.startswith("Testing/").all()
    assert result.metrics["n_images"] == sum(1 for p in (demo_root / "Testing").rglob("*.png"))


def test_dataset_test_of_flat_folder_uses_leakage_free_test_part(run_copy, demo_root):
    from core.config import DataConfig
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.data.splits import make_split

    flat = demo_root / "Training"
    result = evaluate_run(run_copy, EvalSet("dataset_test", str(flat)))
    report = scan_dataset(open_folder(flat), DataConfig().near_dup_threshold)
    split = make_split(report, DataConfig.from_dict(run_copy.card.data["data_config"]), "leakage_free")
    expected = sorted(report.readable["path"][split == "test"])
    assert sorted(result.predictions["file"]) == expected and 0 < len(expected) < len(report.readable)
    assert "leakage-free test part" in result.description


def test_bad_eval_sets_are_refused():
    with pytest.raises(WorkbenchError, match="unknown evaluation set"):
        EvalSet("everything")
    with pytest.raises(WorkbenchError, match="needs a folder"):
        EvalSet("folder")


def test_cancelled_job_stops_evaluation(run_copy):
    from core.jobs import Job, JobCancelled

    job = Job("evaluate", "t")
    job.cancel()
    with pytest.raises(JobCancelled):
        evaluate_run(run_copy, EvalSet("card_test"), job)


def test_evaluate_runs_job_reports_progress_and_stores_summary_in_card(run_copy):
    from core.jobs import Job

    job = Job("evaluate", "t")
    out = ev.evaluate_runs([run_copy], EvalSet("card_test"), job)
    result = out[run_copy.run_id]
    assert job.progress > 0.9 and any(run_copy.run_id in line for line in job.log)
    run = resolve_run(run_copy.run_id)
    stored = run.card.evaluation
    assert stored["leakage_free"]["macro_f1"] == pytest.approx(result.leakage_free["macro_f1"])
    assert stored["n_overlapping"] == 0 and stored["eval_set"] == "card_test"
    assert run.leakage_free_macro_f1() == pytest.approx(result.leakage_free["macro_f1"])
    assert best_run(list_runs()).run_id == run.run_id
    load_model(run)  # the card changed, model.keras did not: its sha256 still matches


def test_comparison_table_marks_best_leakage_free_f1(run_copy, isolated_workbench_dirs):
    other_path = isolated_workbench_dirs["models"] / "zz-other"
    shutil.copytree(run_copy.path, other_path)
    other = resolve_run("zz-other")
    update_card(run_copy, evaluation={"accuracy": 0.9, "eval_set": "card_test", "leakage_free": {"macro_f1": 0.5}})
    update_card(other, evaluation={"accuracy": 0.8, "eval_set": "card_test", "leakage_free": {"macro_f1": 0.7}})
    table = compare.comparison_table(list_runs())
    assert table.set_index("run").loc["zz-other", "best"]
    assert table["best"].sum() == 1
    assert set(table.columns) >= {"arch", "val_accuracy", "test_accuracy", "leakage_free_macro_f1",
                                  "train_seconds", "size_mb", "params"}
    assert compare.comparison_table([])["best"].sum() == 0


def test_worst_mistakes_are_the_most_confident_wrong_ones():
    p = pd.DataFrame({"file": list("abcd"), "true": ["x", "x", "y", "y"], "predicted": ["y", "x", "x", "x"],
                      "confidence": [0.6, 0.99, 0.9, 0.7]})
    assert compare.worst_mistakes(p, 2)["file"].tolist() == ["c", "d"]
    assert compare.cell_images(p, "y", "x")["file"].tolist() == ["c", "d"]


def test_exports_are_self_contained(run_copy):
    from core.reports.eval_report import html_report, metrics_json, predictions_csv

    result = ev.cached_evaluation(run_copy, EvalSet("card_test")) or evaluate_run(run_copy, EvalSet("card_test"))
    page = html_report(result, run_copy.card)
    assert "<svg" in page and "Confusion matrix" in page
    stripped = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in stripped and "https://" not in stripped and "<script" not in stripped
    assert f"{result.metrics['accuracy']:.1%}" in page
    assert json.loads(metrics_json(result))["leakage_free"]["n_images"] == result.leakage_free["n_images"]
    back = pd.read_csv(io.BytesIO(predictions_csv(result)))
    assert len(back) == result.metrics["n_images"] and "prob_glioma" in back


def test_a_cached_result_reaches_a_card_that_lacks_it(run_copy, monkeypatch):
    """A run re-registered with the same network (or whose card lost its figures) finds its result in the
    cache; the card must then hold it too, or the run could never become the default."""
    first = evaluate_run(run_copy, EvalSet("card_test"))
    run = set_card(run_copy, evaluation={}, evaluations={})
    assert run.leakage_free_macro_f1() is None
    monkeypatch.setattr(ev, "predict_logits", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no predicting")))
    hit = evaluate_run(run, EvalSet("card_test"))
    assert hit.from_cache and hit.run_id == run.run_id
    again = resolve_run(run.run_id)
    assert again.leakage_free_macro_f1() == pytest.approx(first.leakage_free["macro_f1"])
    assert len(again.card.evaluations) == 1
