"""Site pages (AppTest). Train: a tiny model adapted to a re-styled demo site,
from the form to the before/after table; and a refused site shows its message, not a traceback.
Predict & Explain: the batch site check (no verdict under 20 images, a warning for a shifted batch, none
for the run's own test images). Evaluate: the folder site check (verdict, domain AUC, too few images)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import core.jobs as jobs
from core.data.demo import DEMO_VERSION
from core.evaluation.site_check import MIN_IMAGES, SHIFT_ADVICE
from core.jobs import FINISHED, JobRegistry

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = str(PROJECT_ROOT / "pages" / "3_Train.py")


def _workbench(dirs: dict, demo_root: Path, tiny_run, monkeypatch, roots: Path) -> Path:
    """The demo as the pages' active dataset, the tiny run in the registry, ``roots`` the allowed data
    folders; returns the models folder."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    cache, models = dirs["cache"], dirs["models"]
    cache.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")  # the page's active dataset
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(roots))
    return models


@pytest.fixture
def env(isolated_workbench_dirs, demo_root, tiny_run, tmp_path, monkeypatch):
    from test_site import make_site

    models = _workbench(isolated_workbench_dirs, demo_root, tiny_run, monkeypatch, tmp_path)
    registry = JobRegistry()
    monkeypatch.setattr(jobs, "_REGISTRY", registry)
    st.cache_resource.clear()
    site = make_site(demo_root, tmp_path / "site")
    yield registry, site, models
    for job in registry.jobs():
        job.cancel()
        registry.wait(job, 60)
    st.cache_resource.clear()


@pytest.fixture(scope="module")
def ensemble_source(tmp_path_factory, demo_root):
    """Two tiny members and their ensemble (tests/training/test_adapt_ensemble.py's ``source``)."""
    from test_adapt_ensemble import build_ensemble_source

    return build_ensemble_source(tmp_path_factory.mktemp("page_ensemble"), demo_root)


def _adapt_mode(at: AppTest) -> AppTest:
    at.run()
    at.radio(key="train_what").set_value("Adapt an existing model to your images").run()
    assert not at.exception
    return at


def _run_adapt(at, registry, site):
    """Adapt to ``site`` for one epoch from the page, wait for the job, rerun: the page after it."""
    at.text_input(key="adapt_folder").set_value(str(site))
    at.number_input(key="adapt_epochs").set_value(1).run()
    at.button(key="adapt_start").click().run()
    assert not at.exception
    job = registry.jobs("adapt")[0]
    registry.wait(job, 600)
    assert job.status == "done", job.error
    at.run()
    assert not at.exception
    return at


def test_adapt_mode_runs_a_job_and_shows_the_before_after_table(env):
    registry, site, models = env
    at = _run_adapt(_adapt_mode(AppTest.from_file(PAGE, default_timeout=120)), registry, site)
    assert any("adapted to site from" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert list(table.columns) == ["images", "original model", "adapted model"] and len(table) == 2
    assert all(re.fullmatch(r"\d{1,3}\.\d %", v) for v in table["original model"])  # 96.7 %, not 0.9667
    # which weights were kept (a caption) and what the held-back images can show (the verdict's box)
    assert any(c.value.startswith("Kept ") for c in at.caption), [c.value for c in at.caption]
    assert any("held-back test images" in s.value.replace("\\", "") for s in [*at.info, *at.success, *at.warning])
    assert len([p for p in models.iterdir() if not p.name.startswith(".")]) == 2


def test_adapt_mode_shows_a_refusal_as_a_message(env, tmp_path):
    registry, site, models = env
    one = tmp_path / "one"
    shutil.copytree(site / "glioma", one / "glioma")
    at = _adapt_mode(AppTest.from_file(PAGE, default_timeout=120))
    at.text_input(key="adapt_folder").set_value(str(one)).run()
    at.button(key="adapt_start").click().run()
    job = registry.jobs("adapt")[0]
    registry.wait(job, 300)
    deadline = time.time() + 5
    while job.status not in FINISHED and time.time() < deadline:
        time.sleep(0.1)
    at.run()
    assert not at.exception
    assert any("at least 2 classes" in e.value for e in at.error)
    assert [p.name for p in models.iterdir()] == [next(models.iterdir()).name]


def test_adapt_mode_offers_and_runs_an_ensemble(env, request):
    """An ensemble is offered like any model; adapting it saves its adapted members and a new ensemble."""
    registry, site, models = env
    ens_models, ens_id, _ = request.getfixturevalue("ensemble_source")
    for folder in ens_models.iterdir():
        shutil.copytree(folder, models / folder.name)
    before = {p.name for p in models.iterdir()}
    at = _adapt_mode(AppTest.from_file(PAGE, default_timeout=120))
    assert any(o.startswith(f"{ens_id} · Ensemble of 2") for o in at.selectbox(key="adapt_parent").options)
    assert any("For an ensemble, each of its models is adapted" in c.value for c in at.caption)
    at.selectbox(key="adapt_parent").set_value(ens_id)
    at = _run_adapt(at, registry, site)
    shown = [s.value.replace("\\", "") for s in at.success]  # the run ids are Markdown-escaped
    assert any(f"adapted to site from {ens_id}" in v and "with its adapted models" in v for v in shown), shown
    assert len(at.dataframe[0].value) == 2
    assert len({p.name for p in models.iterdir()} - before) == 3  # two adapted members and their ensemble


# --------------------------------------------------------------------------------------------
# The site check sections: Predict & Explain (a batch of uploads) and Evaluate (a folder)
# --------------------------------------------------------------------------------------------

PREDICT_PAGE = str(PROJECT_ROOT / "pages" / "5_Predict_and_Explain.py")
EVALUATE_PAGE = str(PROJECT_ROOT / "pages" / "4_Evaluate.py")
LOOK_ALIKE = "look like the training images"


def _shown(elements) -> list[str]:
    """Texts as displayed: the pages escape Markdown."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def _verdicts(at: AppTest) -> list[str]:
    """Every displayed text that claims a site verdict either way."""
    texts = _shown(at.warning) + _shown(at.success) + _shown(at.info)
    return [t for t in texts if SHIFT_ADVICE in t or LOOK_ALIKE in t]


def _restyled(demo_root: Path, tmp: Path, n: int) -> list[Path]:
    """``n`` of the demo's held-out images re-styled as another scanner's (darker, 96 px, not 128)."""
    from test_site import make_site

    return sorted((make_site(demo_root, tmp)).rglob("*.png"))[:n]


def _uploads(paths: list[Path], suffix: str | None = None) -> list[tuple[str, bytes, str]]:
    return [(p.name if suffix is None else p.stem + suffix, p.read_bytes(), "image/png") for p in paths]


def _results(at: AppTest) -> list:
    """The Predict page's analysed results, as the page holds them (its RESULTS_KEY)."""
    return at.session_state["predict_results"][1]


@pytest.fixture
def predict_page(tiny_registry, monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    at = AppTest.from_file(PREDICT_PAGE, default_timeout=180).run()
    assert not at.exception, at.exception
    return at


def test_predict_batch_check_needs_twenty_images_then_warns_on_a_shifted_batch(predict_page, demo_root, tmp_path):
    at = predict_page
    shifted = _restyled(demo_root, tmp_path / "site", MIN_IMAGES)
    at.file_uploader(key="predict_uploads").set_value(_uploads(shifted[:MIN_IMAGES - 1])).run()
    assert not at.exception, at.exception
    assert not _verdicts(at) and "site_batch_result" not in at.session_state  # 19: no check, no claim

    at.file_uploader(key="predict_uploads").set_value(_uploads(shifted)).run()  # the same 19 and one more
    assert not at.exception, at.exception
    warnings = [w for w in _shown(at.warning) if SHIFT_ADVICE in w]
    assert len(warnings) == 1 and f"these {MIN_IMAGES} images" in warnings[0]
    auc = float(re.search(r"told them apart from the model's training images, AUC (\d\.\d\d)", warnings[0]).group(1))
    assert 0.64 <= auc <= 1.0  # the verdict rule's effect size, shown as a number
    # every slice carries it too (its box, the table, the CSV and its case report travel without the banner)
    results = _results(at)
    assert len(results) == MIN_IMAGES and all(r.flags.count("site_shift") == 1 for r in results)
    assert set(at.dataframe[0].value["Warnings"]) == {"batch unlike the training images"}

    at.file_uploader(key="predict_uploads").set_value(_uploads(shifted[:MIN_IMAGES - 1])).run()  # too few again
    assert not _verdicts(at) and not any("site_shift" in r.flags for r in _results(at))


def test_predict_batch_of_the_runs_own_test_images_is_not_flagged(predict_page, demo_root):
    # All of the demo's held-out Testing images (83), in the order a folder lists them: the same sample
    # that tests/training/test_site.py checks is not flagged. A 20-image subset would be a small sample
    # whose AUC may stray either way by chance; the full split makes "no shift" a firm expectation.
    own = sorted(p for p in (demo_root / "Testing").rglob("*") if p.is_file())
    at = predict_page
    at.file_uploader(key="predict_uploads").set_value(_uploads(own)).run()
    assert not at.exception, at.exception
    result = at.session_state["site_batch_result"]
    assert result.n_images == len(own) and result.domain_auc is not None  # the check did run
    assert result.shift_detected is False, result.to_json()
    assert not [w for w in _shown(at.warning) if SHIFT_ADVICE in w]
    assert not any("site_shift" in r.flags for r in _results(at))
    said = [c for c in _shown(at.caption) if "Site check on these" in c]
    assert len(said) == 1 and f"these {len(own)} images: they look like the training images" in said[0]


def test_predict_batch_check_reads_files_by_content_whatever_their_suffix(predict_page, demo_root, tmp_path,
                                                                        monkeypatch):
    """A Siemens-style '.IMA' name is decoded by content on this page; the site check must count it too.
    And in memory: the page promises that uploads never reach the disk."""
    import tempfile

    def no_disk(*a, **k):
        raise AssertionError("an upload was about to be written to disk")

    at = predict_page
    for name in ("TemporaryDirectory", "mkdtemp", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    shifted = _restyled(demo_root, tmp_path / "site", MIN_IMAGES)
    at.file_uploader(key="predict_uploads").set_value(_uploads(shifted, ".IMA")).run()
    assert not at.exception, at.exception
    assert not at.error, _shown(at.error)
    assert at.session_state["site_batch_result"].n_images == MIN_IMAGES
    assert any(SHIFT_ADVICE in w for w in _shown(at.warning))


def test_predict_batch_check_failing_never_shows_the_last_batch_verdict(predict_page, demo_root, tmp_path,
                                                                         monkeypatch):
    import pages._site as site_section
    from core.errors import WorkbenchError

    at = predict_page
    shifted = _restyled(demo_root, tmp_path / "site", MIN_IMAGES + 1)
    at.file_uploader(key="predict_uploads").set_value(_uploads(shifted[:MIN_IMAGES])).run()
    assert any(SHIFT_ADVICE in w for w in _shown(at.warning))

    def refuse(run, results, *a, **k):
        raise WorkbenchError("the model's training images are not on this machine", "x")

    monkeypatch.setattr(site_section, "check_results", refuse)
    at.file_uploader(key="predict_uploads").set_value(_uploads(shifted[1:])).run()  # another batch
    assert not at.exception, at.exception
    assert not at.error, _shown(at.error)  # the answers stand: the check's absence is information, not an error
    assert any(i.startswith("Site check of this batch not run: ") and "not on this machine" in i
               for i in _shown(at.info))
    assert not _verdicts(at) and not any("site_shift" in r.flags for r in _results(at))


@pytest.fixture
def evaluate_page(isolated_workbench_dirs, demo_root, tiny_run, tmp_path, monkeypatch):
    _workbench(isolated_workbench_dirs, demo_root, tiny_run, monkeypatch, tmp_path / "roots")
    at = AppTest.from_file(EVALUATE_PAGE, default_timeout=180).run()
    assert not at.exception, at.exception
    return at, tmp_path / "roots"


def _check_folder(at: AppTest, folder: Path) -> AppTest:
    at.text_input(key="site_check_folder").set_value(str(folder)).run()
    at.button(key="site_check_go").click().run()
    assert not at.exception, at.exception
    return at


def test_evaluate_site_check_flags_a_restyled_site_with_its_domain_auc(evaluate_page, demo_root):
    from test_site import make_site, n_demo_test

    at, roots = evaluate_page
    site = make_site(demo_root, roots / "hospital_b")
    _check_folder(at, site)
    warnings = [w for w in _shown(at.warning) if SHIFT_ADVICE in w]
    assert len(warnings) == 1, _shown(at.warning)
    auc, lo, hi = map(float, re.search(r"Domain AUC (\d\.\d\d) \(95 % interval (\d\.\d\d)–(\d\.\d\d)",
                                       warnings[0]).groups())
    assert 0.5 < lo <= auc <= hi <= 1.0 and auc >= 0.64
    signals = at.dataframe[0].value
    assert list(signals.columns) == ["signal", "AUC"] and len(signals) == 5
    assert signals["AUC"].between(0, 1).all() and signals["AUC"].max() > 0.9  # 96 px files against 128 px
    captions = " ".join(_shown(at.caption))
    assert f"{n_demo_test(demo_root)} site images against" in captions and "To adapt" in captions
    assert "drawn in the mix of classes the model finds in these images (" in captions  # how the sample was drawn

    # A refused folder shows its reason and takes the last verdict away.
    _check_folder(at, demo_root / "Testing")  # real, but outside the data roots
    assert any("outside the allowed data folders" in e for e in _shown(at.error))
    assert not _verdicts(at)


def test_evaluate_site_check_says_when_images_look_like_the_training_ones(evaluate_page, demo_root):
    at, roots = evaluate_page
    shutil.copytree(demo_root / "Testing", roots / "same_scanner")
    _check_folder(at, roots / "same_scanner")
    assert not any(SHIFT_ADVICE in w for w in _shown(at.warning))
    looks = [s for s in _shown(at.success) if LOOK_ALIKE in s]
    assert len(looks) == 1 and re.search(r"domain AUC 0\.[0-6]\d", looks[0])


def test_evaluate_site_check_with_too_few_images_gives_no_verdict(evaluate_page, demo_root):
    from test_site import make_site

    at, roots = evaluate_page
    few = make_site(demo_root, roots / "few", per_class=4)  # 16 images
    _check_folder(at, few)
    assert not _verdicts(at)
    infos = [i for i in _shown(at.info) if "Only 16 readable images" in i]
    assert len(infos) == 1 and f"at least {MIN_IMAGES}" in infos[0]
    assert "AUC" not in " ".join(_shown(at.info) + _shown(at.caption))


def test_predict_batch_check_reruns_for_new_files_with_the_same_names_and_sizes(predict_page, demo_root):
    """Uncompressed BMPs of one size all weigh the same: a second batch named like the first is new files."""
    import numpy as np
    from conftest import encode
    from PIL import Image

    own = sorted((demo_root / "Testing").rglob("*.png"))[:MIN_IMAGES]
    gray = [np.asarray(Image.open(p).convert("L")) for p in own]

    def batch(images) -> list[tuple[str, bytes, str]]:
        return [(f"slice_{i:02d}.bmp", encode(px, "BMP"), "image/bmp") for i, px in enumerate(images)]

    inverted, plain = batch([255 - px for px in gray]), batch(gray)
    assert [(n, len(b)) for n, b, _ in inverted] == [(n, len(b)) for n, b, _ in plain]
    at = predict_page
    at.file_uploader(key="predict_uploads").set_value(inverted).run()
    first = at.session_state["site_batch_result"]
    assert first.shift_detected is True and any(SHIFT_ADVICE in w for w in _shown(at.warning))
    at.file_uploader(key="predict_uploads").set_value(plain).run()
    assert not at.exception, at.exception
    second = at.session_state["site_batch_result"]
    assert second is not first and second.domain_auc is not None  # checked again, not the first verdict
    assert any(SHIFT_ADVICE in w for w in _shown(at.warning)) is bool(second.shift_detected)  # shown as found


def test_evaluate_keeps_a_sample_of_the_training_images_with_the_model(evaluate_page, demo_root, tiny_run):
    from core.evaluation.site_reference import REFERENCE_FILE
    from core.models.runs import resolve_run

    at, roots = evaluate_page
    run = resolve_run(tiny_run.run_id)
    assert any("No sample of the training images is kept with this model" in c for c in _shown(at.caption))
    at.button(key="site_keep_sample").click().run()
    assert not at.exception, at.exception
    assert (run.path / REFERENCE_FILE).is_file()
    assert any(c.startswith(":material/inventory_2: Compared with training images drawn from a sample of")
               for c in _shown(at.caption))
    assert not [b for b in at.button if b.key == "site_keep_sample"]  # kept: nothing more to offer
    shutil.copytree(demo_root / "Testing", roots / "same_scanner")
    _check_folder(at, roots / "same_scanner")
    assert any("kept with the model" in c and "site images against" in c for c in _shown(at.caption))
