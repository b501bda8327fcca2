"""What a network costs: parameters and the multiply-accumulates of its convolutions."""
from __future__ import annotations

import tensorflow as tf
from tf_keras import layers

from .network import build_mirnet
from .network_config import MirnetConfig


def count_params(model) -> int:
    return int(sum(int(tf.size(w)) for w in model.trainable_weights))


def conv_macs(model) -> int:
    """Multiply-accumulates of all convolutions of a fixed-shape model (the bulk of its work)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += h * w * cout * kh * kw * cin
    return int(total)


def macs_per_pixel(cfg: MirnetConfig, size: int = 64) -> float:
    model = build_mirnet(cfg, input_shape=(size, size, 3), batch_size=1)
    return conv_macs(model) / (size * size)
