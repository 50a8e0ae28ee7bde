"""Site adaptation of an ensemble run: its members adapted on ONE site split, then a new ensemble of them.

By principle:

- **one split**: the site is scanned, checked and split once (copies of training images found
  against the ensemble's ``train_hashes``, the union of its members'); each member then reads the
  same files per part with its own preprocessing and image size (:meth:`SiteData.read_for`), so
  every member is tuned, stopped early, recalibrated and tested on the same images;
- **the single-model recipe per member** (:func:`core.training.adapt.adapt_staged`): replay of that
  member's own training images, the forgetting guard, early stopping, recalibration and warnings
  refitted on the site's validation part;
- **a new ensemble of the adapted members**: its card takes the files common to its members
  (:func:`core.models.ensemble.ensemble_card`), which are the site's validation and test parts, so
  its warnings, disagreement rule and prediction sets are fitted on the site's validation part
  (:func:`core.inference.ensemble_fit.fit_ensemble`); its lineage is that of an adapted run;
- **nothing half-done**: every new run is assembled in a staging folder; only when all are ready
  and the parent ensemble and its members are unchanged are the members, then the ensemble,
  renamed into the registry as one group (:mod:`core.models.publish_group`). A cancel, a failure
  or a crash leaves no new run in view.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import WorkbenchError
from core.jobs import Job
from core.training.adapt import (
    AdaptConfig,
    AdaptResult,
    StagedRun,
    adapt_model,
    adapt_staged,
    card_digest,
    check_parent_unchanged,
    kept_note,
    log_site,
    named_table,
    scores,
    source_test_files,
)

MEMBERS_SHARE = 0.9  # of the progress bar: the members' adaptation; the rest is the split and the ensemble fit


def adapt_run(parent, folder: str | Path, cfg: AdaptConfig, job: Job) -> AdaptResult:
    """Adapt any registered run to the labelled site in ``folder``: one network with
    :func:`core.training.adapt.adapt_model`, an ensemble with :func:`adapt_ensemble`."""
    return adapt_ensemble(parent, folder, cfg, job) if parent.card.is_ensemble else adapt_model(parent, folder, cfg, job)


def adapt_ensemble(parent, folder: str | Path, cfg: AdaptConfig, job: Job) -> AdaptResult:
    """Adapt every member of the ensemble run ``parent`` to the labelled site in ``folder``; register
    the adapted members and a new ensemble of them. ``result.members`` lists the adapted members.

    Raises:
        JobCancelled: the user cancelled; nothing is left in the registry.
        WorkbenchError: bad site data, a member missing or changed (before or during), or missing
            training images.
    """
    from core.models.ensemble import member_runs, sentinel_runs
    from core.training.adapt_data import split_site

    t0 = time.perf_counter()
    members = member_runs(parent)  # each member's file checked against the ensemble's card
    # Sentinels are carried over unadapted: they answer for the warnings only, and the new ensemble's
    # fit on the site's validation part decides whether their differing answers still warn.
    watch = sentinel_runs(parent)
    digests = [card_digest(parent)] + [card_digest(m) for m in (*members, *watch)]
    job.update(phase="Reading the site's images", progress=0.01, epochs=cfg.epochs)
    site = split_site(folder, parent, seed=cfg.seed)
    log_site(job, site)
    job.check_cancelled()
    staged: list[StagedRun] = []
    folders: list[Path] = []  # staging folders to remove on a cancel or failure
    share = MEMBERS_SHARE / len(members)
    try:
        for i, member in enumerate(members):
            # checked before each step that reads a member, so a deleted one is said, not a missing-file error
            check_ensemble_unchanged(parent, [*members, *watch], digests)
            stage = job.stage(0.02 + i * share, 0.02 + (i + 1) * share, f"Model {i + 1} of {len(members)}: ")
            job.clear_curves()  # each member's card records its own history
            job.add_log(f"adapting member {i + 1} of {len(members)}: {member.run_id} "
                        f"({member.preprocessing}, {member.image_size} px)")
            member_site = site.read_for(member, stage.stage(0.0, 0.04).counter("Reading the site's images"))
            staged.append(adapt_staged(member, member_site, cfg, stage))
            folders.append(staged[-1].stage)
        check_ensemble_unchanged(parent, [*members, *watch], digests)  # the parent members are scored again below
        ensemble, before, after = _stage_ensemble(parent, members, staged, site, cfg,
                                                  job.stage(0.02 + MEMBERS_SHARE, 1.0, "Ensemble: "), folders,
                                                  time.perf_counter() - t0, watch)
        check_ensemble_unchanged(parent, [*members, *watch], digests)
        job.check_cancelled()
        published = _publish_all(staged, ensemble)
    except BaseException:
        for path in folders:
            shutil.rmtree(path, ignore_errors=True)  # cancelled or failed: nothing half-done is left
        raise
    job.add_log(f"saved ensemble {published.path} of {', '.join(s.run.run_id for s in staged)}")
    names = list(parent.class_names)
    return AdaptResult(published, named_table(before, names), named_table(after, names), published.lineage["site"],
                       members=[s.run.run_id for s in staged],
                       kept=[f"{s.run.run_id}: {kept_note(s.run)}" for s in staged])


def _stage_ensemble(parent, members, staged: list[StagedRun], site, cfg: AdaptConfig, job, folders: list[Path],
                    seconds: float, watch=()):
    """The new ensemble in its staging folder: the before/after table, its card and lineage, its fit."""
    from core.inference.ensemble_fit import fit_ensemble
    from core.models.ensemble import check_members, ensemble_card
    from core.models.runs import CARD_FILE, Run, new_run_id, staging_dir, write_card
    from core.training.adapt_card import lineage_record

    adapted = [s.run for s in staged]
    check_members(adapted, watch)
    job.update(phase="Scoring the ensembles before and after", progress=0.0)
    before = ensemble_table(parent, members, site, job.stage(0.0, 0.3).counter("Scoring the original ensemble"))
    after = ensemble_table(parent, adapted, site, job.stage(0.3, 0.6).counter("Scoring the adapted ensemble"))
    job.check_cancelled()
    run_id = new_run_id(f"ensemble{len(adapted)}")
    stage = staging_dir(run_id)
    folders.append(stage)
    recipe = {**cfg.to_dict(),
              "members": "each member adapted with the single-model recipe (its own replayed training images, "
                         "forgetting guard, early stopping, recalibration) on one split of the site",
              "recalibrated_on": "the site's validation part (each member's temperature and warnings; the "
                                 "ensemble's warnings, disagreement rule and prediction sets)"}
    lineage = lineage_record(parent, site, recipe, before, after)
    lineage["members"] = {"parent": [m.run_id for m in members], "adapted": [r.run_id for r in adapted]}
    if watch:
        lineage["members"]["sentinels"] = [r.run_id for r in watch]  # carried over as they were
    card = ensemble_card(adapted, run_id, parent.card.arch_title or None, watch)
    card = card.replace(extra={"lineage": lineage}, timings={"train_seconds": round(seconds, 1)})
    write_card(stage / CARD_FILE, card)
    job.update(phase="Fitting the warnings and prediction sets on the site's validation images", progress=0.6)
    run = fit_ensemble(Run(run_id, stage, card), adapted, watch)
    job.check_cancelled()
    return run, before, after


def ensemble_table(parent, members, site, progress=None) -> dict[str, Any]:
    """Accuracy of the averaged calibrated probabilities of ``members`` on the site's test part and on
    the parent ensemble's own held-out test: ``{"site": scores, "source": scores}`` as a single model's
    lineage records them (:func:`core.training.adapt.scores`)."""
    from core.inference.ensemble_fit import loaded_members, member_probabilities
    from core.inference.ensemble_warnings import average

    src_paths, src_labels = source_test_files(parent)
    parts = {"site": (site.abspaths("test"), site.y["test"], site.ds.fingerprint),
             "source": (src_paths, src_labels, None)}
    models = loaded_members(members)  # both parts run the same networks: each file is read and verified once
    table = {}
    for part, (paths, labels, fingerprint) in parts.items():
        pred = (average(member_probabilities(members, paths, fingerprint, progress, models=models)).argmax(axis=1)
                if len(paths) else np.zeros(0, np.int64))
        table[part] = scores(pred, np.asarray(labels), len(parent.class_names))
    return table


def check_ensemble_unchanged(parent, members, digests: list[str]) -> None:
    """Raise when the parent ensemble or one of its members was deleted or changed meanwhile.

    Raises:
        WorkbenchError: in plain words; nothing has been published.
    """
    try:
        same = card_digest(parent) == digests[0]
    except (OSError, ValueError):  # gone, or a card that no longer reads
        same = False
    if not same:
        raise WorkbenchError("the ensemble being adapted was deleted or changed while it was adapted, so the "
                             "adapted ensemble cannot be trusted and nothing was saved. Choose the model again "
                             "and restart.", parent.run_id)
    for member, digest in zip(members, digests[1:]):
        try:
            check_parent_unchanged(member, digest)
        except WorkbenchError:
            raise WorkbenchError(f"model {member.run_id}, one of the ensemble's members, was deleted or changed "
                                 "while the ensemble was adapted, so the adapted ensemble cannot be trusted and "
                                 "nothing was saved. Choose the model again and restart.", member.run_id) from None


def _publish_all(staged: list[StagedRun], ensemble) -> Any:
    """Publish the members and the ensemble as one group (:func:`core.models.publish_group.publish_group`):
    a failure, or a crash, part-way leaves no new run in view."""
    from core.models.publish_group import publish_group

    return publish_group([(s.stage, s.run.run_id) for s in staged], ensemble.path, ensemble.run_id)
