"""The committed default model: present, small, intact, loadable, and as good as its card says.

The default is an ensemble (bench/RESULTS.md sections 13, 15 and 16): its card lists member runs and a
sentinel (a check model that only warns), each committed beside it, and every property of a single model
is checked on each of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data.preprocess import FRAME_EQ_ID, HEAD_ID, WHOLE_FRAME_ID
from core.models.ensemble import member_runs, sentinel_runs
from core.models.runs import best_run, file_sha256, list_runs

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
CARD_KEYS = ("run_id", "status", "created", "arch", "class_names", "image_size", "preprocessing", "versions",
             "model_sha256", "params", "train_config", "data", "results", "timings", "evaluation")


@pytest.fixture(scope="module")
def default_run():
    run = best_run(list_runs(REPO_MODELS))
    assert run is not None, "no complete model is committed under models/"
    return run


@pytest.fixture(scope="module")
def members(default_run):
    """The default's member runs and its sentinels (checksums verified against the ensemble's card)."""
    return member_runs(default_run) + sentinel_runs(default_run)


def test_default_model_is_an_ensemble_of_committed_members(default_run, members) -> None:
    voters = member_runs(default_run)
    assert default_run.card.is_ensemble and len(voters) >= 3
    assert all(m.path.parent == REPO_MODELS.resolve() for m in members), "members must be committed beside it"
    recorded = {m["run_id"]: m["model_sha256"] for m in (*default_run.card.members, *default_run.card.sentinels)}
    assert {m.run_id: file_sha256(m.model_path) for m in members} == recorded
    # diverse inputs: at least one member crops the head and one sees the whole frame (raw or standardised)
    recipes = {m.preprocessing for m in voters}
    assert HEAD_ID in recipes and recipes & {WHOLE_FRAME_ID, FRAME_EQ_ID}
    lf = default_run.card.to_json()["evaluation"]["leakage_free"]
    assert lf["n_images"] > 500 and 0 <= lf["accuracy"] <= 1
    # chosen on validation, as a whole: it beats each of its voting members there
    dis = default_run.card.results.disagreement
    assert all(default_run.card.val_accuracy > acc for acc in dis["members_accuracy"])


def test_default_models_sentinel_reads_the_raw_frame_and_its_warning_is_shown(default_run) -> None:
    """The check model keeps reading the image's style (raw whole frame, no style mixing), and the
    warning fit kept its differing answer as a warning within the false-alarm budget."""
    (watch,) = sentinel_runs(default_run)
    assert watch.preprocessing == WHOLE_FRAME_ID and not watch.card.train_config.get("style_mix")
    dis = default_run.card.results.disagreement
    assert dis["sentinel_warns"] is True and 0 < dis["sentinel_share"] <= dis["correct_warned"] + 0.05
    from core.reports.run_summary import model_facts

    shown = model_facts(default_run)["Warnings fitted on validation"]  # what the Predict page's model box says
    assert "check model naming another class" in shown.split("Not used")[0]


def test_model_box_names_each_models_input_in_words(default_run) -> None:
    """A reader of the Predict page's model box sees "head crop + intensity standardisation", not a
    recipe id; the run id stays, last, to trace the model."""
    from core.data.preprocess import RECIPES, get_recipe
    from core.reports.run_summary import model_facts

    facts = model_facts(default_run)
    for row, entries in (("Members", default_run.card.members),
                         ("Check models (warn only, never vote)", default_run.card.sentinels)):
        for m in entries:
            assert f"{get_recipe(m['preprocessing']).title.lower()} ({m['run_id']})" in facts[row]
        assert not any(recipe_id in facts[row] for recipe_id in RECIPES)


def test_members_that_mixed_styles_are_reproduced_with_their_method(members) -> None:
    """T and Q were trained with the first, whole-frame style mixing; their cards predate the method
    field, and re-running or adapting them must draw that method, not the newer head-only one."""
    from core.training.config import TrainConfig

    mixed = [m for m in members if m.card.train_config.get("style_mix")]
    assert len(mixed) >= 2
    assert {TrainConfig.from_card(m.card).style_mix_method for m in mixed} == {"frame-v1"}


def _readme_command(label: str) -> list[str]:
    """The README's training command marked ``# label`` (continuation lines joined), as arguments."""
    import shlex

    lines = (REPO_MODELS.parent / "README.md").read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if line.rstrip().endswith(f"# {label}"))
    start = end
    while start > 0 and lines[start - 1].rstrip().endswith("\\"):
        start -= 1
    text = " ".join(line.rstrip().rstrip("\\") for line in lines[start:end + 1]).split("#")[0]
    return shlex.split(text)[3:]  # after "python -m core"


@pytest.mark.parametrize("label", ["A", "T", "Q"])
def test_readme_commands_reproduce_the_members_recipes(members, label) -> None:
    """Each member's command in the README gives the recipe its card records, as the presets stand now
    (the fast preset changed after T and Q were trained: their commands name what it then meant)."""
    from core.cli import _load_extra_commands, build_parser
    from core.cli.train import config_from_args
    from core.training.config import TrainConfig

    _load_extra_commands()
    cfg = config_from_args(build_parser().parse_args(_readme_command(label)))
    member = {"A": members[0], "T": members[1], "Q": members[2]}[label]
    recorded = TrainConfig.from_card(member.card).to_dict()
    # Precision follows the machine (bfloat16 only where it is native) and is recorded, not a recipe choice.
    mine = {k: v for k, v in cfg.to_dict().items() if k != "precision"}
    assert mine == {k: v for k, v in recorded.items() if k != "precision"}


def test_default_models_prediction_sets_rest_on_out_of_fold_scores_a_refit_reuses(default_run) -> None:
    """The sets were calibrated on validation *and* the training images scored out of fold (the
    members' oof.npz, committed beside them), so a later refit needs no fold training."""
    from core.training.conformal_folds import stored_fold_precision, trainings_needed

    sets = default_run.card.results.conformal
    oof = sets["out_of_fold"]
    n_val = default_run.card.results.n_val
    assert oof["folds"] >= 3 and sum(sets["n_per_class"].values()) == n_val + oof["n_images"] > 4 * n_val
    assert "out of fold" in sets["fitted_on"] and "precision bfloat16" in sets["fitted_on"]  # said, not hidden
    assert oof["fold_settings_changed"] == {"precision": "bfloat16"}
    assert trainings_needed(default_run, oof["folds"], oof["fold_settings_changed"]) == 0
    # A refit that does not name the precision (the Evaluate page's first choice, the CLI without
    # --fold-precision) finds the stored scores too, instead of nine float32 fold trainings.
    assert stored_fold_precision(default_run, oof["folds"]) == "bfloat16"


def test_every_member_is_committed_small_and_intact(members) -> None:
    for member in members:
        card = member.card.to_json()
        assert all(key in card for key in CARD_KEYS), [k for k in CARD_KEYS if k not in card]
        assert card["status"] == "complete" and card["arch"] == "custom_cnn"
        assert card["class_names"] == ["glioma", "meningioma", "notumor", "pituitary"]
        assert member.model_path.stat().st_size <= 10 * 1024 * 1024
        assert file_sha256(member.model_path) == card["model_sha256"]
        assert card["data"]["split_mode"] == "leakage_free" and not card["data"]["synthetic"]
        assert len(card["data"]["train_hashes"]) == sum(card["data"]["counts"]["train"].values())


def test_the_members_share_one_split(members) -> None:
    """Averaging is only honest when no member trained on another's validation or test images."""
    first = members[0].card.data
    for member in members[1:]:
        assert member.card.data["val_files"] == first["val_files"]
        assert member.card.data["test_files"] == first["test_files"]


@pytest.mark.slow
def test_default_model_predicts_on_the_demo_data(default_run, demo_root: Path) -> None:
    from core.inference.ensemble_predict import predictor_for
    from core.inference.predict import predict_files

    predictor = predictor_for(default_run)
    files = sorted((demo_root / "Testing").rglob("*.png"))[::10][:8]
    results = predict_files(predictor, [(p.name, p.read_bytes()) for p in files], gradcam=True)
    assert all(r.ok for r in results)
    for r in results:
        assert r.label in default_run.class_names
        assert abs(sum(r.probabilities.values()) - 1) < 1e-6
        assert r.heatmap.ndim == 2 and min(r.heatmap.shape) >= 32
        assert 0 <= r.heatmap.min() and r.heatmap.max() <= 1


@pytest.mark.slow
@pytest.mark.realdata
def test_default_model_accuracy_on_a_fixed_sample_of_its_held_out_images(default_run, real_data_dir) -> None:
    """Not timed. A fixed 400-image sample of the card's own held-out test split must score at
    least the card's leakage-free accuracy minus 3 points (about 3 binomial standard errors)."""
    from core.classes import canonical_class
    from core.evaluation.evaluate import predict_logits

    card = default_run.card.to_json()
    rng = np.random.default_rng(0)
    test_files = card["data"]["test_files"]
    chosen = sorted(rng.choice(len(test_files), size=min(400, len(test_files)), replace=False))
    paths = [real_data_dir / test_files[i] for i in chosen]
    if not all(p.exists() for p in paths):
        pytest.skip("this copy of the dataset lacks some of the model's held-out files")
    labels = np.array([default_run.class_names.index(canonical_class(Path(test_files[i]).parent.name))
                       for i in chosen])
    logits = predict_logits(default_run, paths)  # an ensemble reads the files: each member its own way
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    assert accuracy >= card["evaluation"]["leakage_free"]["accuracy"] - 0.03


def test_default_model_has_fitted_warnings(default_run, members) -> None:
    results = default_run.card.to_json()["results"]
    assert 0 < results["trust"]["min_confidence"] < 1
    rule = results["disagreement"]
    assert rule["fitted_on"].startswith(str(results["n_val"]))
    # fitted so that at most 4 % of correct validation answers carry a warning
    assert rule["correct_warned"] <= 0.04 + 1e-9
    for member in members:  # each member keeps its own fitted thresholds (its unfamiliar-slice warning)
        trust = member.card.to_json()["results"]["trust"]
        assert 0 < trust["min_confidence"] < 1 and trust["max_distance"] > 0


def test_default_model_keeps_a_sample_of_its_training_images_for_the_site_check(default_run, members) -> None:
    """A clinic has the model but not the training collection: the committed sample must describe exactly
    the default's networks, every class, and hold no pixels."""
    from core.evaluation.site_reference import REFERENCE_FILE, kept_reference

    reference, problem = kept_reference(default_run)
    assert problem is None and reference is not None
    assert reference.networks == {m.run_id: m.card.model_sha256 for m in members}
    assert np.bincount(reference.labels, minlength=4).min() >= 200 and len(reference.table) <= 1000
    assert all(f is not None and f.shape == (len(reference.table), 192) for f in reference.table.features.values())
    assert (default_run.path / REFERENCE_FILE).stat().st_size <= 2 * 1024 * 1024
    with np.load(default_run.path / REFERENCE_FILE, allow_pickle=False) as z:
        assert all(z[k].ndim <= 2 for k in z.files)
