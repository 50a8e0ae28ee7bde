"""Train: choose a model and its settings, train in the background, watch it live.

The page gathers one TrainConfig and hands it to core.training.train in a background job; the job's
records feed the live charts. Switching pages or refreshing reattaches to the running job.
"""

import json

import pandas as pd
import streamlit as st

from core.classes import display_name
from core.config import AUGMENT_PRESETS, DataConfig
from core.data.splits import SPLIT_MODES
from core.evaluation.site_reference import keep_after_training
from core.jobs import job_registry
from core.models.architectures import ARCHITECTURES
from core.models.runs import list_runs
from core.models.weights import install_weights, keras_cache_dir, weight_status
from core.reports.run_summary import runs_table
from core.safetext import escape_markdown
from core.training.augment import describe_augment
from core.training.config import FineTuneConfig, TrainConfig
from core.training.ensemble_train import MAX_MEMBERS, train_ensemble
from core.training.hardware import detect_hardware
from core.training.options import OPTIMIZERS, PRECISIONS, SCHEDULES, STRATEGIES, WEIGHTS
from core.training.preset_notes import preset_label
from core.training.presets import RECIPE_CHOICES, RECIPE_HELP, preset_config
from core.training.train import train_model
from core.training.train_feedback import TrainSettings
from pages import _nav as nav
from pages import _settings as ws
from pages import _shared as sh
from pages import _site as site
from pages import _train_job as train_job
from pages import _url as url

nav.require_navigation()  # first: a deep link may have started this page without Home.py

WIDTHS = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]  # the custom CNN's channel multipliers offered (config allows (0, 4])

STATUS_ICONS = {"cached": ":material/check_circle:", "will download": ":material/download:",
                "unreachable": ":material/cloud_off:", "damaged": ":material/broken_image:"}


@st.cache_resource
def jobs():
    """The process-wide job registry: every session and browser tab sees the same jobs."""
    return job_registry()


def form_fields() -> dict:
    """Widget key -> parser for the settings a refresh keeps (they live in the page address)."""
    def num(name: str, kind: type = int):
        return url.parse_number(*ws.url_parser(TrainConfig, name, kind))

    fields = {"train_arch": url.parse_choice(ARCHITECTURES), "train_epochs": num("epochs"),
              "train_batch": num("batch_size"), "train_patience": num("patience"),
              "train_lr": num("learning_rate", float), "train_optimizer": url.parse_choice(OPTIMIZERS),
              "train_schedule": url.parse_choice(SCHEDULES), "train_smoothing": num("label_smoothing", float),
              "train_mixup": num("mixup", float), "train_style_mix": num("style_mix", float),
              "train_width": url.parse_choice(WIDTHS),
              "train_class_weights": url.parse_choice([True, False]), "train_seed": num("seed"),
              "train_max_batches": num("max_train_batches"), "train_average_epochs": num("average_epochs"),
              "train_precision": url.parse_choice(PRECISIONS)}
    fields.update({f"train_size_{key}": num("image_size") for key in ARCHITECTURES})
    return fields


def apply_augment_preset() -> None:
    name = st.session_state["train_aug_preset"]
    if name in AUGMENT_PRESETS:
        sh.set_augment_config(AUGMENT_PRESETS[name])


st.title("Train")
url.restore_from_url(form_fields())
if st.radio("What to do", ["Train a new model", "Adapt an existing model to your images"], horizontal=True,
            key="train_what") != "Train a new model":
    site.adapt_view(jobs())
    st.stop()
ds = sh.show_active_dataset_badge()
st.caption("Train a classifier on the active dataset. Training runs on the server in the background: you "
           "can switch pages or reload, and this page reattaches to the running job.")

# --- data -------------------------------------------------------------------------------------
st.subheader("Data")
with sh.shown_errors(stop=True):
    report = sh.cached_scan(ds)
# The folder's own split is offered only when the folder has one (a Testing/ or test/ folder).
modes = [m for m in SPLIT_MODES if m != "dataset" or (ds.files["source_split"] == "test").any()]
mode = st.radio("Split", modes, index=modes.index(sh.split_mode()) if sh.split_mode() in modes else 0,
                format_func=SPLIT_MODES.get,
                horizontal=True, key="train_split_mode",
                help="Leakage-free keeps near-duplicate images on one side of the train/test line, so the "
                     "scores are not inflated by memorised copies. Shared with the Dataset Explorer.")
sh.set_split_mode(mode)
split = sh.active_split(report, mode)
counts = pd.crosstab(split, report.readable["label"]).reindex(index=["train", "val", "test"],
                                                              columns=ds.class_names, fill_value=0)
counts = counts.rename_axis(index="split", columns=None)  # the index was named after the grouping column
st.dataframe(counts.assign(total=counts.sum(axis=1)).rename(columns=display_name), width="content")
if len(report.unreadable()):
    st.caption(f"{len(report.unreadable())} unreadable files are skipped (see the Dataset Explorer).")

# --- model --------------------------------------------------------------------------------------
st.subheader("Model")
arch = st.selectbox("Architecture", list(ARCHITECTURES), format_func=lambda k: ARCHITECTURES[k].title,
                    key="train_arch", help="Every model takes the same grayscale input and does its own "
                                           "scaling inside, so a saved model carries its preprocessing.")
spec = ARCHITECTURES[arch]
st.caption(spec.help)
c1, c2, c3, c4 = st.columns(4)
image_size = ws.number(c1, "Image size (px)", TrainConfig, "image_size", f"train_size_{arch}",
                       "Images are resized to this square side. Larger sees finer detail but trains roughly "
                       "quadratically slower.", value=spec.default_image_size)
epochs = ws.number(c2, "Epochs", TrainConfig, "epochs", "train_epochs",
                   "Upper bound: early stopping ends the run when validation loss stops improving.")
batch_size = ws.number(c3, "Batch size", TrainConfig, "batch_size", "train_batch",
                       "Images per gradient step. Smaller uses less memory; larger is smoother.")
patience = ws.number(c4, "Patience (epochs)", TrainConfig, "patience", "train_patience",
                     "Early stopping waits this many epochs without a better validation loss, then keeps the "
                     "best weights.")
c1, c2, c3, c4 = st.columns(4)
learning_rate = ws.number(c1, "Learning rate", TrainConfig, "learning_rate", "train_lr",
                          "Peak step size. Too high diverges; too low learns slowly.", format="%.5f")
optimizer = c2.selectbox("Optimizer", list(OPTIMIZERS), format_func=OPTIMIZERS.title, key="train_optimizer",
                         help=OPTIMIZERS.help_text())
schedule = c3.selectbox("Learning-rate schedule", list(SCHEDULES), format_func=SCHEDULES.title,
                        key="train_schedule", help=SCHEDULES.help_text())
label_smoothing = ws.slider(c4, "Label smoothing", TrainConfig, "label_smoothing", "train_smoothing",
                            "Softens the one-hot targets a little, which curbs over-confidence.")
c1, c2, c3, c4 = st.columns(4)
class_weighting = c1.toggle("Weight classes by rarity", ws.default_of(TrainConfig, "class_weighting"),
                            key="train_class_weights",
                            help="Rare classes count more in the loss, so the model cannot ignore them.")
mixup = ws.slider(c3, "Mixup", TrainConfig, "mixup", "train_mixup",
                  "Blends pairs of training images and their labels (0 = off; 0.2 is typical). A regulariser "
                  "for small datasets: the model cannot memorise single images as easily.")
style_mix = ws.slider(c4, "Intensity-style mixing", TrainConfig, "style_mix", "train_style_mix",
                      "Shows this share of training images with the brightness and contrast of another training "
                      "image, of any class (0 = off; 0.5 is a good start). In this dataset each class comes mostly "
                      "from one hospital, so a scan's overall intensities give its class away; mixing them makes "
                      "the model look at the anatomy instead. Costs a minute of preparation.")
width, weights, finetune = 1.0, "none", FineTuneConfig()
if not spec.transfer:
    width = c2.select_slider("Width (channel multiplier)", WIDTHS, ws.default_of(TrainConfig, "width"), key="train_width",
                             help="Scales every layer's channels: 0.5 is about 4× cheaper, 2.0 about 4× dearer.")

# --- pretrained weights and fine-tuning (transfer models) -----------------------------------------
if spec.transfer:
    st.subheader("Pretrained weights")
    weights = st.radio("Start from", list(WEIGHTS), horizontal=True, key=f"train_weights_{arch}",
                       format_func=WEIGHTS.title, help=WEIGHTS.help_text())
    status_box = st.container()
    with st.expander("Offline? Place or upload the weights file"):
        target = keras_cache_dir() / (spec.weights_file or "")
        st.markdown(f"Copy **`{spec.weights_file}`** (about {spec.weights_mb:.0f} MB, from the Keras "
                    f"applications page, on a connected machine) to:")
        st.code(str(target), language=None)
        upload = st.file_uploader("…or upload it here", type=["h5"], key=f"train_weights_upload_{arch}",
                                  help="Checked against Keras's published checksum before it is used.")
        if upload is not None and st.session_state.get("train_weights_installed") != upload.file_id:
            with sh.shown_errors():
                path = install_weights(arch, upload.getvalue(), upload.name)
                st.session_state["train_weights_installed"] = upload.file_id
                st.success(f"Installed {escape_markdown(path.name)} into the Keras cache.")
    status = weight_status(arch)
    show = {"cached": status_box.success, "will download": status_box.info}.get(status.state, status_box.warning)
    show(f"ImageNet weights {status.state}: {escape_markdown(status.message)}", icon=STATUS_ICONS.get(status.state))
    st.markdown("**Fine-tuning** (phase 2: after the new head has trained, unfreeze the top of the backbone)")
    c1, c2, c3 = st.columns(3)
    finetune = FineTuneConfig(
        # 5, not the config's 0: on this page a transfer model fine-tunes unless the user turns it off.
        epochs=ws.number(c1, "Fine-tuning epochs", FineTuneConfig, "epochs", "train_ft_epochs",
                         "0 trains only the new head on a frozen backbone.", value=5),
        unfreeze_layers=ws.number(c2, "Unfreeze top K layers", FineTuneConfig, "unfreeze_layers", "train_ft_layers",
                                  "Layers counted from the top of the backbone. Batch-norm layers always stay "
                                  "frozen (small batches would wreck them)."),
        lr_factor=ws.number(c3, "Learning-rate factor", FineTuneConfig, "lr_factor", "train_ft_lr",
                            "Phase-2 rate = learning rate × this factor, so the pretrained features are only "
                            "nudged.", format="%.3f"),
    )

# --- augmentation ------------------------------------------------------------------------------------
st.subheader("Augmentation")
augment = sh.augment_config()
preset = next((name for name, p in AUGMENT_PRESETS.items() if p == augment), None)
options = list(AUGMENT_PRESETS) + ([] if preset else ["custom"])
st.session_state["train_aug_preset"] = preset or "custom"
c1, c2 = st.columns([1, 3])
c1.selectbox("Preset", options, key="train_aug_preset", on_change=apply_augment_preset,
             format_func=lambda n: n if n != "custom" else "custom (from Augmentation Preview)",
             help="Random transforms applied to training images only. Tune them visually on the "
                  "Augmentation Preview page.")
with c2:
    st.caption(preset_label(preset or "custom"))
    st.caption("Training uses: " + describe_augment(augment) + ".")
    nav.page_link("pages/2_Augmentation_Preview.py", "Preview or fine-tune augmentation", ":material/tune:")

with st.expander("Advanced"):
    c1, c2, c3 = st.columns(3)
    seed = ws.number(c1, "Seed", TrainConfig, "seed", "train_seed", "The same seed, data and settings give the same run.")
    strategy = c2.selectbox("Devices", list(STRATEGIES), key="train_strategy", format_func=STRATEGIES.title,
                            help=STRATEGIES.help_text())
    max_batches = ws.number(c3, "Batches per epoch (0 = all)", TrainConfig, "max_train_batches", "train_max_batches",
                            "Cap each epoch for a quick smoke run; leave 0 for real training.", value=0)
    average_epochs = ws.number(
        c1, "Average the last N epochs (0 = keep the best epoch)", TrainConfig, "average_epochs",
        "train_average_epochs", "Averages the weights of the final epochs and re-measures batch-norm statistics on "
        "the training images: a steadier model than the single epoch that scored best on validation.")
    # bfloat16 is offered only where it is native (AVX512-BF16/AMX CPU or a GPU): emulated, it is slower.
    hardware = detect_hardware()
    precision = (c2.selectbox("Precision", list(PRECISIONS), key="train_precision", format_func=PRECISIONS.title,
                              help=PRECISIONS.help_text()) if hardware.bf16_fast else "float32")
    c2.caption(hardware.describe())

# --- start -----------------------------------------------------------------------------------------
# A named recipe (core.training.presets) replaces the settings above, except seed, split, batch cap and
# intensity-style mixing (a property of the data shown, independent of the recipe: bench/RESULTS.md section 15
# trained the fast recipe with it).
recipe = st.radio("Recipe", list(RECIPE_CHOICES), format_func=RECIPE_CHOICES.get, horizontal=True, key="train_recipe",
                  help=RECIPE_HELP + " A named recipe replaces the settings above, except the seed, the split, the "
                  "batches per epoch and intensity-style mixing.")
registry = jobs()
url.remember_in_url({key: st.session_state[key] for key in form_fields() if key in st.session_state})
busy = registry.active("train")
weights_missing = recipe == "custom" and weights == "imagenet" and weight_status(arch).state in ("unreachable",
                                                                                               "damaged")
with sh.shown_errors():
    cfg = preset_config(recipe, seed=int(seed), leakage_free=mode == "leakage_free",
                        max_train_batches=int(max_batches) or None,
                        style_mix=float(style_mix)) if recipe != "custom" else TrainConfig(
        arch=arch, image_size=int(image_size), epochs=int(epochs), batch_size=int(batch_size),
        learning_rate=float(learning_rate), optimizer=optimizer, lr_schedule=schedule,
        label_smoothing=float(label_smoothing), augment=augment, class_weighting=class_weighting,
        patience=int(patience), weights=weights, finetune=finetune, seed=int(seed),
        leakage_free=mode == "leakage_free", strategy=strategy, width=float(width),
        max_train_batches=int(max_batches) or None, average_epochs=int(average_epochs), mixup=float(mixup),
        style_mix=float(style_mix), precision=precision,
    )
    with st.expander("Exact configuration (saved in the model card)"):
        st.code(json.dumps(cfg.to_dict(), indent=2), language="json")
    why_not = ("a training job is running (below): wait for it or cancel it" if busy is not None else
               "the ImageNet weights cannot be reached: place or upload them above, or choose random "
               "initialisation" if weights_missing else None)
    n_models = st.number_input("Models to train", 1, MAX_MEMBERS, 1, key="train_n_models",
                               help="More than one: an ensemble. The models are trained one after another (different "
                                    "seeds; every second one sees the whole frame, intensities standardised, instead of "
                                    "the head crop, and trains with intensity-style mixing), then registered together; their calibrated probabilities are averaged and a warning "
                                    "says when they disagree. Takes N times as long.")
    with_sentinel = n_models > 1 and st.checkbox(
        "Add a check model that only warns", value=False, key="train_sentinel",
        help="One more model, trained on the whole frame as it is (no standardising, no intensity-style mixing), so "
             "it still notices brightness, contrast and framing. It never changes the answer: when it names another "
             "class, Predict & Explain warns that the slice may not look like the training images. The warning is "
             "kept only if it stays within the false-alarm budget on the validation images. Takes one model's "
             "training time more.")
    plural = f"Train an ensemble of {n_models}" + (" with a check model" if with_sentinel else "")
    if st.button("Start training" if n_models == 1 else plural, type="primary",
                 icon=":material/play_arrow:", key="train_start", disabled=why_not is not None,
                 help=why_not and f"Disabled: {why_not}."):
        spec = ARCHITECTURES[cfg.arch]  # a recipe may name another architecture than the box above
        job = registry.submit("train", f"{spec.title} on {ds.name}" + (f" ({plural[6:]})" if n_models > 1 else ""),
                              (lambda j: keep_after_training(train_model(ds, report, cfg, j, DataConfig()), j))
                              if n_models == 1 else
                              (lambda j: keep_after_training(train_ensemble(ds, report, cfg, j, int(n_models),
                                                                            DataConfig(), sentinel=bool(with_sentinel)),
                                                             j)))
        job.update(settings=TrainSettings(cfg, ds.name))
        st.toast(f"Started: {escape_markdown(job.title)}")
        st.rerun()  # the button greys at once while the job runs
    if why_not:
        st.caption(f"Start training is disabled: {why_not}.")

# --- the running or last job -------------------------------------------------------------------------
train_job.job_section(registry)

# --- past runs --------------------------------------------------------------------------------------
st.subheader("Past runs")
runs = list_runs()
if runs:
    table = runs_table(runs)[["model", "architecture", "image size", "dataset", "val accuracy", "macro-F1", "ECE",
                              "train time (s)", "size (MB)", "created"]]
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"val accuracy": st.column_config.NumberColumn(format="percent"),
                                "macro-F1": st.column_config.NumberColumn(format="%.3f"),
                                "ECE": st.column_config.NumberColumn(format="%.3f"),
                                "size (MB)": st.column_config.NumberColumn(format="%.1f")})
    st.caption("Validation-set scores; the Evaluate page measures each model on its held-out test split.")
else:
    st.caption("No trained models yet.")
