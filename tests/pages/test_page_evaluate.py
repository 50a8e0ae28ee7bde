"""The Evaluate page (AppTest): empty registry, a background evaluation through to the confusion
matrix and its gallery, results cached on disk, comparison of two runs, and refused folders."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data.demo import DEMO_VERSION

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = str(PROJECT_ROOT / "pages" / "4_Evaluate.py")
TIMEOUT = 120  # the first gallery loads TensorFlow and the model
MAX_POLLS = 60  # one second apart: the tiny evaluation takes a few seconds


@pytest.fixture(autouse=True)
def app_env(isolated_workbench_dirs: dict, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    cache = isolated_workbench_dirs["cache"]
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")  # the page's active dataset
    return isolated_workbench_dirs


def add_run(tiny_run, models: Path, name: str | None = None):
    from core.models.runs import resolve_run

    shutil.copytree(tiny_run.path, models / (name or tiny_run.run_id))
    return resolve_run(name or tiny_run.run_id)


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def wait_for_results(at: AppTest) -> AppTest:
    for _ in range(MAX_POLLS):
        if at.exception or "Confusion matrix" in texts(at.subheader):
            return at
        time.sleep(1.0)
        at.run()
    pytest.fail(f"the evaluation did not finish; errors: {texts(at.error)}")


def test_empty_registry_points_to_training():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("No trained models yet" in t for t in texts(at.info))


def test_background_evaluation_to_confusion_matrix_and_gallery(tiny_run, app_env):
    run = add_run(tiny_run, app_env["models"])
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("Not evaluated" in t for t in texts(at.info))

    at.button(key="evaluate_start").click().run()
    wait_for_results(at)
    assert not at.exception and not at.error
    assert len(at.metric) == 4 and at.metric[0].label == "Accuracy"
    assert len(at.get("download_button")) == 3

    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import cached_evaluation

    result = cached_evaluation(run, EvalSet("card_test"))
    assert result is not None  # the job cached it on disk
    first = result.predictions.iloc[0]
    at.toggle(key="evaluate_normalized").set_value(True).run()
    at.selectbox(key="evaluate_true").set_value(first["true"]).run()
    at.selectbox(key="evaluate_pred").set_value(first["predicted"]).run()
    assert not at.exception and not at.error
    from core.classes import display_name

    wanted = f"true {display_name(first['true'])} · predicted {display_name(first['predicted'])}"
    captions = [img.caption for el in at.get("image") for img in el.proto.imgs]
    assert any(wanted in c for c in captions)  # the cell's gallery (with Grad-CAM overlays)


def test_cached_results_show_without_a_new_job(tiny_run, app_env):
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run

    run = add_run(tiny_run, app_env["models"])
    evaluate_run(run, EvalSet("card_test"))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "Confusion matrix" in texts(at.subheader)
    assert any("No test image is a near-copy" in t for t in texts(at.caption))
    tables = [d.value for d in at.dataframe if "specificity" in d.value.columns]
    assert len(tables) == 1
    for column in ("precision", "recall", "specificity", "f1"):
        # Three decimals, or a dash where the figure is undefined: never "None", NaN or a made-up 0.
        assert all(re.fullmatch(r"[01]\.\d{3}|—", str(v)) for v in tables[0][column]), tables[0][column]


def test_robustness_stress_test_runs_from_the_page_and_is_cached(tiny_run, app_env):
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run
    from core.evaluation.robustness_eval import cached_robustness

    run = add_run(tiny_run, app_env["models"])
    evaluate_run(run, EvalSet("card_test"))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert "Robustness to other scanners and hospitals" in texts(at.subheader)
    assert not any("Largest drop" in t for t in texts(at.caption))
    at.button(key="evaluate_robustness").click().run()
    assert not at.exception and not at.error
    # Issue 14, item 13: the stress test is a background job (progress and Cancel), polled like an evaluation.
    for _ in range(MAX_POLLS):
        if any("Largest drop" in t for t in texts(at.caption)) or at.exception or at.error:
            break
        time.sleep(1.0)
        at.run()
    assert not at.exception and not at.error
    assert any("Largest drop" in t for t in texts(at.caption))
    table = at.dataframe[-1].value
    assert {"Condition", "Mistakes that carry a warning", "Correct answers that carry a warning"} <= set(table.columns)
    assert {"Re-framed to the head", "Unchanged"} <= set(table["Condition"])
    assert cached_robustness(run, EvalSet("card_test")) is not None
    again = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()  # a new session: shown at once
    assert any("Largest drop" in t for t in texts(again.caption))
    assert not [b for b in again.button if b.key == "evaluate_robustness"]


def test_the_warnings_are_counted_from_the_page(tiny_run, app_env):
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run

    run = add_run(tiny_run, app_env["models"])
    result = evaluate_run(run, EvalSet("card_test"))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert "Mistakes without a warning" in texts(at.subheader)
    at.button(key="evaluate_audit").click().run()
    assert not at.exception and not at.error
    for _ in range(MAX_POLLS):  # a background job, polled like the stress test
        tables = [d.value for d in at.dataframe if "Reading" in d.value.columns]
        if tables or at.exception or at.error:
            break
        time.sleep(1.0)
        at.run()
    assert not at.exception and not at.error
    (table,) = tables
    assert table["Reading"].iloc[0] == "Slice by slice"
    # "67% (2 of 3)" or "–" where nothing was wrong: a share with its count, never NaN or None.
    for column in ("Mistakes that carry a warning", "Correct answers that carry a warning",
                   "Wrong and unwarned (of all answers)"):
        assert all(re.fullmatch(r"\d+(\.\d)?% \(\d+ of \d+\)|–", v) for v in table[column]), table[column]
    n = result.metrics["n_images"]
    assert table["Wrong and unwarned (of all answers)"].iloc[0].endswith(f"of {n})")
    assert any(t.startswith(("Site check of these images together:", "The site check did not run:"))
               for t in texts(at.caption))


def test_testing_folder_shows_overlap_warning(tiny_run, app_env):
    from core.data.demo import demo_dir
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run

    run = add_run(tiny_run, app_env["models"])
    result = evaluate_run(run, EvalSet("dataset_test", str(demo_dir())))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.radio(key="evaluate_kind").set_value("dataset_test").run()
    # The cached result normally shows at once; once in a full CI run it did not (cause not found),
    # so do what a user would: press Evaluate if no results are shown, then wait for them.
    if "Confusion matrix" not in texts(at.subheader) and not at.button(key="evaluate_start").disabled:
        at.button(key="evaluate_start").click().run()
    wait_for_results(at)
    assert not at.exception
    assert result.n_overlapping > 0
    assert any(f"{result.n_overlapping} test images are near-copies" in t for t in texts(at.warning))


def test_two_runs_are_compared_and_best_is_marked(tiny_run, app_env):
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run

    runs = [add_run(tiny_run, app_env["models"]), add_run(tiny_run, app_env["models"], "20200101-000000-copy")]
    for r in runs:
        evaluate_run(r, EvalSet("card_test"))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.multiselect(key="evaluate_runs").set_value([r.run_id for r in runs]).run()
    assert not at.exception
    assert "Comparison on the same images" in texts(at.subheader)
    table = at.dataframe[0].value
    assert (table["Best"] == "★ best").sum() == 1
    assert not [c for c in table.columns if "_" in c]  # column names in words (issue 24)
    # The two runs are the same model on the same recorded test split: paired, they never disagree.
    paired = " ".join(m.value for m in at.markdown)
    assert "On the same" in paired and "never disagree" in paired


def test_folder_outside_data_roots_is_refused(tiny_run, app_env, tmp_path):
    add_run(tiny_run, app_env["models"])
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.radio(key="evaluate_kind").set_value("folder").run()
    at.text_input(key="evaluate_folder").set_value(str(tmp_path)).run()
    assert not at.exception
    assert any("outside the allowed data folders" in t for t in texts(at.error))
