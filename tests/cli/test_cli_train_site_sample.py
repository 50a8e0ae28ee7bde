"""``python -m core train`` keeps the site check's sample with the model it registers (unless told not to).

A model copied to a clinic has no training images beside it; the sample kept at training time is what lets
the site check run there. One tiny 1-epoch run per case on the synthetic demo dataset.
"""

from __future__ import annotations

import json

import pytest

from core.cli import main

pytestmark = pytest.mark.slow

TINY = ["--epochs", "1", "--image-size", "32", "--width", "0.25", "--max-batches", "2", "--json"]


def test_training_from_the_command_line_keeps_the_sample(demo_root, capsys):
    from core.evaluation.site_reference import kept_reference
    from core.models.runs import resolve_run

    assert main(["train", "--data", str(demo_root), *TINY]) == 0
    out = capsys.readouterr()
    run = resolve_run(json.loads(out.out)["run_id"])
    reference, problem = kept_reference(run)
    assert problem is None and set(reference.networks) == {run.run_id}
    assert "kept a sample of" in out.err  # the job's log line, on stderr beside --json


def test_no_site_sample_keeps_none(demo_root, capsys):
    from core.evaluation.site_reference import kept_reference
    from core.models.runs import resolve_run

    assert main(["train", "--data", str(demo_root), "--no-site-sample", *TINY]) == 0
    run = resolve_run(json.loads(capsys.readouterr().out)["run_id"])
    assert kept_reference(run) == (None, None)
