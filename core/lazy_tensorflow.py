"""Lazy, quiet TensorFlow import. Nothing here runs until a model is actually needed."""

from __future__ import annotations

import os


def tf():
    """Import and return tensorflow with its C++ log noise turned down."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def keras():
    """Import and return keras (3.x) after :func:`tf`."""
    tf()
    import keras as _keras

    return _keras
