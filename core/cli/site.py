"""``python -m core site-check`` and ``python -m core adapt``: meet a new site where it is.

site-check needs no labels: do these images look like the model's training images?
adapt needs a labelled folder (class sub-folders) and creates a new run; the parent is never changed.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    p = sub.add_parser("site-check", help="do a site's images look like the model's training images? (no labels)")
    p.add_argument("--model", required=True, help="run id or run folder inside the model registry")
    p.add_argument("--data", required=True, help="any folder of images (class sub-folder names are ignored)")
    p.add_argument("--seed", type=int, default=0, help="sampling and cross-validation seed")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_site_check)

    r = sub.add_parser("site-reference", help="keep a sample of the model's training images beside it, as numbers "
                                              "(no pixels), so its site check runs where the training images are not")
    r.add_argument("--model", required=True, help="run id or run folder inside the model registry")
    r.add_argument("--per-class", type=int, default=None, help="training images kept per class (default 250)")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(func=run_site_reference)

    a = sub.add_parser("adapt", help="adapt a model or an ensemble to a site's labelled images; creates a new run")
    a.add_argument("--model", required=True, help="the parent run (id or folder; an ensemble adapts every member "
                                                  "into a new ensemble); it is never changed")
    a.add_argument("--data", required=True, help="labelled site folder: one sub-folder per class (a subset of "
                                                 "the model's classes is allowed)")
    a.add_argument("--epochs", type=int, default=None, help="most epochs of fine-tuning (default 8)")
    a.add_argument("--replay", type=int, default=None, help="parent training images replayed (default 400)")
    a.add_argument("--learning-rate", type=float, default=None, help="default 1e-4")
    a.add_argument("--seed", type=int, default=None, help="default 1")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.set_defaults(func=run_adapt)


def run_site_check(args: argparse.Namespace) -> int:
    from core.evaluation.site_check import class_mix_sentence, network_names, site_check
    from core.models.runs import resolve_run

    model = resolve_run(args.model)
    result = site_check(model, args.data, seed=args.seed)
    names = network_names(model)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    source = f", {result.reference}" if result.reference else ""
    print(f"Site images: {result.n_images} (compared with {result.n_reference} of the model's training images{source})")
    for path, reason in result.unreadable:
        print(f"  UNREADABLE {path}: {reason}")
    if result.domain_auc is not None:
        lo, hi = result.auc_interval
        print(f"Domain AUC: {result.domain_auc:.3f} (95 % interval {lo:.3f}-{hi:.3f}; 0.5 = indistinguishable)")
        for sig in result.signals.values():
            print(f"  {sig['auc']:.3f}  {sig['name']}" + ("" if sig.get("verdict", True) else
                                                            "  (not in the verdict: the model never sees it)"))
            for member, auc in (sig.get("members") or {}).items():
                print(f"    {auc:.3f}  {names.get(member, 'one model of the ensemble')} ({member})")
        print(f"Shift detected: {'yes' if result.shift_detected else 'no'}")
    print(result.advice)
    if (mix := class_mix_sentence(result)) is not None:
        print(mix)
    return 0


def run_site_reference(args: argparse.Namespace) -> int:
    from core.errors import WorkbenchError
    from core.evaluation.site_reference import POOL_PER_CLASS, build_reference, save_reference
    from core.models.runs import resolve_run

    per_class = POOL_PER_CLASS if args.per_class is None else args.per_class
    if not 20 <= per_class <= 2000:
        raise WorkbenchError(f"must be between 20 and 2000 images per class, got {per_class}", "--per-class")
    model = resolve_run(args.model)
    reference = build_reference(model, per_class)
    path = save_reference(model, reference)
    out = {"run_id": model.run_id, "path": str(path), "images": len(reference.table),
           "drawn_from": reference.drawn_from, "networks": reference.networks, "bytes": path.stat().st_size}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"Kept {out['images']:,} of {out['drawn_from']:,} training images of {model.run_id} as numbers "
          f"({out['bytes'] / 1e6:.1f} MB, no pixels): {path}")
    print("The site check now runs without the training images, on any machine this model is copied to.")
    return 0


def run_adapt(args: argparse.Namespace) -> int:
    import dataclasses

    from core.jobs import Job
    from core.models.runs import resolve_run
    from core.training.adapt import AdaptConfig
    from core.training.adapt_ensemble import adapt_run

    given = {"epochs": args.epochs, "replay": args.replay, "learning_rate": args.learning_rate, "seed": args.seed}
    cfg = dataclasses.replace(AdaptConfig(), **{k: v for k, v in given.items() if v is not None})
    parent = resolve_run(args.model)
    job = Job("adapt", f"adapt {parent.run_id}")
    result = adapt_run(parent, args.data, cfg, job)
    out = result.to_json()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print_adapt(out)
    return 0


def print_adapt(out: dict) -> None:
    """The human output of ``adapt``: the new run (an ensemble: and its adapted members), the site's notes,
    and the before/after table."""
    if out.get("members") is not None:
        print(f"New ensemble: {out['run_id']} (adapted from {out['parent_run']}; the parent and its members are "
              "unchanged)")
        print(f"  its adapted members: {', '.join(out['members'])}")
    else:
        print(f"New run: {out['run_id']} (adapted from {out['parent_run']}; the parent is unchanged)")
    site = out["site"]
    if site["copies_of_parent_training"]:
        print(f"  {len(site['copies_of_parent_training'])} site images are copies of the model's training "
              "images: used to adapt only, never to test")
    for item in site["unreadable"]:
        print(f"  UNREADABLE {item['path']}: {item['reason']}")
    print(f"{'':24s}{'parent':>10s}{'adapted':>10s}")
    for part, title in (("site", "site test part"), ("source", "parent's own test")):
        b, a = out["before"][part], out["after"][part]
        n = out["after"][f"{part}_n"]
        fmt = lambda v: f"{v:10.1%}" if v is not None else f"{'n/a':>10s}"  # noqa: E731
        print(f"{title + f' ({n})':24s}{fmt(b)}{fmt(a)}")
    for note in out.get("kept") or []:  # which weights were kept, and why
        print(f"  {note}")
    if out.get("verdict"):
        print(out["verdict"]["text"])
    sys.stdout.flush()
