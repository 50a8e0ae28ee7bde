"""Train an ensemble: its members one after another in the same background job, then registered together.

Members differ by seed (``cfg.seed + i``); with ``diverse_inputs`` every second member sees the
whole frame instead of the head crop, the kind of diversity that made the averaged probabilities
better than either model in the issue's probe (whole-frame and head-crop members). That member's
whole frame has its intensities standardised (``frame-eq-v1``): on validation a fast member fed
it reached 97.9 % and lost 0.2 points to darker mid-tones and 7 to another class's intensities,
against 96.8 %, 21 and 29 points for one fed the raw frame (bench/RESULTS.md section 14). That
member also trains with intensity-style mixing (core.data.style_mix) unless the settings already set
it: a head-crop member with such a partner lost 1.6 points to another class's intensities on
validation, against 7.7 with the unmixed partner, for 98.25 % against 98.36 % unshifted
(bench/RESULTS.md section 15). With ``sentinel`` one more model is trained on the raw whole
frame (no standardising, no mixing: it keeps reading the image's style) and registered as the
ensemble's sentinel, which never votes but warns when it answers otherwise
(:mod:`core.models.ensemble`; bench/RESULTS.md section 16). A cancel
stops the member in flight; members already trained stay registered as ordinary runs (they
are complete models), but no ensemble is registered.
"""

from __future__ import annotations

import dataclasses

from core.config import DataConfig
from core.data.datasets import Dataset
from core.data.preprocess import FRAME_EQ_ID, HEAD_ID, WHOLE_FRAME_ID
from core.data.scan import ScanReport
from core.errors import WorkbenchError
from core.jobs import Job
from core.models.runs import Run
from core.training.config import TrainConfig

MAX_MEMBERS = 5  # each member is a full training run
DIVERSE_STYLE_MIX = 0.5  # share of style-mixed examples for the members that take the other input


def member_configs(cfg: TrainConfig, n: int, diverse_inputs: bool = True) -> list[TrainConfig]:
    """The members' settings: ``cfg`` with seeds ``cfg.seed + i``; with ``diverse_inputs`` every second
    member takes the other input (head crop / standardised whole frame) and intensity-style mixing
    (:data:`DIVERSE_STYLE_MIX`, unless ``cfg`` sets its own)."""
    if not 2 <= n <= MAX_MEMBERS:
        raise WorkbenchError(f"an ensemble has from 2 to {MAX_MEMBERS} members (asked for {n})", "ensemble size")
    other = FRAME_EQ_ID if cfg.preprocessing == HEAD_ID else HEAD_ID
    diverse = dataclasses.replace(cfg, preprocessing=other, style_mix=cfg.style_mix or DIVERSE_STYLE_MIX)
    return [dataclasses.replace(diverse if (diverse_inputs and i % 2) else cfg, seed=cfg.seed + i) for i in range(n)]


def sentinel_config(cfg: TrainConfig, n: int) -> TrainConfig:
    """The sentinel's settings: ``cfg`` on the raw whole frame, without intensity-style mixing, seed
    ``cfg.seed + n`` (after the members'). Why raw: a model that still reads brightness and framing
    answers otherwise when they change, which is what its warning is for."""
    return dataclasses.replace(cfg, preprocessing=WHOLE_FRAME_ID, style_mix=0.0, seed=cfg.seed + n)


def train_ensemble(ds: Dataset, report: ScanReport, cfg: TrainConfig, job: Job, n: int,
                   data_cfg: DataConfig = DataConfig(), diverse_inputs: bool = True, sentinel: bool = False) -> Run:
    """Train ``n`` members (and, with ``sentinel``, a check model: :func:`sentinel_config`) one after
    another in ``job`` and register their ensemble; returns the ensemble run.

    Raises:
        JobCancelled: cancelled during a member (earlier members stay as ordinary runs).
        WorkbenchError: bad settings or data, or members that cannot form an ensemble.
    """
    from core.inference.ensemble_fit import register_ensemble
    from core.training.train import train_model

    runs = []
    plan = member_configs(cfg, n, diverse_inputs) + ([sentinel_config(cfg, n)] if sentinel else [])
    for i, member_cfg in enumerate(plan):
        job.clear_curves()  # each member's card records its own history
        mixing = f", intensity-style mixing {member_cfg.style_mix:.0%}" if member_cfg.style_mix else ""
        role = f"ensemble member {i + 1} of {n}" if i < n else "check model (warns only, never votes)"
        job.add_log(f"{role}: seed {member_cfg.seed}, {member_cfg.preprocessing}{mixing}")
        run = train_model(ds, report, member_cfg, job, data_cfg)
        if run is None:
            raise WorkbenchError("ensembles are trained on one machine (this worker is not the chief)", "ensemble")
        runs.append(run)
    members, watch = runs[:n], runs[n:]
    job.update(phase=f"Registering the ensemble of {n}", progress=0.99)
    ensemble = register_ensemble([m.run_id for m in members], root=members[0].path.parent,
                                 sentinels=[w.run_id for w in watch])
    job.add_log(f"registered ensemble {ensemble.run_id}")
    return ensemble
