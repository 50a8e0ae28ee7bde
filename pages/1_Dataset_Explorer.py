"""Dataset Explorer: pick the data, then look at its balance, images, classes, quality and leaks."""

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.classes import display_name
from core.data import explore
from core.data.datasets import SOURCES
from core.data.splits import SPLIT_MODES
from core.paths import data_roots
from core.reports import charts
from core.safetext import escape_markdown
from pages import _explorer_teaching as teaching
from pages import _nav as nav
from pages import _shared as sh

nav.require_navigation()  # first: a deep link may have started this page without Home.py

SECTIONS = ["Class balance", "Samples", "Classes", "Style shortcut", "Data quality", "Tumour types"]
GROUPS_PER_PAGE = 5  # duplicate groups drawn at once: each costs a few thumbnail decodes
THUMB = 256  # decoded side; shown about 170 px wide (four a row), full size in the fullscreen view
THUMBS_PER_ROW = 4

st.title("Dataset Explorer")
ds = sh.show_active_dataset_badge()

with st.expander("Choose the dataset", expanded=ds.synthetic):
    kind = st.radio("Source", list(SOURCES), format_func=SOURCES.title, horizontal=True,
                    key="explorer_source")
    with sh.shown_errors():
        if kind == "demo":
            st.caption(SOURCES["demo"].help)
            if st.button("Use the demo", key="explorer_open_demo"):
                sh.set_active_dataset("demo")
                st.rerun()
        elif kind == "folder":
            path = st.text_input("Folder path", placeholder="/data/brain-tumor-mri", key="explorer_folder")
            st.caption(SOURCES["folder"].help + " Allowed locations: " + ", ".join(f"`{r}`" for r in data_roots()))
            if st.button("Open folder", key="explorer_open_folder", disabled=not path.strip()):
                sh.set_active_dataset("folder", path=path)
                st.rerun()
        else:
            upload = st.file_uploader("Zip of class folders", type=["zip"], key="explorer_zip")
            if upload is not None and st.button("Open zip", key="explorer_open_zip"):
                sh.set_active_dataset("zip", data=upload.getvalue(), filename=upload.name)
                st.rerun()

ds = sh.active_dataset()
# One slot for everything below: a first scan's progress bar replaces the previous dataset's
# figures in it at once, instead of leaving them on screen (greyed) until the scan ends.
body = st.empty()
with body, sh.shown_errors(stop=True):
    report = sh.cached_scan(ds)
page_box = body.container()
with page_box:
    if report.readable.empty:
        st.error("None of the files in this dataset could be decoded; see the list below.")
        st.dataframe(pd.DataFrame(report.unreadable(), columns=["file", "reason"]), hide_index=True)
        st.stop()
    has_test_folder = bool((report.readable["source_split"] == "test").any())
    if has_test_folder:
        # Widget keys are separate from the shared state: Streamlit drops a widget's key when another
        # page runs, but the Train page must still see the choice.
        st.session_state["explorer_split_widget"] = sh.split_mode()
        mode = st.radio("Split (used on this page and for training)", list(SPLIT_MODES),
                        format_func=SPLIT_MODES.get, horizontal=True, key="explorer_split_widget",
                        on_change=lambda: sh.set_split_mode(st.session_state["explorer_split_widget"]))
    else:
        mode = "leakage_free"  # the only split there is: no Testing folder to keep
        sh.set_split_mode(mode)
        st.caption("Split: this dataset has no Testing folder, so the workbench holds out validation and test "
                   "images itself, keeping near-duplicates together (the leakage-free split). Training uses the "
                   "same split.")
    split = sh.active_split(report, mode)
    if has_test_folder and mode == "leakage_free":
        moves = explore.moved_across_test_folder(report, split)
        st.caption(f"The leakage-free split re-splits this dataset, Testing folder included: "
                   f"{moves['test_moved_out']:,} of the {moves['n_test_folder']:,} Testing images moved to "
                   f"training or validation and {moves['moved_into_test']:,} Training images moved to test, so "
                   "each group of near-copies stays on one side.")
    files = report.readable.assign(split=explore.split_names(report, split))
    section = st.segmented_control("Show", SECTIONS, default=SECTIONS[0], required=True, key="explorer_section")


def draw_group(paths: list[str], header: str) -> None:
    """Thumbnails in rows of THUMBS_PER_ROW, class, split and file under each; each image has its own
    fullscreen button (hover it) to see it large."""
    rows = files.set_index("path").loc[paths]
    st.markdown(header)
    images = sh.thumbnails(ds, paths, THUMB)
    for start in range(0, len(paths), THUMBS_PER_ROW):
        cols = st.columns(THUMBS_PER_ROW)
        for col, p, image in zip(cols, paths[start:start + THUMBS_PER_ROW], images[start:start + THUMBS_PER_ROW]):
            r = rows.loc[p]
            name = escape_markdown(explore.short_file_name(Path(p).name))
            col.image(image, width="stretch", caption=f"{display_name(r.label)} · {r.split} · {name}")


def balance_section() -> None:
    balance = explore.class_balance(report, split)
    st.altair_chart(charts.class_balance_chart(balance), width="stretch")
    order = list(balance["split"].unique())
    table = balance.pivot(index="split", columns="label", values="count").reindex(order)
    table = table.rename(columns=display_name).assign(total=lambda t: t.sum(axis=1))
    st.dataframe(table)
    for name in order:
        ratio = explore.imbalance_ratio(balance, name)
        if ratio > explore.IMBALANCE_WARN:
            st.warning(f"**{name}**: the largest class has {ratio:.1f}× the images of the smallest. Overall "
                       "accuracy will flatter the model; judge it by per-class recall, and keep class "
                       "weighting on when training.")
    if all(explore.imbalance_ratio(balance, n) <= explore.IMBALANCE_WARN for n in order):
        st.success(f"Classes are balanced within {explore.IMBALANCE_WARN}× in every split.")


def samples_section() -> None:
    if "explorer_seed" not in st.session_state:
        st.session_state["explorer_seed"] = 0
    c1, c2 = st.columns([3, 2])  # wide enough that every chosen class and split shows in full
    classes = c1.multiselect("Classes", report.class_names, default=report.class_names,
                             format_func=display_name, key="explorer_classes")
    available = list(files["split"].unique())
    chosen = c2.multiselect("Splits", available, default=available, key=f"explorer_splits_{mode}")
    c1, _, c4 = st.columns([3, 1, 1], vertical_alignment="bottom")
    per_class = c1.slider("Images per class", 1, 12, 6, key="explorer_per_class")
    seed = c4.number_input("Seed", 0, 1_000_000, key="explorer_seed")
    c4.button("Reshuffle", key="explorer_reshuffle", icon=":material/shuffle:",
              on_click=lambda: st.session_state.update(explorer_seed=st.session_state["explorer_seed"] + 1))
    grid = explore.sample_grid(files, per_class, int(seed), classes, chosen, split_col="split")
    if grid.empty:
        st.info("No images match these filters.")
        return
    for label, rows in grid.groupby("label", sort=True):
        draw_group(rows["path"].tolist(), f"**{display_name(label)}** · {len(rows)} of "
                   f"{int((files['label'] == label).sum()):,}")
    paths = grid["path"].tolist()
    pick = st.selectbox("Look closer at", paths, key=f"explorer_pick_{hash(tuple(paths))}",
                        format_func=lambda p: f"{display_name(grid.set_index('path').at[p, 'label'])} — {p}")
    show_large(pick)


def show_large(rel: str) -> None:
    row = files.set_index("path").loc[rel]
    with sh.shown_errors():
        img = sh.cached_image(ds.fingerprint, str(ds.abspath(rel)))
        left, right = st.columns([3, 2])
        left.image(img.pixels, caption=escape_markdown(Path(rel).name), width=min(448, img.size[0] * 2))
        try:
            nbytes = f"{ds.abspath(rel).stat().st_size / 1024:,.1f} KB"
        except OSError:
            nbytes = "?"
        right.dataframe(pd.DataFrame({"value": [
            Path(rel).name, display_name(row["label"]), row["split"], f"{img.size[0]}×{img.size[1]}",
            img.source_mode, img.source_format, nbytes, f"{img.pixels.mean():.1f} ± {img.pixels.std():.1f}",
        ]}, index=["file", "class", "split", "size", "mode", "format", "file size", "intensity"]))
        right.altair_chart(charts.histogram_chart(explore.intensity_histogram(img.pixels, 32)), width="stretch")


def classes_section() -> None:
    st.markdown("**Mean image per class**")
    means = [np.clip(report.class_means[c], 0, 255).astype(np.uint8) for c in report.class_names]
    st.image(means, caption=[display_name(c) for c in report.class_names], width=160)
    st.caption("The average of every image of a class, shrunk to 64×64. If one class's mean looks very "
               "different in framing or brightness, a model can learn that shortcut instead of the tumour.")
    st.markdown("**Intensity distribution per class** (black background left out)")
    st.altair_chart(charts.class_histogram_chart(explore.class_histograms(report)), width="stretch")
    st.markdown("**Image sizes and modes**")
    mix = explore.size_mode_mix(report)
    st.dataframe(mix.assign(label=mix["label"].map(display_name)), hide_index=True)
    st.caption("Mixed sizes or colour modes (L = grayscale, RGB) hint that images come from different "
               "sources; every image is converted to grayscale and resized the same way before training.")


def quality_section() -> None:
    problems = report.unreadable()
    exact, near = report.groups("exact_group"), report.groups("near_group")
    conflicts = report.label_conflicts()
    m = st.columns(5)
    m[0].metric("Readable images", f"{len(report.readable):,}")
    m[1].metric("Unreadable files", len(problems))
    m[2].metric("Exact-duplicate groups", len(exact), help=f"{sum(map(len, exact))} files, byte-identical")
    m[3].metric("Near-duplicate groups", len(near), help=f"{sum(map(len, near))} files, within "
                f"{report.threshold} of 256 perceptual-hash bits")
    m[4].metric("Label conflicts", len(conflicts))
    leakage_block()
    st.subheader("Unreadable files")
    if problems:
        st.dataframe(pd.DataFrame(problems, columns=["file", "reason"]), hide_index=True)
    else:
        st.success(f"All {len(report.readable):,} listed files decode." if len(report.readable)
                   else "No files are listed.")
    st.subheader("Duplicates")
    c1, c2 = st.columns(2)
    kind = c1.radio("Kind", ["near_group", "exact_group"], horizontal=True, key="explorer_dup_kind",
                    format_func={"near_group": "Near-duplicates", "exact_group": "Exact copies"}.get)
    across = c2.toggle("Only groups that span splits", key="explorer_dup_across")
    dups = explore.duplicate_groups(report, kind, split)
    if across:
        dups = dups[dups["spans_splits"]]
    draw_groups(dups, "explorer_dup_page", kind)
    st.subheader("Label conflicts")
    st.caption("Near-identical images filed under different classes: at least one label is wrong.")
    mixed = explore.duplicate_groups(report, "near_group", split)
    draw_groups(mixed[mixed["mixed_labels"]], "explorer_conflict_page", "near_group")


def draw_groups(dups: pd.DataFrame, key: str, kind: str) -> None:
    ids = list(dict.fromkeys(dups["group"]))
    if not ids:
        st.success("None found.")
        return
    pages = (len(ids) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE
    page = 1
    if pages > 1:
        page = st.columns([1, 3])[0].number_input(f"Page (of {pages}; {len(ids)} groups)", 1, pages, 1, key=key)
    first = (page - 1) * GROUPS_PER_PAGE
    for n, gid in enumerate(ids[first: first + GROUPS_PER_PAGE], first + 1):
        members = dups[dups["group"] == gid]
        tag = " · :orange[spans splits]" if members["spans_splits"].iat[0] else ""
        why = explore.group_reason(report, members["path"].tolist(), kind)
        draw_group(members["path"].tolist(), f"**Group {n} of {len(ids)}** · {len(members)} files · {why}{tag}")


def leakage_block() -> None:
    st.subheader("Train/test leakage")
    has_test = (report.readable["source_split"] == "test").any()
    reference = sh.active_split(report, "dataset") if has_test else sh.naive_split_cached(report)
    ref = explore.leak_summary(report, reference)
    now = explore.leak_summary(report, split)
    where = ("In the folder's own Training/Testing split" if has_test
             else "With a plain random split (what most notebooks do)")
    chosen = {"leakage_free": "With the leakage-free split", "dataset": "With the folder's own split, chosen above"}
    st.markdown(f"{where}, **{ref['n_test_with_train_twin']} of {ref['n_test']} test images have a "
                f"near-twin in training**. {chosen[mode]}: **{now['n_test_with_train_twin']} of {now['n_test']}**.")
    st.caption("A near-twin is the same slice re-encoded, shifted or rescaled. A model that has memorised "
               "the training copy recognises the test copy, so test accuracy is inflated and says little "
               "about images from new patients. The leakage-free split keeps each group of near-twins on "
               "one side of the line.")


with page_box:
    {
        "Class balance": balance_section,
        "Samples": samples_section,
        "Classes": classes_section,
        "Style shortcut": lambda: teaching.shortcut_section(ds, report),
        "Data quality": quality_section,
        "Tumour types": lambda: teaching.tumour_types_section(report),
    }[section]()
