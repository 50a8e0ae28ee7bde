"""Class activation maps: which regions of the slice drove the model's score for a class.

The pipeline lives in :class:`BaseCAM` (find the layer, build a gradient model once, take the
gradient of the class score with respect to the layer's feature map, weight the channels,
ReLU, resize, normalise). A method only decides how channel weights come from the
gradients, as in pytorch-grad-cam's ``base_cam.py``. The result is a float array in [0, 1];
colour and overlay are :mod:`core.inference.overlay`'s business.

References: Selvaraju et al. 2017 (Grad-CAM); Chattopadhay et al. 2018 (Grad-CAM++).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import cv2
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
    from core.tfrt import keras

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
    from core.tfrt import keras

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


_TRACED: dict[tuple[int, tuple], tuple[weakref.ref, Any]] = {}


def traced_gradients(grad_model: Any, batch_shape: tuple) -> Any:
    """A tf.function (traced once per gradient model and input shape) returning the feature map,
    d(class score)/d(feature map) and the class used (class -1 = the predicted one).

    Eager GradientTape through ~50 Keras layers costs ~80 ms of Python per image on a CPU; the
    traced graph runs the same maths in a few milliseconds.
    """
    from core.tfrt import tf as load_tf

    tf = load_tf()
    key = (id(grad_model), tuple(batch_shape))
    with _CACHE_LOCK:
        hit = _TRACED.get(key)
        if hit is not None and hit[0]() is grad_model:
            return hit[1]

        @tf.function(input_signature=[tf.TensorSpec(batch_shape, tf.float32), tf.TensorSpec([], tf.int32)])
        def run(x, class_index):
            with tf.GradientTape() as tape:
                feats, scores = grad_model([x], training=False)  # a list: the model's input structure
                tape.watch(feats)
                idx = tf.where(class_index < 0, tf.cast(tf.argmax(scores[0]), tf.int32), class_index)
                score = tf.cast(tf.gather(scores[0], idx), tf.float32)
            grads = tape.gradient(score, feats)
            return feats, grads, idx

        _TRACED[key] = (weakref.ref(grad_model), run)
        weakref.finalize(grad_model, _TRACED.pop, key, None)
        return run


# --- the CAM pipeline and its methods ---------------------------------------------------------

def _as_batch(image: np.ndarray, input_shape: tuple) -> np.ndarray:
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


class BaseCAM:
    """The Grad-CAM pipeline; subclasses override :meth:`channel_weights` only.

    Args:
        model: a Keras classifier (with a ``logits`` layer if possible).
        layer_name: the feature-map layer to explain; None = the last one (nested models too).
    """

    def __init__(self, model: Any, layer_name: str | None = None) -> None:
        self.model = model
        self.grad_model, self.layer_name = gradient_model(model, layer_name)

    def channel_weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """(h, w, c) activations and gradients -> (c,) channel weights."""
        raise NotImplementedError

    def activations_and_grads(self, image: np.ndarray, class_index: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        """Feature map, d(score)/d(feature map), both (h, w, c) float64, and the class used."""
        from core.tfrt import tf as load_tf

        tf = load_tf()
        x = _as_batch(image, self.model.inputs[0].shape)
        n = int(self.grad_model.outputs[1].shape[-1])
        if class_index is not None and not 0 <= int(class_index) < n:
            raise WorkbenchError(f"class index {class_index} is out of range (the model has {n} classes)", "Grad-CAM")
        run = traced_gradients(self.grad_model, x.shape)
        feats, grads, idx = run(tf.constant(x), tf.constant(-1 if class_index is None else int(class_index), tf.int32))
        acts = np.asarray(feats, dtype=np.float64)[0]
        g = np.asarray(grads, dtype=np.float64)[0]
        return np.nan_to_num(acts), np.nan_to_num(g), int(idx)

    def cam_map(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """(h, w, c) activations and gradients -> (h, w) map before ReLU; channel-weighted by default."""
        return activations @ self.channel_weights(activations, grads)

    def raw(self, image: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """The unnormalised map at the input's size (float32, ≥ 0): comparable between classes."""
        acts, grads, _ = self.activations_and_grads(image, class_index)
        cam = np.maximum(self.cam_map(acts, grads), 0.0)  # ReLU: keep only evidence *for* the class
        h, w = np.asarray(image).shape[:2]
        return cv2.resize(cam.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)

    def __call__(self, image: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """The map for one image.

        Args:
            image: (S, S, 1) uint8 or float 0..255, as made by :func:`core.data.preprocess.prepare`.
            class_index: the class to explain; None = the predicted class.
        Returns:
            float32 (S, S) in [0, 1]; all zeros when nothing supports the class.
        Raises:
            WorkbenchError: wrong image shape or class index.
        """
        return normalise(self.raw(image, class_index))


def normalise(cam: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] by its maximum (all zeros when it has no positive value)."""
    top = float(cam.max()) if cam.size else 0.0
    if not np.isfinite(top) or top <= 1e-12:
        return np.zeros(cam.shape, dtype=np.float32)
    return np.clip(cam / top, 0.0, 1.0).astype(np.float32)


class GradCAM(BaseCAM):
    """Grad-CAM: a channel's weight is its gradient averaged over the feature map."""

    def channel_weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return grads.mean(axis=(0, 1))


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++: positive gradients weighted per position, which separates several instances."""

    def channel_weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        g2 = grads**2
        g3 = g2 * grads
        sum_acts = activations.sum(axis=(0, 1))
        alpha = g2 / (2 * g2 + sum_acts[None, None, :] * g3 + 1e-7)
        alpha = np.where(grads != 0, alpha, 0.0)
        return (np.maximum(grads, 0.0) * alpha).sum(axis=(0, 1))


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al. 2021): each position weighted by its own positive gradient.

    Position-wise weights keep fine detail in earlier, higher-resolution layers, where one
    weight per channel (Grad-CAM) blurs; the paper fuses several layers, as :func:`compute_cam`
    does for this method by default.
    """

    def cam_map(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return (np.maximum(grads, 0.0) * activations).sum(axis=-1)


CAM_METHODS: dict[str, type[BaseCAM]] = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM}
CAM_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM"}
#: Methods that fuse several resolutions unless a layer is named.
MULTI_LAYER = {"layercam": 2}
#: What Predict & Explain, Evaluate and the CLI use unless told otherwise: chosen by the pointing
#: game on the default model's validation images with a tumour box (python -m bench.cam_choice:
#: LayerCAM over the last two resolutions 72.8 %, Grad-CAM on the last layer 34.7 %, whose coarse
#: 8×8 map put pituitary peaks mid-brain; see bench/README.md).
DEFAULT_CAM_METHOD = "layercam"


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


def compute_cam(model: Any, image: np.ndarray, class_index: int | None = None, method: str = "gradcam",
                layer_name: str | list[str] | tuple[str, ...] | None = None, normalised: bool = True) -> np.ndarray:
    """Class activation map of one prepared image.

    Args:
        model: the Keras classifier.
        image: (S, S, 1) uint8 or float 0..255 (not modified).
        class_index: class to explain; None = the predicted class.
        method: a key of :data:`CAM_METHODS`.
        layer_name: feature-map layer, or several to fuse (mean of their maps); None = the last
            one (searched inside nested models), or for multi-layer methods the last layer at
            each of the last resolutions (:func:`multiscale_layers`).
        normalised: scale to [0, 1] by the map's maximum; False keeps the raw scale, so maps of
            different classes of one image can be compared.
    Returns:
        float32 (S, S) heatmap, in [0, 1] when normalised.
    Raises:
        WorkbenchError: unknown method, no usable layer, wrong shape or class index.
    """
    if method not in CAM_METHODS:
        raise WorkbenchError(f"unknown CAM method '{method}'; choose one of {', '.join(CAM_METHODS)}", "Grad-CAM")
    if layer_name is None and method in MULTI_LAYER:
        layer_name = multiscale_layers(model, MULTI_LAYER[method]) or None
    if isinstance(layer_name, list | tuple):
        if class_index is None:  # one class for every layer: the predicted one
            class_index = CAM_METHODS[method](model, layer_name[0]).activations_and_grads(image, None)[2]
        # Each layer's map scaled to its own maximum first, so the coarse layer cannot drown the fine one.
        maps = [normalise(CAM_METHODS[method](model, name).raw(image, class_index)) for name in layer_name]
        fused = np.mean(maps, axis=0).astype(np.float32)
        return normalise(fused) if normalised else fused
    cam = CAM_METHODS[method](model, layer_name)
    return cam(image, class_index) if normalised else cam.raw(image, class_index)
