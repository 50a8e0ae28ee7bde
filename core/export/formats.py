"""The export formats: how each one is written from the serving model and how it is run back.

Each format is a small registry entry (:data:`EXPORT_FORMATS`). ``write`` uses a maintained
converter (Keras 3's own ``save``/``export``, which drive the TensorFlow SavedModel writer,
the LiteRT converter and tf2onnx); ``load`` opens the written file with the runtime a user
outside the workbench would use, so verification and the latency benchmark exercise exactly
what ships. Every loaded model is a callable: (N, S, S, 1) float32 in 0..255 -> (N, K) probabilities.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.options import Registry

INPUT_NAME = "image"  # the serving model's input, in every format
OUTPUT_NAME = "probabilities"  # its one output: calibrated class probabilities
ONNX_OPSET = 17  # supported by onnxruntime >= 1.14 and by most other ONNX runtimes

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ExportFormat:
    """One export format."""

    key: str
    title: str
    artifact: str  # the model's file (or folder) name inside the bundle
    write: Callable[[Any, Path], None]  # (serving keras.Model, path) -> writes the artifact
    load: Callable[[Path], Predict]  # path -> a function from images to probabilities
    runtime: str  # what a user installs to run it (shown in the bundle's README)
    example: str  # the inference lines of the README example; {size}, {pre}, {classes} filled in

    @property
    def help(self) -> str:
        """One line for people: what a user installs to run it."""
        return f"runs with {self.runtime}"


def _threads() -> int:
    return max(1, os.cpu_count() or 1)


def _write_keras(model: Any, path: Path) -> None:
    model.save(path)


def _load_keras(path: Path) -> Predict:
    from core.lazy_tensorflow import keras
    from core.lazy_tensorflow import tf as load_tf

    tf, model = load_tf(), keras().saving.load_model(path, compile=False, safe_mode=True)
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    # A traced function, as the workbench's ModelRunner uses: model.predict adds tf.data overhead per call.
    step = tf.function(lambda x: model(x, training=False)[OUTPUT_NAME], input_signature=[spec])
    return lambda x: step(np.ascontiguousarray(x, np.float32)).numpy()


def _write_savedmodel(model: Any, path: Path) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False)


def _load_savedmodel(path: Path) -> Predict:
    from core.lazy_tensorflow import tf as load_tf

    tf = load_tf()
    loaded = tf.saved_model.load(str(path))  # the closure keeps it alive: the signature needs its variables

    def predict(x: np.ndarray) -> np.ndarray:
        serve = loaded.signatures["serving_default"]
        return serve(**{INPUT_NAME: tf.constant(np.asarray(x, np.float32))})[OUTPUT_NAME].numpy()

    return predict


def _write_tflite(model: Any, path: Path) -> None:
    model.export(str(path), format="litert", verbose=False)


def _load_tflite(path: Path) -> Predict:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=_threads())
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    shape: list[tuple[int, ...]] = []  # the batch shape the tensors are allocated for

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if not shape or shape[0] != x.shape:  # resizing re-plans memory: only when the batch size changes
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
            shape[:] = [x.shape]
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return predict


def _write_onnx(model: Any, path: Path) -> None:
    """tf2onnx on the *frozen* graph of the serving function.

    Keras's own ``export(format="onnx")`` hands tf2onnx the unfrozen function, which turns the
    constants a ``Normalization`` layer captures (EfficientNetB0's ``normalization``, ResNet50's
    ``caffe_preprocess``) into extra graph inputs, so the file cannot be run. Freezing first
    (``convert_variables_to_constants_v2``) makes them constants, for every architecture.
    """
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from core.lazy_tensorflow import tf as load_tf

    try:  # tf2onnx 1.17 predates NumPy 2; Keras's ONNX exporter applies the same patch before converting
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    except ImportError:
        pass
    tf = load_tf()
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name=INPUT_NAME)
    fn = tf.function(lambda image: model(image, training=False)[OUTPUT_NAME], input_signature=[spec])
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    inputs, outputs = [t.name for t in frozen.inputs], [t.name for t in frozen.outputs]
    proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=inputs,
                                              output_names=outputs, opset=ONNX_OPSET)
    _rename(proto.graph, {inputs[0]: INPUT_NAME, outputs[0]: OUTPUT_NAME})
    path.write_bytes(proto.SerializeToString())


def _rename(graph: Any, names: dict[str, str]) -> None:
    """Give the ONNX graph's input and output the names the README uses ('image', 'probabilities')."""
    for value in (*graph.input, *graph.output):
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]


def _load_onnx(path: Path) -> Predict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, np.float32)})[0]


_KERAS_EXAMPLE = """\
import keras
model = keras.saving.load_model("model.keras", safe_mode=True, compile=False)
probs = model.predict(x, verbose=0)["probabilities"][0]"""

_SAVEDMODEL_EXAMPLE = """\
import tensorflow as tf
serve = tf.saved_model.load("saved_model").signatures["serving_default"]
probs = serve(image=tf.constant(x))["probabilities"].numpy()[0]"""

_TFLITE_EXAMPLE = """\
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path="model.tflite")
interpreter.allocate_tensors()  # batch of 1; resize_tensor_input() for larger batches
interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
interpreter.invoke()
probs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]"""

_ONNX_EXAMPLE = """\
import onnxruntime as ort
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
probs = session.run(["probabilities"], {"image": x})[0][0]"""

EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format", (
    ExportFormat("keras", "Keras 3 (.keras)", "model.keras", _write_keras, _load_keras,
                 "tensorflow==2.21.0 keras==3.15.1", _KERAS_EXAMPLE),
    ExportFormat("savedmodel", "TensorFlow SavedModel", "saved_model", _write_savedmodel, _load_savedmodel,
                 "tensorflow==2.21.0", _SAVEDMODEL_EXAMPLE),
    ExportFormat("tflite", "LiteRT / TensorFlow Lite (.tflite)", "model.tflite", _write_tflite, _load_tflite,
                 "ai-edge-litert==2.3.0", _TFLITE_EXAMPLE),
    ExportFormat("onnx", "ONNX (.onnx)", "model.onnx", _write_onnx, _load_onnx,
                 "onnxruntime==1.32.0", _ONNX_EXAMPLE),
))
