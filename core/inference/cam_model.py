"""The gradient model behind every CAM: find the feature-map layer, splice it out, trace the gradients once.

:mod:`core.inference.gradcam` asks :func:`gradient_model` for a Keras model returning (feature
map, class scores) and :func:`traced_gradients` for a compiled function returning the feature
map, its gradient and the class used. Both are cached per model, weakly, under a lock: the
Streamlit server explains images from several sessions at once.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from core.errors import WorkbenchError

SCORE_LAYER = "logits"  # pre-softmax scores: softmax saturates and flattens the gradients


# --- finding the layer ------------------------------------------------------------------------

def _sub_layers(layer: Any) -> list | None:
    """The layers of a nested model (functional or sequential), None for a plain layer."""
    layers = getattr(layer, "layers", None)
    return list(layers) if isinstance(layers, list | tuple) and layers else None


def _is_feature_map(layer: Any) -> bool:
    if type(layer).__name__ == "InputLayer":
        return False  # the raw input is not evidence the network computed
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):  # never called, or shared (several outputs)
        return False


def _find_path(model: Any, name: str | None) -> list | None:
    """[nested model, ..., target layer], searching from the last layer backwards."""
    for layer in reversed(model.layers):
        if name is not None and layer.name == name:
            return [layer]
        inner = _sub_layers(layer)
        if inner is not None:
            sub = _find_path(layer, name)
            if sub:
                return [layer, *sub]
        if name is None and _is_feature_map(layer):
            return [layer]
    return None


def find_target_layer(model: Any, name: str | None = None) -> Any:
    """The layer whose feature map Grad-CAM explains.

    Args:
        model: a Keras model; nested models (a backbone used as a layer) are searched too.
        name: a layer name to look up (anywhere in the nesting); None picks the last layer
            whose output is a 4-D feature map (batch, height, width, channels).
    Returns:
        The Keras layer.
    Raises:
        WorkbenchError: no such layer, or the named layer's output is not a feature map.
    """
    path = _find_path(model, name)
    if not path:
        what = f"no layer named '{name}'" if name else "no convolutional (4-D) feature map layer"
        raise WorkbenchError(f"{what} in model '{model.name}', so Grad-CAM cannot be computed", "Grad-CAM")
    if not _is_feature_map(path[-1]):
        raise WorkbenchError(f"layer '{name}' does not output a 4-D feature map", "Grad-CAM")
    return path[-1]


# --- the gradient model (built once per model and layer) ---------------------------------------

def _spliced_model(model: Any, nested: Any, inner: Any, score_layer: Any) -> Any:
    """``model`` with its call of ``nested`` replaced by ``inner`` (same inputs, returning [feature
    map, nested's output]): a model mapping ``model``'s inputs to [feature map, score].

    The graph is re-traced with Keras's public ``clone_model``, keeping every layer (and so every
    weight) and calling ``inner`` where ``nested`` was called, so layers after the nested model
    may also use earlier tensors (skip connections). ``score_layer`` None scores with the output.
    """
    from core.lazy_tensorflow import keras

    k = keras()
    if isinstance(model, k.Sequential):  # clone_model takes a call_function for functional graphs only
        model = k.Model(model.inputs, model.outputs, name=model.name)
    feats, scores = [], []

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if layer is nested:
            feat, out = inner(*args, **kwargs)
            feats.append(feat)
        else:
            out = layer(*args, **kwargs)
        if layer is score_layer:
            scores.append(out)
        return out

    traced = k.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    if len(feats) != 1:
        raise WorkbenchError(
            f"the nested model '{nested.name}' is used {len(feats)} times in '{model.name}'; "
            "pass layer_name of a layer in the outer model", "Grad-CAM")
    return k.Model(traced.inputs, [feats[0], scores[0] if score_layer is not None else traced.outputs[0]])


def _feature_model(model: Any, path: list, score_layer: Any = None) -> Any:
    """A model mapping ``model``'s inputs to [target feature map, score].

    The score is ``score_layer``'s output (a layer of ``model``), or ``model``'s output when
    None. For a nested path the inner model is rebuilt to also return the target's output, then
    put in place of the nested model in the outer graph.
    """
    from core.lazy_tensorflow import keras

    k = keras()
    if len(path) == 1:
        score = score_layer.output if score_layer is not None else model.outputs[0]
        return k.Model(model.inputs, [path[0].output, score])
    nested = path[0]
    return _spliced_model(model, nested, _feature_model(nested, path[1:]), score_layer)


def _score_layer(model: Any) -> Any:
    """The layer giving pre-softmax scores, None when the model has none (its output is used)."""
    names = {layer.name for layer in model.layers}
    return model.get_layer(SCORE_LAYER) if SCORE_LAYER in names else None


_CACHE: dict[tuple[int, str | None], tuple[weakref.ref, Any, str]] = {}
_CACHE_LOCK = threading.Lock()


def gradient_model(model: Any, layer_name: str | None = None) -> tuple[Any, str]:
    """The cached (model → [feature map, scores]) Keras model and the target layer's name."""
    key = (id(model), layer_name)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0]() is model:  # an id can be reused after garbage collection
            return hit[1], hit[2]
        find_target_layer(model, layer_name)  # clear error before building anything
        path = _find_path(model, layer_name)
        built = _feature_model(model, path, _score_layer(model))
        _CACHE[key] = (weakref.ref(model), built, path[-1].name)
        weakref.finalize(model, _CACHE.pop, key, None)
        return built, path[-1].name


def fused_gradient_model(model: Any, names: tuple[str, ...]) -> Any | None:
    """A cached model mapping ``model``'s inputs to [feature map of each named layer, ..., scores].

    One forward and one backward pass then give every layer's gradient (a multi-layer CAM
    otherwise runs the network once per layer). None when a name is not a feature-map layer of
    the outer model (a nested backbone): the caller explains layer by layer instead.
    """
    from core.lazy_tensorflow import keras

    key = (id(model), tuple(names))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0]() is model:
            return hit[1]
        outer = {layer.name: layer for layer in model.layers}
        layers = [outer.get(name) for name in names]
        if not layers or any(la is None or _sub_layers(la) or not _is_feature_map(la) for la in layers):
            return None
        score_layer = _score_layer(model)
        score = score_layer.output if score_layer is not None else model.outputs[0]
        built = keras().Model(model.inputs, [la.output for la in layers] + [score])
        _CACHE[key] = (weakref.ref(model), built, ",".join(names))
        weakref.finalize(model, _CACHE.pop, key, None)
        return built


_TRACED: dict[tuple[int, tuple], tuple[weakref.ref, Any]] = {}


def traced_gradients(grad_model: Any, batch_shape: tuple) -> Any:
    """A tf.function (traced once per gradient model and input shape) returning the feature maps,
    d(class score)/d(each feature map), both lists with one entry per feature output of
    ``grad_model`` (all outputs but the last, the scores), and the class used (-1 = the predicted one).

    Eager GradientTape through ~50 Keras layers costs ~80 ms of Python per image on a CPU; the
    traced graph runs the same maths in a few milliseconds.
    """
    from core.lazy_tensorflow import tf as load_tf

    tf = load_tf()
    key = (id(grad_model), tuple(batch_shape))
    with _CACHE_LOCK:
        hit = _TRACED.get(key)
        if hit is not None and hit[0]() is grad_model:
            return hit[1]

        @tf.function(input_signature=[tf.TensorSpec(batch_shape, tf.float32), tf.TensorSpec([], tf.int32)])
        def run(x, class_index):
            with tf.GradientTape() as tape:
                outputs = grad_model([x], training=False)  # a list: the model's input structure
                feats, scores = list(outputs[:-1]), outputs[-1]
                tape.watch(feats)
                idx = tf.where(class_index < 0, tf.cast(tf.argmax(scores[0]), tf.int32), class_index)
                score = tf.cast(tf.gather(scores[0], idx), tf.float32)
            grads = tape.gradient(score, feats)
            return feats, grads, idx

        _TRACED[key] = (weakref.ref(grad_model), run)
        weakref.finalize(grad_model, _TRACED.pop, key, None)
        return run


def as_batch(image: np.ndarray, input_shape: tuple) -> np.ndarray:
    """A float32 (1, H, W, C) copy; the caller's array is never touched."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise WorkbenchError(f"expected one (H, W, 1) image, got an array of shape {arr.shape}", "Grad-CAM")
    expected = tuple(input_shape[1:])
    if any(e is not None and e != a for e, a in zip(expected, arr.shape)):
        raise WorkbenchError(f"the model expects images of shape {expected}, got {arr.shape}; "
                             "prepare it with core.data.preprocess.prepare", "Grad-CAM")
    return np.array(arr, dtype=np.float32, copy=True)[None]


# Layers that only rescale or replicate the input: their "map" is the image, not evidence.
_INPUT_ADAPTERS = {"Rescaling", "Normalization", "Concatenate"}


def multiscale_layers(model: Any, n: int = 2) -> list[str]:
    """Names of the last feature-map layer at each of the last ``n`` spatial resolutions.

    E.g. for the custom CNN at 128 px: the 8×8 output of stage 4 and the 16×16 output of
    stage 3. Searches the outer model only (transfer models are built flat); a model whose
    backbone is one nested layer gets an empty list, and callers fall back to its last layer.
    """
    names: list[str] = []
    sizes: list[tuple] = []
    for layer in reversed(model.layers):
        if not _is_feature_map(layer) or type(layer).__name__ in _INPUT_ADAPTERS or _sub_layers(layer):
            continue  # a nested backbone is searched by the single-layer path instead
        size = tuple(layer.output.shape[1:3])
        if size in sizes:
            continue
        sizes.append(size)
        names.append(layer.name)
        if len(names) == n:
            break
    return names
