"""An ensemble as the model on the Evaluate and Predict & Explain pages (AppTest): the site check
(folder and batch), the heat-map localisation score and the export, each without a traceback."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data.demo import DEMO_VERSION
from core.evaluation.site_check import MIN_IMAGES, SHIFT_ADVICE

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180  # the first heat maps load TensorFlow and both members


def _shown(elements) -> list[str]:
    """Texts as displayed: the pages escape Markdown."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


@pytest.fixture
def ensemble(tiny_ensemble, isolated_workbench_dirs, demo_root, tmp_path, monkeypatch):
    """The tiny ensemble (and its members) in this test's registry, the demo as the active dataset."""
    from core.models.runs import resolve_run

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    cache, models = isolated_workbench_dirs["cache"], isolated_workbench_dirs["models"]
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_root, cache / f"demo-v{DEMO_VERSION}-seed0")
    shutil.copytree(tiny_ensemble.path.parent, models)
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(tmp_path / "roots"))
    return resolve_run(tiny_ensemble.run_id)


def test_evaluate_page_scores_the_heat_maps_exports_and_checks_a_site_for_an_ensemble(ensemble, demo_root,
                                                                                       tmp_path):
    from test_site import make_site

    from core.data.demo import demo_dir
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run

    active = demo_dir()
    boxed = sorted((active / "Testing" / "glioma").glob("*.png"))[:4]
    (active / "tumour_boxes.csv").write_text("file,class,x0,y0,x1,y1\n" + "".join(
        f"{p.relative_to(active).as_posix()},glioma,0.3,0.3,0.7,0.7\n" for p in boxed))
    evaluate_run(ensemble, EvalSet("dataset_test", str(active)))  # cached on disk: the page shows it at once
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "4_Evaluate.py"), default_timeout=TIMEOUT).run()
    at.multiselect(key="evaluate_runs").set_value([ensemble.run_id]).run()
    at.radio(key="evaluate_kind").set_value("dataset_test").run()
    assert not at.exception, at.exception

    at.button(key="evaluate_localisation").click().run()
    assert not at.exception and not at.error, (at.exception, _shown(at.error))
    shown = {m.label: m.value for m in at.metric}
    assert 1 <= int(shown["Images with a box"]) <= len(boxed)
    assert shown["Peak inside the tumour box"].endswith("%")

    assert len(at.selectbox(key="evaluate_export_format").options) == 1  # one Keras file, one input per member
    at.button(key="evaluate_export_build").click().run()
    assert not at.exception and not at.error, (at.exception, _shown(at.error))
    assert [b for b in at.get("download_button") if b.key == "evaluate_export_download"]

    site = make_site(demo_root, tmp_path / "roots" / "hospital_b")
    at.text_input(key="site_check_folder").set_value(str(site)).run()
    at.button(key="site_check_go").click().run()
    assert not at.exception and not at.error, (at.exception, _shown(at.error))
    assert any(SHIFT_ADVICE in w for w in _shown(at.warning))
    (table,) = [d.value for d in at.dataframe if "signal" in d.value.columns]  # the site check's signals
    members = [s for s in table["signal"] if "of the ensemble alone" in s]  # one row per member
    assert len(members) == 2 and all(m["run_id"] in " ".join(members) for m in ensemble.card.members)


def test_predict_page_batch_site_check_warns_for_an_ensemble(ensemble, demo_root, tmp_path):
    from test_site import make_site

    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "5_Predict_and_Explain.py"), default_timeout=TIMEOUT).run()
    at.selectbox(key="predict_model").set_value(ensemble.run_id).run()
    shifted = sorted(make_site(demo_root, tmp_path / "site").rglob("*.png"))[:MIN_IMAGES]
    at.file_uploader(key="predict_uploads").set_value([(p.name, p.read_bytes(), "image/png") for p in shifted])
    at.run()
    assert not at.exception, at.exception
    result = at.session_state["site_batch_result"]
    assert result.n_images == MIN_IMAGES and "model_features" in result.signals
    # every member's features reach the check (from the prediction's own pass); the per-member AUCs are the
    # Evaluate page's detail, not computed for a batch the Predict page only needs a verdict for
    networks = {m["run_id"] for m in [*ensemble.card.members, *ensemble.card.sentinels]}
    assert all(set(r.features) == networks for r in at.session_state["predict_results"][1])
    assert "members" not in result.signals["model_features"]
    assert any(SHIFT_ADVICE in w for w in _shown(at.warning))
