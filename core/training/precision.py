"""Mixed bfloat16 training that leaves a float32 model behind.

Under Keras's ``mixed_bfloat16`` policy the layers compute in bfloat16 (half the memory
traffic, and native matrix products on AVX512-BF16/AMX CPUs and GPUs) while their weights stay
float32. The builders keep the loss path in float32: the ``logits`` Dense and the softmax are
float32 layers, and Keras's BatchNormalization upcasts to float32 for its statistics. After
training, :func:`float32_model` rebuilds the network under the float32 policy and copies the
weights, so calibration, out-of-distribution features, evaluation, Grad-CAM and export see
exactly the kind of model a float32 run saves.

Why a scoped policy rather than ``keras.config.set_dtype_policy`` once: Keras 3 keeps its dtype
policy in thread-local state (``keras.src.backend.common.global_state``), so setting it inside
the training worker cannot reach the Streamlit server's other threads; the scope also restores
the thread's previous policy in ``finally``, so the float32 rebuild and whatever else later runs
in the same worker thread (the warnings fit, a next job) build float32 layers. A test checks
that another thread sees float32 while the scope is open, in case Keras ever changes this.
A ``dtype`` argument threaded through every layer of every builder would do the same but touch
each builder, and the ImageNet backbones of ``keras.applications`` take no such argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.lazy_tensorflow import keras
from core.training.options import PRECISIONS


def policy_name(precision: str) -> str:
    """The Keras dtype-policy name of a precision key (``"bfloat16"`` → ``"mixed_bfloat16"``)."""
    return PRECISIONS.check(precision, "precision").build()


@contextmanager
def precision_scope(precision: str) -> Iterator[None]:
    """Build layers under ``precision``'s dtype policy in this thread only; the old policy comes back on exit."""
    k = keras()
    name = policy_name(precision)
    previous = k.config.dtype_policy()
    k.config.set_dtype_policy(name)
    try:
        yield
    finally:
        k.config.set_dtype_policy(previous)


def build_with_precision(arch: str, num_classes: int, image_size: int | None, weights: str, width: float,
                         precision: str) -> Any:
    """:func:`core.models.architectures.build_model` with its layers under ``precision``'s policy."""
    from core.models.architectures import build_model

    with precision_scope(precision):
        return build_model(arch, num_classes, image_size, weights, width)


def float32_model(model: Any, arch: str, image_size: int, width: float) -> Any:
    """``model`` unchanged when it is already float32; else the same network rebuilt under the
    float32 policy with its weights copied (they are float32 variables already: only the
    computation changes). Uncompiled: the copy is only ever used for inference."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    copy = build_with_precision(arch, model.output_shape[-1], image_size, "none", width, "float32")
    copy.set_weights(model.get_weights())
    return copy
