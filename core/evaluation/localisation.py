"""Does a heat map point at the tumour? Scores against known tumour boxes.

Two standard figures, computed on the original image's frame so that models with different
preprocessing (whole frame, head crop) are scored alike:

- **pointing game** (Zhang et al. 2016): is the map's peak inside the tumour box, grown by
  ``grow`` × the image's side (half on each edge)? A peak on the tumour's rim still counts;
  with 10 % a pituitary box of 0.1 × 0.1 becomes 0.2 × 0.2 of the frame.
- **heat-in-box ratio**: the share of the map's total heat inside the (ungrown) box, divided
  by the box's share of the frame. 1 means "no better than a uniform map"; higher is better.

Box files are CSV with ``file,class,x0,y0,x1,y1``: paths relative to the dataset folder,
coordinates normalised to 0..1 of the image's width and height, origin top-left.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import WorkbenchError

GROW = 0.10  # pointing-game tolerance: the box grows by 10 % of the image side (5 % on each edge)
BOX_COLUMNS = ("file", "x0", "y0", "x1", "y1")


def read_boxes(path: str | Path) -> pd.DataFrame:
    """A box file as a table indexed by relative path (``/`` separators), with x0, y0, x1, y1.

    Raises:
        WorkbenchError: unreadable file, missing columns, or coordinates outside 0..1 / inverted.
    """
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise WorkbenchError(f"the box file could not be read ({type(exc).__name__})", str(path)) from None
    missing = [c for c in BOX_COLUMNS if c not in table.columns]
    if missing:
        raise WorkbenchError(f"the box file lacks the column(s) {', '.join(missing)}; expected "
                             "file,class,x0,y0,x1,y1", str(path))
    coords = table[["x0", "y0", "x1", "y1"]].apply(pd.to_numeric, errors="coerce")
    bad = coords.isna().any(axis=1) | (coords < 0).any(axis=1) | (coords > 1).any(axis=1) \
        | (coords["x1"] <= coords["x0"]) | (coords["y1"] <= coords["y0"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise WorkbenchError(f"{int(bad.sum())} box(es) are not normalised 0..1 boxes with x0 < x1 and y0 < y1 "
                             f"(first at line {row})", str(path))
    out = coords.copy()
    out.index = table["file"].astype(str).str.replace("\\", "/", regex=False)
    return out[~out.index.duplicated(keep="first")]


@dataclass(frozen=True)
class BoxScore:
    """Localisation of one heat map."""

    hit: bool  # pointing game: peak inside the grown box
    ratio: float  # heat share inside the box / the box's area share (nan for an all-zero map)


def score_heatmap(heat: np.ndarray, box: tuple[float, float, float, float], grow: float = GROW) -> BoxScore:
    """Pointing game and heat-in-box ratio of one (H, W) map over the original frame.

    Args:
        heat: non-negative map over the whole original image.
        box: normalised (x0, y0, x1, y1) of the tumour.
        grow: pointing-game tolerance: how much the box's width and height grow, as a fraction
            of the image's side (half on each edge).
    """
    h, w = heat.shape
    x0, y0, x1, y1 = box
    total = float(heat.sum())
    if not np.isfinite(total) or total <= 0:
        return BoxScore(False, float("nan"))
    py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
    cx, cy = (px + 0.5) / w, (py + 0.5) / h  # pixel centre, normalised
    edge = grow / 2
    hit = (x0 - edge) <= cx <= (x1 + edge) and (y0 - edge) <= cy <= (y1 + edge)
    c0, c1 = int(np.floor(x0 * w)), int(np.ceil(x1 * w))
    r0, r1 = int(np.floor(y0 * h)), int(np.ceil(y1 * h))
    inside = float(heat[r0:r1, c0:c1].sum())
    area_share = (c1 - c0) * (r1 - r0) / (h * w)
    return BoxScore(bool(hit), (inside / total) / area_share)


def summarise(scores: list[BoxScore]) -> dict[str, float | int | None]:
    """``pointing_game`` (share of hits), ``heat_in_box_ratio`` (mean over maps with heat), ``n_images``."""
    ratios = [s.ratio for s in scores if np.isfinite(s.ratio)]
    return {
        "pointing_game": float(np.mean([s.hit for s in scores])) if scores else None,
        "heat_in_box_ratio": float(np.mean(ratios)) if ratios else None,
        "n_images": len(scores),
    }


def score_files(run, model, root: str | Path, files: pd.DataFrame, boxes: pd.DataFrame, method: str,
                layer_name: str | list[str] | None = None, progress=None) -> pd.DataFrame:
    """Score the heat map of each file's true class against its box.

    Args:
        run: the registered run (class order, image size, preprocessing recipe).
        model: its loaded Keras model; for an ensemble run its
            :class:`core.inference.ensemble_predict.EnsemblePredictor`, whose map (the members'
            maps, each placed back through its own crop, averaged) is the one Predict shows.
        root: the folder ``files.path`` is relative to.
        files: rows with ``path`` (relative, ``/``) and ``label`` (class name); files without a
            box are skipped.
        boxes: :func:`read_boxes` output.
        method, layer_name: see :func:`core.inference.gradcam.compute_cam`.
    Returns:
        One row per scored file: path, label, hit, ratio.
    """
    from core.data.imageio import decode_image
    from core.data.preprocess import prepare_framed
    from core.inference.gradcam import compute_cam

    index = {c: i for i, c in enumerate(run.class_names)}
    chosen = files[files["path"].isin(boxes.index) & files["label"].isin(index)]
    rows = []
    for n, row in enumerate(chosen.itertuples(), start=1):
        try:
            image = decode_image(Path(root) / row.path)
        except WorkbenchError:
            continue  # an unreadable file has nothing to point at; the scan lists it already
        if run.card.is_ensemble:
            prepared = model.prepare_framed(image)
            heat = model.explain_for(image, prepared, index[row.label], method)
        else:
            prepared = prepare_framed(image, run.image_size, run.preprocessing)
            heat = compute_cam(model, prepared.pixels, class_index=index[row.label], method=method,
                               layer_name=layer_name)
        heat = prepared.framing.place(heat, image.pixels.shape[:2])
        score = score_heatmap(heat, tuple(boxes.loc[row.path, ["x0", "y0", "x1", "y1"]]))
        rows.append({"path": row.path, "label": row.label, "hit": score.hit, "ratio": score.ratio})
        if progress:
            progress(n, len(chosen))
    return pd.DataFrame(rows, columns=["path", "label", "hit", "ratio"])


def evaluate_localisation(run, eval_set, boxes_path: str | Path, method: str | None = None,
                          layer_name: str | list[str] | None = None, job=None) -> dict:
    """The ``localisation`` block of an evaluation: pointing game, heat-in-box ratio, n_images.

    Scores the leakage-free images of the evaluation set that the box file lists (paths
    relative to the evaluated folder), each for its true class. An ensemble is scored on its own
    map, the members' maps averaged as Predict & Explain shows it.

    Raises:
        WorkbenchError: unreadable box file, missing data, a model that cannot be loaded, or a
            layer named for an ensemble (its members each have their own).
    """
    from core.data.scan import scan_dataset
    from core.evaluation.eval_sets import near_dup_threshold as _threshold
    from core.evaluation.eval_sets import open_eval_dataset, overlap_distances, select_images
    from core.evaluation.evidence import LOCALISATION, localisation_summary, store_evidence
    from core.inference.gradcam import DEFAULT_CAM_METHOD
    from core.jobs import counter as _stage

    method = method or DEFAULT_CAM_METHOD
    if run.card.is_ensemble and layer_name:
        raise WorkbenchError("a layer cannot be chosen for an ensemble: each model in the ensemble uses its own "
                             "last convolutional layer", run.run_id)
    boxes = read_boxes(boxes_path)
    ds = open_eval_dataset(run, eval_set)
    report = scan_dataset(ds, _threshold(run), progress=_stage(job, 0.0, 0.2, "Scanning images"))
    rows, _, _ = select_images(run, eval_set, ds, report)
    dist = overlap_distances(run, rows["phash"].tolist())
    if dist is not None:
        rows = rows[dist > _threshold(run)]
    files = pd.DataFrame({"path": rows["path"].astype(str).str.replace("\\", "/", regex=False),
                          "label": rows["label"]})
    model = _heat_model(run)
    table = score_files(run, model, ds.root, files, boxes, method, layer_name,
                        progress=_stage(job, 0.2, 1.0, "Heat maps"))
    out = _block(table, method)
    if not layer_name:  # the map Predict shows: worth keeping beside the card's accuracy
        store_evidence(run, eval_set.kind, ds.fingerprint, LOCALISATION, localisation_summary(out))
    return out


def validation_localisation(run, boxes_path: str | Path, method: str | None = None) -> dict:
    """The localisation block on the run's own validation images that the box file lists.

    For choosing between recipes without touching the test split (a training recipe's accuracy rule
    alone once picked a schedule whose heat maps missed the tumour more often, bench section 8).

    Raises:
        WorkbenchError: unreadable box file, no validation files on the card, or data not on this machine.
    """
    from core.classes import canonical_class
    from core.inference.gradcam import DEFAULT_CAM_METHOD

    method = method or DEFAULT_CAM_METHOD
    boxes = read_boxes(boxes_path)
    val = [str(f).replace("\\", "/") for f in (run.card.data.get("val_files") or [])]
    if not val:
        raise WorkbenchError("the model card lists no validation images", run.run_id)
    if not run.data_root.is_dir():
        raise WorkbenchError("the model's training images are not on this machine", str(run.data_root))
    files = pd.DataFrame({"path": val, "label": [canonical_class(Path(f).parent.name) for f in val]})
    model = _heat_model(run)
    return _block(score_files(run, model, run.data_root, files, boxes, method), method)


def _heat_model(run):
    """What draws the run's heat map: its Keras model, or for an ensemble its predictor (the members' maps
    averaged, as Predict & Explain shows it)."""
    from core.inference.ensemble_predict import predictor_for
    from core.models.runs import load_model

    return predictor_for(run) if run.card.is_ensemble else load_model(run)


def _block(table: pd.DataFrame, method: str) -> dict:
    """Pointing game and heat-in-box ratio of a scored table, overall and per class."""
    from core.inference.gradcam import CAM_METHODS

    out = summarise([BoxScore(bool(h), float(r)) for h, r in zip(table["hit"], table["ratio"])])
    out.update(method=CAM_METHODS.title(method), per_class={
        c: summarise([BoxScore(bool(h), float(r)) for h, r in zip(g["hit"], g["ratio"])])
        for c, g in table.groupby("label")})
    return out
