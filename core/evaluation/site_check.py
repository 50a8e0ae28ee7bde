"""The site check: do a site's images look like the images a model was trained on? No labels needed.

A classifier learns to tell the site's images from a sample of the run's training images,
cross-validated, and its out-of-fold AUC is the answer (0.5: indistinguishable; 1.0: every
site image recognisable). This is the "classifier two-sample test" (Lopez-Paz & Oquab 2017)
and the "domain classifier" of dataset-shift detection (Rabanser et al. 2019). One AUC per
kind of signal says *what* differs: brightness, framing, image size, colour mode, or what the
network itself sees (its pooled features; for an ensemble every member's, each on its own input,
:mod:`core.evaluation.site_features`). The overall AUC, the verdict's, reads the picture only
(brightness, framing, the network's features): the files' size and colour mode are reported beside it
(:data:`FILE_SIGNALS`), since the model never sees them.

Verdict, by principle: a shift is reported when the AUC's 95 % interval excludes 0.5 (the
difference is real, not noise) **and** the AUC is at least :data:`MIN_EFFECT_AUC` (the
difference is large enough to matter). 0.64 is the AUC of a "medium" effect (Cohen's d = 0.5,
AUC = Φ(d/√2)); with hundreds of images a significance test alone flags trivial differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.classes import display_name, folder_class_indices
from core.data.site_images import Source, list_site_files, read_sample, sample_of_images
from core.errors import WorkbenchError
from core.evaluation.site_features import (
    class_shares,
    components_per_network,
    feature_runs,
    keep_only,
    model_inputs,
    network_outputs,
    principal_components,
)
from core.evaluation.site_reference import REFERENCE_FILE, SideTable, SiteReference, load_reference
from core.inference.notices import MIN_IMAGES
from core.models.lineage import reference_files

MIN_EFFECT_AUC = 0.64  # Cohen's d = 0.5 ("medium") expressed as an AUC: Φ(0.5 / √2)
REFERENCE_MAX = 500  # training images sampled for the comparison (time bound)
REFERENCE_MIN = 200
SITE_MAX = 1000
FOLDS = 5
NEAR_BITS = 20  # the scan's near-duplicate threshold (bits of 256)

#: signal key -> (plain name, columns of the feature table)
SIGNALS: dict[str, tuple[str, tuple[str, ...]]] = {
    "intensity": ("Brightness and contrast inside the head", ("p10", "p50", "p90", "spread")),
    "framing": ("Framing: background share, head box size and shape", ("background", "box_fill", "aspect")),
    "image_size": ("Image size in pixels (width, height)", ("width", "height")),
    "colour_mode": ("Colour mode of the files (grayscale or colour)", ("gray_mode", "colourfulness")),
    "model_features": ("What the network itself sees (its pooled features)", ()),  # an ensemble: every member's
}
#: Properties of the files, not of the picture the model reads (every image becomes grayscale at the model's
#: own size): reported, never part of the verdict. Neighbouring files of one class from the model's own test
#: split were told apart by their colour mode alone (AUC 0.71-0.81: one collection saved its JPEGs as RGB),
#: which would have warned on every slice of such a batch for a difference the model never sees.
FILE_SIGNALS = frozenset({"image_size", "colour_mode"})
#: A classifier that tells the batch apart cannot say whether it is another site or one corner of the training
#: collection (it merges three older collections: 20 held-out glioma slices of one numbering range were told
#: apart at AUC 0.80-0.88), so the words name both and do not claim more than the test shows.
SHIFT_ADVICE = ("These images can be told apart from the training images: they may come from another scanner or "
                "site, or resemble only one part of the training collection. The accuracy on the model card may "
                "not hold for them: measure it on a labelled sample of such images, or adapt the model.")


@dataclass
class SiteCheck:
    """What the site check found. ``domain_auc`` is None when there were too few images to judge."""

    n_images: int
    n_reference: int
    domain_auc: float | None
    auc_interval: tuple[float, float] | None
    shift_detected: bool | None
    signals: dict[str, dict[str, Any]]  # key -> {"name", "auc"}
    advice: str
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    #: class -> share of the site's images the model assigns to it; the training sample follows these shares
    class_mix: dict[str, float] = field(default_factory=dict)
    #: where the training images compared with came from: the sample kept with the model, or the training folder
    reference: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["unreadable"] = [{"path": p, "reason": r} for p, r in self.unreadable]
        out["auc_interval"] = list(self.auc_interval) if self.auc_interval else None
        return out


def auc_interval(auc: float, n_pos: int, n_neg: int, z: float = 1.96) -> tuple[float, float]:
    """95 % interval of an AUC from the Hanley & McNeil (1982) standard error."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    se = float(np.sqrt(max(var, 0.0)))
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


def is_shift(auc: float, interval: tuple[float, float]) -> bool:
    """The verdict rule (see the module docstring): real (interval above 0.5) and large enough."""
    return interval[0] > 0.5 and auc >= MIN_EFFECT_AUC


def near_groups(site: SideTable, reference: SideTable, threshold: int = NEAR_BITS) -> np.ndarray:
    """One group id per row (site rows first): near-duplicates share one, so cross-validation keeps them
    in one fold (a classifier that saw one copy would otherwise "recognise" its twin)."""
    from core.data.hashing import group_pairs, near_pairs

    if site.hashes is None or reference.hashes is None:
        return np.arange(len(site) + len(reference))
    hashes = np.concatenate([site.hashes, reference.hashes])
    return group_pairs(len(hashes), near_pairs(hashes, threshold))


def domain_auc(features: np.ndarray, is_site: np.ndarray, seed: int = 0, groups: np.ndarray | None = None) -> float:
    """Cross-validated (5-fold, near-duplicates in one fold) AUC of a classifier telling site from reference."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    x = np.nan_to_num(np.asarray(features, dtype=np.float64))
    if x.shape[1] == 0 or np.all(x.std(axis=0) == 0):
        return 0.5  # nothing varies: nothing can tell the two apart
    clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                                         min_samples_leaf=10, random_state=seed)
    cv = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    groups = np.arange(len(x)) if groups is None else groups
    with threadpool_limits(1):  # one thread: spin-waiting pools cost 20x on a busy 2-core server
        prob = cross_val_predict(clf, x, is_site, cv=cv, groups=groups, method="predict_proba")[:, 1]
    return float(roc_auc_score(is_site, prob))


def compare(site: SideTable, reference: SideTable, seed: int = 0,
            per_network: bool = True) -> tuple[float, dict[str, dict[str, Any]]]:
    """(overall AUC, per-signal AUCs) of site vs reference tables.

    Each table's ``features`` map each network's run id to its pooled features (one entry for a single
    model, one per member for an ensemble; None: no 'features' layer). Each network's features are
    reduced on their own (the components shared out by
    :func:`core.evaluation.site_features.components_per_network`) and set side by side as the one
    ``model_features`` signal; with several networks and ``per_network`` the signal also lists each one's
    AUC under ``members`` (run id -> AUC), so a shift only one member's input shows can be named.
    """
    y = np.r_[np.ones(len(site)), np.zeros(len(reference))].astype(int)
    groups = near_groups(site, reference)
    nets = [k for k in site.features if site.features[k] is not None and reference.features.get(k) is not None]
    blocks, signals = [], {}  # blocks: the verdict's signals only (FILE_SIGNALS are reported beside it)
    for key, (name, columns) in SIGNALS.items():
        if key == "model_features":
            if not nets:
                continue
            k_each = components_per_network(len(nets))
            parts = {k: principal_components(np.r_[site.features[k], reference.features[k]], seed, k_each)
                     for k in nets}
            x = np.hstack(list(parts.values()))
        else:
            x = np.r_[site.stats[list(columns)].to_numpy(), reference.stats[list(columns)].to_numpy()]
        if key not in FILE_SIGNALS:
            blocks.append(x)
        signals[key] = {"name": name, "auc": round(domain_auc(x, y, seed, groups), 4), "verdict": key not in FILE_SIGNALS}
        if key == "model_features" and len(nets) > 1 and per_network:
            signals[key]["members"] = {k: round(domain_auc(v, y, seed, groups), 4) for k, v in parts.items()}
    overall = domain_auc(np.hstack(blocks), y, seed, groups)
    return overall, signals


def matched_sample(labels: np.ndarray, shares: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """Sorted indices of up to ``n`` reference images whose classes follow ``shares`` (largest remainder).

    Why: the domain classifier would otherwise tell a batch of one tumour type (a tumour clinic's
    uploads) from a training sample of all four classes by its *content*, and report a new site where
    there is none; drawn in the batch's own class mix, only how the images look can differ.
    A class with too few reference images gives what it has. ``labels``: class index per image (-1:
    unknown, never drawn).
    """
    shares = np.clip(np.asarray(shares, dtype=np.float64), 0.0, None)
    if shares.sum() <= 0:
        return sorted(int(i) for i in rng.choice(len(labels), min(n, len(labels)), replace=False))
    want = shares / shares.sum() * n
    quota = np.floor(want).astype(int)
    for k in np.argsort(-(want - quota))[: n - quota.sum()]:
        quota[k] += 1
    chosen: list[int] = []
    for k, q in enumerate(quota):
        pool = np.flatnonzero(labels == k)
        chosen += [int(i) for i in rng.choice(pool, min(q, len(pool)), replace=False)] if len(pool) else []
    return sorted(chosen)


def network_names(run) -> dict[str, str]:
    """Run id -> how the per-network AUCs name it: "model 2 of the ensemble", or "the ensemble's check model"
    for a sentinel (it reads the images beside the models but never votes)."""
    card = run.card
    names = {m.get("run_id"): f"model {j} of the ensemble" for j, m in enumerate(card.members, start=1)}
    names.update({m.get("run_id"): "the ensemble's check model" for m in card.sentinels})
    return names


def class_mix_sentence(check: SiteCheck) -> str | None:
    """How the training sample was drawn, for the reader (None when there was no comparison)."""
    if not check.class_mix or check.domain_auc is None:
        return None
    mix = ", ".join(f"{display_name(c)} {100 * v:.0f} %" for c, v in
                    sorted(check.class_mix.items(), key=lambda cv: -cv[1]))
    return (f"The training images were drawn in the mix of classes the model finds in these images ({mix}), so "
            "that a batch of mostly one kind of tumour is not mistaken for images from another site.")


def advice_for(auc: float | None, shift: bool | None, signals: dict[str, dict[str, Any]], n: int) -> str:
    """Plain words for the verdict."""
    if auc is None:
        return (f"Only {n} readable images: at least {MIN_IMAGES} are needed to say whether they differ from the "
                "training images. Add more images from this site and check again.")
    if not shift:
        return (f"These images look like the training images (domain AUC {auc:.2f}; 0.5 means "
                "indistinguishable). The model card's figures are a reasonable first guide; a labelled sample "
                f"from this site remains the only proof.{file_sentence(signals)}")
    strong = [s["name"].split(" (")[0].lower() for k, s in signals.items()
              if s["auc"] >= MIN_EFFECT_AUC and k not in FILE_SIGNALS]
    which = f" They differ most in: {'; '.join(strong)}." if strong else ""
    return f"{SHIFT_ADVICE} (domain AUC {auc:.2f}; 0.5 means indistinguishable.){which}{file_sentence(signals)}"


def file_sentence(signals: dict[str, dict[str, Any]]) -> str:
    """" Their files also differ in: …" for file properties the verdict leaves out ("" when none differ)."""
    files = [s["name"].split(" (")[0].lower() for k, s in signals.items()
             if k in FILE_SIGNALS and s["auc"] >= MIN_EFFECT_AUC]
    if not files:
        return ""
    return (f" Their files also differ in: {'; '.join(files)}. The model reads every image as grayscale at its own "
            "size, so that alone does not change its answers and is left out of the verdict.")


def site_check(run, folder: str | Path, seed: int = 0, progress=None) -> SiteCheck:
    """Compare the images in ``folder`` with a sample of ``run``'s training images.

    Args:
        run: a registered run (its card names the training folder and held-out files).
        folder: any folder of images; sub-folder names are ignored.
        progress: optional callable(fraction, phase).

    Raises:
        WorkbenchError: the folder is missing or empty, or the training images are not here.
    """
    root = Path(folder).expanduser()
    return check_paths(run, list_site_files(root), root, seed, progress)


def check_paths(run, paths: list[Source], root: Path | None = None, seed: int = 0, progress=None) -> SiteCheck:
    """:func:`site_check` on a list of image files, or of uploads held in memory as (name, bytes)
    (``root``: for naming unreadable files)."""
    import time

    t0 = time.perf_counter()
    note = progress or (lambda *_: None)
    rng = np.random.default_rng(seed)
    if len(paths) > SITE_MAX:
        paths = [paths[i] for i in sorted(rng.choice(len(paths), SITE_MAX, replace=False))]
    nets = feature_runs(run)  # an ensemble's members, checked against its card before any work
    stored = _stored_or_none(run, nets)
    note(0.05, "Reading the site's images")
    site = read_sample(paths, model_inputs(nets), root=root)
    if len(site) < MIN_IMAGES:
        return _too_few(len(site), site.unreadable, t0)
    # before the networks run: no kept sample and no training images here, nothing to compare with
    ref_paths = None if stored is not None else _training_files(run)
    keep_only(nets)
    note(0.3, "Running the model" if len(nets) == 1 else f"Running the {len(nets)} models")
    site_out = network_outputs(nets, site)
    voters = len(run.card.members) if run.card.is_ensemble else 1  # sentinels follow the members and never vote
    shares = class_shares(nets[:voters], site_out[:voters])
    table = SideTable.of(site, {r.run_id: o.features for r, o in zip(nets, site_out)})
    return _judge(run, nets, table, site.unreadable, shares, stored or ref_paths, rng, seed, t0, note,
                  per_network=True)


def check_results(run, results: Sequence, seed: int = 0) -> SiteCheck:
    """The site check of a batch already predicted: its decoded images and the networks' features from the
    prediction's own pass (``PredictionResult.features``), so nothing is decoded or run twice.

    Only the training sample is run, and not even that when the model keeps one (:mod:`site_reference`).
    The batch's class mix is the prediction's own answer, averaged.

    Raises:
        WorkbenchError: the model keeps no usable training sample and its training images are not here,
            or a result lacks the features of a network (it was predicted with another model).
    """
    import time

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    ok = [r for r in results if r.error is None and r.image is not None]
    if len(ok) > SITE_MAX:
        ok = [ok[i] for i in sorted(rng.choice(len(ok), SITE_MAX, replace=False))]
    nets = feature_runs(run)
    if len(ok) < MIN_IMAGES:
        return _too_few(len(ok), [], t0)
    stored = _stored_or_none(run, nets)
    missing = [r.run_id for r in nets if any(r.run_id not in res.features for res in ok)]
    if missing:
        raise WorkbenchError("these answers were not made by this model's networks, so the batch cannot be "
                             "checked against its training images", ", ".join(missing))
    ref_paths = None if stored is not None else _training_files(run)  # neither here: nothing to compare with
    site = sample_of_images([(r.file, r.image) for r in ok])
    feats = {r.run_id: np.stack([res.features[r.run_id] for res in ok]) if ok[0].features[r.run_id] is not None
             else None for r in nets}
    shares = np.mean([[res.probabilities.get(c, 0.0) for c in run.class_names] for res in ok], axis=0)
    return _judge(run, nets, SideTable.of(site, feats), [], shares, stored or ref_paths, rng, seed, t0,
                  lambda *_: None, per_network=False)


def _stored_or_none(run, nets) -> SiteReference | None:
    """The run's stored training sample when it describes these networks; else None (the check reads the
    training images, or says they are not here)."""
    stored, _problem = load_reference(run, {r.run_id: r.card.model_sha256 for r in nets})
    return stored


def _training_files(run) -> list[Path]:
    """:func:`core.models.lineage.reference_files`, with the error saying that no sample is kept either."""
    try:
        return reference_files(run)
    except WorkbenchError as exc:
        kept = "its stored sample of them cannot be used" if (Path(run.path) / REFERENCE_FILE).is_file() else \
            "no sample of them is kept with the model"
        raise WorkbenchError(f"{exc.reason} ({kept})", exc.source) from None


def _too_few(n: int, unreadable: list[tuple[str, str]], t0: float) -> SiteCheck:
    import time

    return SiteCheck(n, 0, None, None, None, {}, advice_for(None, None, {}, n), unreadable, time.perf_counter() - t0)


def _judge(run, nets, site: SideTable, unreadable, shares: np.ndarray, training: SiteReference | list[Path],
           rng: np.random.Generator, seed: int, t0: float, note, per_network: bool) -> SiteCheck:
    """Draw the training sample in the site's class mix, compare, and say the verdict.

    ``training``: the sample kept with the model, or the training files to read a sample from.
    """
    import time

    n = len(site)
    if isinstance(training, SiteReference):
        stored = training
        wrong = [k for k, f in site.features.items() if f is not None and
                 (g := stored.table.features.get(k)) is not None and g.shape[1] != f.shape[1]]
        if wrong:  # its checksums match, its features cannot be these networks': a damaged or altered file
            raise WorkbenchError("the stored sample of training images does not fit this model's networks (their "
                                 "features differ in size); keep a new one", ", ".join(wrong))
        k = min(len(stored.table), REFERENCE_MAX, max(REFERENCE_MIN, n))
        reference = stored.table.rows(matched_sample(stored.labels, shares, k, rng))
        source = stored.describe()
    else:
        ref_paths = training
        k = min(len(ref_paths), REFERENCE_MAX, max(REFERENCE_MIN, n))
        ref_paths = [ref_paths[i] for i in matched_sample(folder_class_indices(ref_paths, run.class_names), shares,
                                                         k, rng)]
        note(0.45, "Reading a sample of the training images")
        sample = read_sample(ref_paths, model_inputs(nets))
        note(0.7, "Running the model on them" if len(nets) == 1 else f"Running the {len(nets)} models on them")
        keep_only(nets)
        reference = SideTable.of(sample, {r.run_id: o.features for r, o in zip(nets, network_outputs(nets, sample))})
        source = "read from the training folder on this machine"
    note(0.85, "Comparing")
    auc, signals = compare(site, reference, seed, per_network)
    interval = auc_interval(auc, n, len(reference))
    shift = is_shift(auc, interval)
    note(1.0, "Done")
    return SiteCheck(n, len(reference), round(auc, 4), (round(interval[0], 4), round(interval[1], 4)), shift,
                     signals, advice_for(auc, shift, signals, n), unreadable, round(time.perf_counter() - t0, 2),
                     {c: round(float(v), 4) for c, v in zip(run.class_names, shares)}, source)


def mark_batch(results, check: SiteCheck | None) -> int:
    """Carry a batch's site-check verdict onto each analysed slice; returns how many were marked.

    A flagged batch gives every analysed result the ``site_shift`` flag, its warning and the AUC behind
    it; anything else (no check, too few images, not told apart) leaves them unmarked. Safe to call
    again on the same results: an earlier verdict is removed first.
    """
    from core.inference.notices import SITE_SHIFT, SITE_SHIFT_DETAIL, clear_site_shift, site_shift_warning

    marked = 0
    n_batch = sum(r.error is None for r in results)  # the batch the reader sent; the check may read a sample of it
    for r in results:
        clear_site_shift(r)
        if r.error is None and check is not None and check.shift_detected:
            r.flags.append(SITE_SHIFT)
            r.warnings.append(site_shift_warning(n_batch))
            low, high = check.auc_interval or (float("nan"), float("nan"))
            r.details[SITE_SHIFT_DETAIL] = (f"domain AUC {check.domain_auc:.2f} (95 % interval {low:.2f}–{high:.2f}; "
                                            f"0.5 = indistinguishable) on {check.n_images} images of the batch")
            marked += 1
    return marked

