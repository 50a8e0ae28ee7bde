"""Analytic FLOP count of a Keras model's forward pass (convolutions and dense layers).

We count multiply-adds of Conv2D, DepthwiseConv2D and Dense from their output shapes; these
layers are >98 % of the arithmetic in the networks here. 1 MAC = 2 FLOPs. Training costs
about 3× the forward pass (forward + two backward matmuls per layer).
"""

from __future__ import annotations


def forward_flops(model) -> int:
    """Forward-pass FLOPs for one image."""
    import keras

    total = 0
    for layer in _all_layers(model):
        out = layer.output.shape if hasattr(layer, "output") else None
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            total += out[1] * out[2] * out[3] * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += out[1] * out[2] * out[3] * kh * kw * cin // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return 2 * int(total)


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _all_layers(layer)
        else:
            yield layer
