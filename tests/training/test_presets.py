"""Training presets (core.training.presets), the CLI's --preset, the warm-up cosine schedule and
progressive resizing (core.training.progressive)."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import AUGMENT_PRESETS
from core.errors import WorkbenchError
from core.training.config import TrainConfig
from core.training.presets import PRESETS, preset_config


def test_every_preset_builds_a_valid_config_with_title_and_help():
    assert "fast" in PRESETS and "default" in PRESETS
    for key, option in PRESETS.items():
        cfg = preset_config(key)
        assert isinstance(cfg, TrainConfig)
        assert option.title and option.help
    assert PRESETS["fast"].title == "Fast (about 10 minutes)"
    assert preset_config("default") == TrainConfig()


def test_fast_preset_trains_small_images_at_one_size():
    # One size throughout: progressive resizing (64 then 96 pixels) scored lower on validation.
    cfg = preset_config("fast")
    assert cfg.small_epochs == 0 and cfg.image_size < TrainConfig().image_size
    assert 0 < cfg.average_epochs < cfg.epochs
    assert cfg.lr_schedule == "cosine" and cfg.mixup == 0
    assert cfg.augment.blur == cfg.augment.noise == cfg.augment.downsample == 0  # no costly CPU transforms
    assert cfg.batch_size > TrainConfig().batch_size


@pytest.mark.parametrize("flags, expected", [((), "float32"), (("avx512_bf16",), "bfloat16"),
                                             (("amx_bf16",), "bfloat16")])
def test_fast_preset_uses_bfloat16_only_where_the_cpu_has_it(monkeypatch, flags, expected):
    from core.training import hardware

    monkeypatch.setattr(hardware, "detect_hardware", lambda: hardware.Hardware(flags, 0))
    assert preset_config("fast").precision == expected


def test_preset_overrides_change_single_fields():
    cfg = preset_config("fast", seed=7, preprocessing="gray-uint8-resize-area-v1")
    assert (cfg.seed, cfg.preprocessing) == (7, "gray-uint8-resize-area-v1")
    assert cfg.small_epochs == preset_config("fast").small_epochs


def test_unknown_preset_lists_the_presets():
    with pytest.raises(WorkbenchError) as err:
        preset_config("turbo")
    assert "turbo" in str(err.value) and all(k in str(err.value) for k in PRESETS)


@pytest.mark.parametrize("kw, words", [
    ({"epochs": 5, "small_epochs": 5}, "fewer than the epochs"),
    ({"epochs": 5, "small_epochs": 2, "image_size": 96, "small_image_size": 96}, "below the image size"),
    ({"small_epochs": -1}, "small image size"),
    ({"small_image_size": 16}, "small image size"),
])
def test_config_refuses_impossible_progressive_resizing(kw, words):
    with pytest.raises(WorkbenchError, match=words):
        TrainConfig(**kw)


# ------------------------------------------------------------------------------ the command line
def _cli(argv, capsys):
    from core.cli import main

    rc = main(argv)
    return rc, capsys.readouterr()


def test_cli_unknown_preset_lists_the_presets(capsys, tmp_path):
    rc, out = _cli(["train", "--data", str(tmp_path), "--preset", "turbo"], capsys)
    assert rc == 2
    assert "turbo" in out.err and "default" in out.err and "fast" in out.err


def test_cli_preset_takes_explicit_options_over_it():
    from core.cli import _load_extra_commands, build_parser
    from core.cli.train import _preset_config

    _load_extra_commands()
    args = build_parser().parse_args(["train", "--data", "x", "--preset", "fast", "--seed", "3",
                                      "--augment", "none", "--split", "dataset"])
    cfg = _preset_config(args)
    fast = preset_config("fast")
    assert (cfg.seed, cfg.augment, cfg.leakage_free) == (3, AUGMENT_PRESETS["none"], False)
    # options left at their defaults do not undo the preset
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.small_epochs) == \
        (fast.epochs, fast.batch_size, fast.learning_rate, fast.small_epochs)


def test_cli_reproduces_a_run_trained_with_the_first_style_mixing_method():
    """README's commands for members T and Q name frame-v1: without it, new runs mix the head only."""
    from core.cli import _load_extra_commands, build_parser
    from core.cli.train import _preset_config

    _load_extra_commands()
    base = ["train", "--data", "x", "--preset", "fast", "--style-mix", "0.5"]
    first = _preset_config(build_parser().parse_args(base + ["--style-mix-method", "frame-v1"]))
    assert (first.style_mix, first.style_mix_method) == (0.5, "frame-v1")
    assert _preset_config(build_parser().parse_args(base)).style_mix_method == "head-v1"


def test_cli_unknown_style_mixing_method_lists_the_methods(capsys, tmp_path):
    with pytest.raises(SystemExit):
        _cli(["train", "--data", str(tmp_path), "--style-mix-method", "whole"], capsys)
    err = capsys.readouterr().err
    assert "head-v1" in err and "frame-v1" in err


def test_cli_preset_refuses_a_combination_the_config_refuses(capsys, tmp_path):
    rc, out = _cli(["train", "--data", str(tmp_path), "--preset", "fast", "--epochs", "1"], capsys)
    assert rc == 2 and "epochs to average" in out.err  # the preset averages its last 2 epochs


# ------------------------------------------------------------------------------ the schedule
def test_cosine_schedule_is_keras_cosine_decay_warming_up_then_decaying():
    from core.lazy_tensorflow import keras
    from core.training.options import SCHEDULES

    start, callbacks = SCHEDULES["cosine"].build(TrainConfig(), 0.01, 10, 20)  # 200 steps, warm-up 10
    (steer,) = callbacks  # the rate is set before each batch, not traced into the graph once per weight
    rate = steer.schedule
    assert isinstance(rate, keras().optimizers.schedules.CosineDecay) and isinstance(start, float)
    assert start == pytest.approx(float(rate(0)))
    lr = np.array([float(rate(step)) for step in range(201)])
    warm, decay = lr[:11], lr[10:]
    assert lr[0] == pytest.approx(1e-5, rel=1e-3)  # starts at 1/1000 of the peak
    assert np.all(np.diff(warm) > 0) and lr[10] == pytest.approx(0.01, rel=1e-4)  # linear climb to the peak
    assert np.all(np.diff(decay) < 0)  # then falls all the way
    assert lr[105] == pytest.approx(0.01 * (0.5 * (1 + np.cos(np.pi * 95 / 190)) * (1 - 1e-3) + 1e-3), rel=1e-3)
    assert lr[200] == pytest.approx(1e-5, rel=1e-2)


def test_every_batch_trains_at_the_rate_the_schedule_gives_for_its_step():
    """A short fit with the cosine option: the optimizer's rate at each batch is the schedule's at the
    optimizer's step count (the rate the schedule inside the optimizer would have used), the weight
    decay uses that rate, and a second fit carries on from the step count (progressive resizing)."""
    from core.lazy_tensorflow import keras
    from core.training.options import SCHEDULES

    k = keras()
    cfg = TrainConfig(weight_decay=1e-2)
    start, (steer,) = SCHEDULES["cosine"].build(cfg, 0.05, 4, 3)  # 12 steps, warm-up 1
    model = k.Sequential([k.Input((3,)), k.layers.Dense(2)])
    model.compile(optimizer=k.optimizers.AdamW(learning_rate=start, weight_decay=cfg.weight_decay), loss="mse")
    seen: list[float] = []
    record = k.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: seen.append(float(k.ops.convert_to_numpy(model.optimizer.learning_rate))))
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    model.fit(x, y, batch_size=2, epochs=2, callbacks=[steer, record], verbose=0)
    model.fit(x, y, batch_size=2, epochs=1, callbacks=[steer, record], verbose=0)
    expected = [float(steer.schedule(step)) for step in range(12)]
    assert seen == pytest.approx(expected, rel=1e-6)
    assert len(set(np.round(seen, 8))) > 6  # the rate really moved: warm-up, then decay


def test_plateau_schedule_keeps_a_fixed_rate_and_a_callback():
    from core.training.options import SCHEDULES

    rate, callbacks = SCHEDULES["plateau"].build(TrainConfig(), 0.01, 10, 20)
    assert rate == 0.01 and len(callbacks) == 1


# ------------------------------------------------------------------------------ progressive resizing
def test_scaled_images_keep_dtype_range_and_mean():
    from core.training.progressive import scaled_images

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 64, 64, 1), dtype=np.uint8)
    before = x.copy()
    small = scaled_images(x, 32, chunk=2)
    assert small.shape == (5, 32, 32, 1) and small.dtype == np.uint8
    assert np.array_equal(x, before)  # the caller's array is left alone
    # area averaging of 2x2 blocks
    blocks = x.reshape(5, 32, 2, 32, 2, 1).astype(float).mean(axis=(2, 4))
    assert np.abs(small.astype(float) - blocks).max() <= 1
    assert scaled_images(x, 64) is x


@pytest.mark.slow
def test_progressive_resizing_trains_small_then_saves_the_full_size(tmp_path, demo_root, monkeypatch):
    from fixtures_models import train_isolated

    from core.jobs import Job
    from core.lazy_tensorflow import keras

    sizes: list[tuple[int, int]] = []
    original = keras().Model.fit

    def recording_fit(self, x=None, *args, **kwargs):
        sizes.append(tuple(self.input_shape[1:3]))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(keras().Model, "fit", recording_fit)
    cfg = TrainConfig(image_size=48, small_image_size=32, epochs=3, small_epochs=2, average_epochs=1, width=0.25,
                      batch_size=16, max_train_batches=2, patience=10, seed=1, augment=AUGMENT_PRESETS["light"],
                      tta="none")
    job = Job("train", "progressive")
    run, _, _ = train_isolated(tmp_path, demo_root, cfg, job)
    assert sizes == [(32, 32), (48, 48)]  # the image size changes between the phases
    assert run.image_size == 48 and run.card.train_config["small_image_size"] == 32
    from core.models.runs import load_model

    assert tuple(load_model(run).input_shape[1:3]) == (48, 48)  # the saved model takes the final size
    history = job.snapshot().history
    assert [row["epoch"] for row in history] == [1, 2, 3]
    # the schedule runs on across the change of size: the rate keeps falling
    assert all(a["lr"] > b["lr"] for a, b in zip(history, history[1:]))
    assert any("progressive resizing" in line for line in job.snapshot().log)


@pytest.mark.slow
def test_optimizer_state_moves_to_the_full_size_model():
    from core.lazy_tensorflow import keras
    from core.models.architectures import build_model
    from core.training.loop import compile_model
    from core.training.progressive import copy_optimizer_state

    k = keras()
    cfg = TrainConfig(width=0.25)
    small, big = build_model("custom_cnn", 4, 32, "none", 0.25), build_model("custom_cnn", 4, 48, "none", 0.25)
    for m in (small, big):
        compile_model(m, cfg, 1e-3)
    x = np.random.default_rng(0).random((4, 32, 32, 1)).astype("float32") * 255
    small.train_on_batch(x, k.utils.to_categorical([0, 1, 2, 3], 4))
    copy_optimizer_state(small, big)
    assert int(big.optimizer.iterations.numpy()) == 1
    for a, b in zip(big.optimizer.variables, small.optimizer.variables):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    other = build_model("custom_cnn", 4, 32, "none", 0.5)
    compile_model(other, cfg, 1e-3)
    with pytest.raises(WorkbenchError, match="differ"):
        copy_optimizer_state(small, other)
