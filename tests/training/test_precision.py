"""The bfloat16 ("fast") training precision: registry, config, hardware detection, models, CLI.

A bfloat16 run computes its layers in bfloat16 but keeps the logits, softmax and batch-norm
statistics in float32, and saves a float32 model (core.training.precision).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import test_page_train

from core.errors import WorkbenchError
from core.training.config import TrainConfig
from core.training.hardware import BF16_FLAGS, cpu_flags, detect_hardware
from core.training.options import PRECISIONS

page_env = test_page_train.page_env  # fixture: the Train page's job registry, demo and folders
page = test_page_train.page

INTEL_SPR = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\nprocessor\t: 1\n"
ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
OLD_XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


# ---------------------------------------------------------------- registry and config
def test_registry_lists_float32_first_with_titles_help_and_policies() -> None:
    assert list(PRECISIONS) == ["float32", "bfloat16"]
    for option in PRECISIONS.values():
        assert option.title and option.help
    assert PRECISIONS["float32"].build() == "float32"
    assert PRECISIONS["bfloat16"].build() == "mixed_bfloat16"


def test_config_defaults_to_float32_and_round_trips_the_precision() -> None:
    assert TrainConfig().precision == "float32"
    cfg = TrainConfig(precision="bfloat16")
    assert cfg.to_dict()["precision"] == "bfloat16"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict({"epochs": 3}).precision == "float32"  # cards from before the option


@pytest.mark.parametrize("bad", ["float16", "mixed_bfloat16", "BF16", "", None, 16])
def test_unknown_precision_is_refused(bad) -> None:
    with pytest.raises(WorkbenchError, match="precision"):
        TrainConfig(precision=bad)


def test_job_settings_name_a_non_default_precision() -> None:
    from core.training.train_feedback import settings_rows

    assert "Precision" not in dict(settings_rows(TrainConfig(), "demo"))
    rows = dict(settings_rows(TrainConfig(precision="bfloat16"), "demo"))
    assert rows["Precision"] == PRECISIONS["bfloat16"].title


# ---------------------------------------------------------------- hardware
@pytest.mark.parametrize("text, flags, fast", [
    (INTEL_SPR, ("avx512_bf16", "amx_bf16"), True),
    (ZEN4, ("avx512_bf16",), True),
    (OLD_XEON, (), False),
    (ARM, (), False),  # ARM's "bf16" is not one of the x86 flags oneDNN's fast path is checked by here
    ("", (), False),
])
def test_bf16_support_is_read_from_cpuinfo_flags(text, flags, fast) -> None:
    hw = detect_hardware(text, gpus=0)
    assert hw.cpu_bf16_flags == flags
    assert hw.bf16_fast is fast
    assert ("natively" in hw.describe()) is fast


def test_a_gpu_alone_makes_bf16_worth_offering() -> None:
    hw = detect_hardware(OLD_XEON, gpus=2)
    assert hw.bf16_fast and "2 GPUs" in hw.describe()


def test_flags_are_whole_words_from_flags_lines_only() -> None:
    assert "avx512_bf16" not in cpu_flags("model name\t: avx512_bf16 marketing name\nflags\t: avx512_bf16x\n")
    assert cpu_flags(ZEN4) >= {"avx512_bf16", "avx2"}
    assert set(BF16_FLAGS) <= cpu_flags(INTEL_SPR)


def test_this_machine_is_described_without_loading_tensorflow() -> None:
    hw = detect_hardware()  # reads /proc/cpuinfo; must not fail where it is absent
    assert isinstance(hw.describe(), str) and hw.gpus >= 0


# ---------------------------------------------------------------- models
@pytest.mark.slow
def test_bf16_custom_cnn_computes_convolutions_in_bf16_with_float32_outputs_and_statistics() -> None:
    from core.lazy_tensorflow import keras
    from core.training.precision import build_with_precision

    k = keras()
    model = build_with_precision("custom_cnn", 4, 32, "none", 0.25, "bfloat16")
    convs = [layer for layer in model.layers if isinstance(layer, k.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "bfloat16" for layer in convs)
    assert all(layer.variable_dtype == "float32" for layer in model.layers)  # weights stay float32
    assert model.get_layer("logits").compute_dtype == "float32"
    bn = next(layer for layer in model.layers if isinstance(layer, k.layers.BatchNormalization))
    assert bn.moving_mean.dtype == "float32" and bn.moving_variance.dtype == "float32"
    logits_in = k.Model(model.input, model.get_layer("logits").output)
    assert str(model.output.dtype) == "float32" and str(logits_in.output.dtype) == "float32"
    # Activations inside really are bfloat16 (the convolution's output, not just its policy).
    assert "bfloat16" in str(model.get_layer("stage1_conv1").output.dtype)
    probs = model.predict(np.full((2, 32, 32, 1), 128.0, "float32"), verbose=0)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_the_policy_is_scoped_to_the_building_thread_and_restored() -> None:
    from core.lazy_tensorflow import keras
    from core.training.precision import precision_scope

    k = keras()
    seen: dict[str, str] = {}
    inside, leave = threading.Event(), threading.Event()

    def other_thread() -> None:
        inside.wait(10)
        seen["other"] = k.config.dtype_policy().name  # the Streamlit server's other threads
        leave.set()

    t = threading.Thread(target=other_thread)
    t.start()
    with precision_scope("bfloat16"):
        seen["inside"] = k.config.dtype_policy().name
        inside.set()
        leave.wait(10)
    t.join(10)
    assert seen == {"inside": "mixed_bfloat16", "other": "float32"}
    assert k.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError), precision_scope("bfloat16"):
        raise RuntimeError("a failed build")
    assert k.config.dtype_policy().name == "float32"  # restored after an error too


@pytest.mark.slow
def test_float32_copy_has_the_same_weights_and_close_predictions() -> None:
    from core.training.precision import build_with_precision, float32_model

    mixed = build_with_precision("custom_cnn", 4, 32, "none", 0.25, "bfloat16")
    plain = float32_model(mixed, "custom_cnn", 32, 0.25)
    assert plain is not mixed
    assert {layer.dtype_policy.name for layer in plain.layers} == {"float32"}
    for a, b in zip(mixed.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(plain.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=0.05)
    assert float32_model(plain, "custom_cnn", 32, 0.25) is plain  # a float32 model is left alone


@pytest.mark.slow
def test_bf16_training_saves_a_float32_model_and_records_the_precision(tmp_path, demo_root) -> None:
    from fixtures_models import train_isolated

    from core.jobs import Job
    from core.lazy_tensorflow import keras

    cfg = TrainConfig(image_size=32, width=0.25, epochs=1, batch_size=16, max_train_batches=2, patience=1,
                      precision="bfloat16")
    run, _, _ = train_isolated(tmp_path, demo_root, cfg, Job("train", "tiny bfloat16 run"))
    assert run.card.train_config["precision"] == "bfloat16"
    saved = keras().models.load_model(run.path / run.card.model_file, compile=False)
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    assert all(w.dtype == np.float32 for w in saved.get_weights())
    assert keras().config.dtype_policy().name == "float32"  # nothing left behind in this thread


# ---------------------------------------------------------------- CLI
def test_cli_parses_the_precision_flag() -> None:
    from core.cli import _load_extra_commands, build_parser

    _load_extra_commands()  # what main() does first: registers train, evaluate...
    parser = build_parser()
    args = parser.parse_args(["train", "--data", "x", "--precision", "bfloat16"])
    assert args.precision == "bfloat16"
    assert parser.parse_args(["train", "--data", "x"]).precision == "float32"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "x", "--precision", "float16"])


# ---------------------------------------------------------------- Train page
@pytest.mark.slow
@pytest.mark.parametrize("cpuinfo, offered", [(ZEN4, True), (OLD_XEON, False)], ids=["avx512-bf16", "no-bf16"])
def test_train_page_offers_bfloat16_only_where_it_is_native(cpuinfo, offered, page_env, tmp_path, monkeypatch) -> None:
    import core.training.hardware as hw

    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo)
    monkeypatch.setattr(hw, "CPUINFO", fake)
    monkeypatch.setattr(hw, "_visible_gpus", lambda: 0)
    at = page().run()
    assert not at.exception
    captions = "\n".join(str(c.value) for c in at.caption)
    assert ("bfloat16 runs natively here: CPU with AVX512-BF16" in captions) is offered
    assert ("float32 only" in captions) is not offered
    assert ("train_precision" in [s.key for s in at.selectbox]) is offered
    if offered:
        at.selectbox(key="train_precision").set_value("bfloat16").run()
        assert not at.exception
    configuration = "\n".join(str(c.value) for c in at.code)
    assert f'"precision": "{"bfloat16" if offered else "float32"}"' in configuration
