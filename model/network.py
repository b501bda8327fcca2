"""The tiny MIRNet (Zamir et al., "Learning Enriched Features for Real Image Restoration and
Enhancement", ECCV 2020), one small function per block, in tf_keras.

Every op lowers to a TFLite builtin that TensorFlow Lite Micro runs, and no tensor has more
than four dimensions. Three exact rewrites of the textbook blocks keep the TFLM arena small
without changing what the network computes:

* up-sampling: a 1x1 conv commutes with bilinear resizing (both are linear and the bilinear
  weights sum to one), so both branches of the residual up-sampling module apply their 1x1
  conv at the low resolution, are summed there, and one bilinear resize follows;
* SKFF: the per-stream 1x1 "up" convs are one conv with streams*C outputs, reshaped to
  (1, C, streams) so that the softmax across streams runs on the last axis, then split;
* channel mean/max for spatial attention are REDUCE ops on the last axis (4-D tensors only).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

NUM_STREAMS = 3
# The network's input must be a multiple of this (two 2x down-samplings).
SIZE_MULTIPLE = 2 ** (NUM_STREAMS - 1)


@dataclass(frozen=True)
class MirnetConfig:
    """Size of the network. Stream k (k = 0, 1, 2) has round(channels * growth**k) channels."""

    channels: int = 8
    growth: float = 1.0
    num_rrg: int = 1
    num_mrb: int = 1
    attention_reduction: int = 4  # channel attention squeeze: C -> max(2, C // r)
    skff_reduction: int = 2  # SKFF squeeze: C -> max(4, C // r)
    spatial_kernel: int = 5  # spatial attention conv kernel
    # Not a layer: the frame exposure normalisation the weights were trained with
    # (model/exposure.py); 0 = none. Saved with the weights so that they are always fed alike.
    exposure_target: int = 0

    def stream_channels(self) -> list[int]:
        return [max(1, round(self.channels * self.growth**k)) for k in range(NUM_STREAMS)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "MirnetConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @classmethod
    def load(cls, path: str | Path) -> "MirnetConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


class _Namer:
    """Gives every layer a readable, unique name (block_index/part)."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def __call__(self, block: str) -> str:
        n = self.counts.get(block, 0)
        self.counts[block] = n + 1
        return f"{block}{n}"


def conv(x, filters, kernel, name, activation=None):
    return layers.Conv2D(filters, kernel, padding="same", activation=activation, name=name)(x)


def prelu(x, name):
    return layers.PReLU(shared_axes=[1, 2], name=name)(x)


def channel_attention(x, reduction, name):
    """Global average pool -> 1x1 squeeze -> ReLU -> 1x1 excite -> sigmoid, rescales x."""
    c = x.shape[-1]
    w = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gap")(x)
    w = conv(w, max(2, c // reduction), 1, f"{name}_squeeze", activation="relu")
    w = conv(w, c, 1, f"{name}_excite", activation="sigmoid")
    return layers.Multiply(name=f"{name}_scale")([x, w])


def spatial_attention(x, kernel, name):
    """Channel-wise mean and max -> conv -> sigmoid, rescales x."""
    mean = layers.Lambda(lambda t: tf.reduce_mean(t, axis=-1, keepdims=True), name=f"{name}_mean")(x)
    peak = layers.Lambda(lambda t: tf.reduce_max(t, axis=-1, keepdims=True), name=f"{name}_max")(x)
    w = layers.Concatenate(name=f"{name}_pool")([mean, peak])
    w = conv(w, 1, kernel, f"{name}_conv", activation="sigmoid")
    return layers.Multiply(name=f"{name}_scale")([x, w])


def dual_attention_unit(x, cfg: MirnetConfig, name):
    """DAU: conv-PReLU-conv, channel and spatial attention in parallel, concat, 1x1, + x."""
    c = x.shape[-1]
    f = conv(x, c, 3, f"{name}_conv_a")
    f = prelu(f, f"{name}_prelu")
    f = conv(f, c, 3, f"{name}_conv_b")
    ca = channel_attention(f, cfg.attention_reduction, f"{name}_ca")
    sa = spatial_attention(f, cfg.spatial_kernel, f"{name}_sa")
    f = layers.Concatenate(name=f"{name}_cat")([ca, sa])
    f = conv(f, c, 1, f"{name}_fuse")
    return layers.Add(name=f"{name}_res")([x, f])


def selective_kernel_fusion(streams, cfg: MirnetConfig, name):
    """SKFF: sum the streams, GAP, 1x1 down, one merged 1x1 up for all streams, softmax across
    streams on the last axis, weighted sum."""
    c = streams[0].shape[-1]
    n = len(streams)
    total = layers.Add(name=f"{name}_sum")(streams)
    z = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gap")(total)
    z = conv(z, max(4, c // cfg.skff_reduction), 1, f"{name}_down", activation="relu")
    z = conv(z, c * n, 1, f"{name}_up")  # output channel index = channel * n + stream
    z = layers.Reshape((1, c, n), name=f"{name}_to_streams")(z)
    z = layers.Softmax(axis=-1, name=f"{name}_softmax")(z)
    weights = layers.Lambda(lambda t: tf.split(t, n, axis=-1), name=f"{name}_split")(z)
    fused = []
    for k, (s, w) in enumerate(zip(streams, weights)):
        w = layers.Reshape((1, 1, c), name=f"{name}_weight{k}")(w)
        fused.append(layers.Multiply(name=f"{name}_select{k}")([s, w]))
    return layers.Add(name=f"{name}_fused")(fused)


def downsample(x, out_channels, name):
    """Residual resizing module, 2x down: [1x1-PReLU-3x3-PReLU-avgpool-1x1] + [avgpool-1x1]."""
    c = x.shape[-1]
    m = prelu(conv(x, c, 1, f"{name}_conv_a"), f"{name}_prelu_a")
    m = prelu(conv(m, c, 3, f"{name}_conv_b"), f"{name}_prelu_b")
    m = layers.AveragePooling2D(2, name=f"{name}_pool_main")(m)
    m = conv(m, out_channels, 1, f"{name}_proj_main")
    s = layers.AveragePooling2D(2, name=f"{name}_pool_skip")(x)
    s = conv(s, out_channels, 1, f"{name}_proj_skip")
    return layers.Add(name=f"{name}_sum")([m, s])


def upsample(x, out_channels, name):
    """Residual resizing module, 2x up: [1x1-PReLU-3x3-PReLU-up-1x1] + [up-1x1], with both 1x1
    projections moved before one shared bilinear resize (exact: see the module docstring)."""
    c = x.shape[-1]
    m = prelu(conv(x, c, 1, f"{name}_conv_a"), f"{name}_prelu_a")
    m = prelu(conv(m, c, 3, f"{name}_conv_b"), f"{name}_prelu_b")
    m = conv(m, out_channels, 1, f"{name}_proj_main")
    s = conv(x, out_channels, 1, f"{name}_proj_skip")
    total = layers.Add(name=f"{name}_sum")([m, s])
    return layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_resize")(total)


def resize(x, from_level, to_level, channels, names: _Namer):
    """Moves a feature map between stream levels with a chain of 2x resizing modules."""
    while from_level < to_level:
        from_level += 1
        x = downsample(x, channels[from_level], names("down"))
    while from_level > to_level:
        from_level -= 1
        x = upsample(x, channels[from_level], names("up"))
    return x


def multi_scale_residual_block(x, cfg: MirnetConfig, names: _Namer):
    """MRB: three parallel streams (full, 1/2, 1/4 resolution), a DAU on each, information
    exchange by SKFF at every scale, a second DAU, fusion back at full resolution, + x."""
    ch = cfg.stream_channels()
    levels = [x]
    for k in range(1, NUM_STREAMS):
        levels.append(resize(levels[-1], k - 1, k, ch, names))
    levels = [dual_attention_unit(f, cfg, names("dau")) for f in levels]
    exchanged = []
    for k in range(NUM_STREAMS):
        inputs = [resize(f, j, k, ch, names) for j, f in enumerate(levels)]
        exchanged.append(selective_kernel_fusion(inputs, cfg, names("skff")))
    refined = [dual_attention_unit(f, cfg, names("dau")) for f in exchanged]
    back = [resize(f, k, 0, ch, names) for k, f in enumerate(refined)]
    f = selective_kernel_fusion(back, cfg, names("skff"))
    f = conv(f, ch[0], 3, names("mrb_out"))
    return layers.Add(name=names("mrb_res"))([x, f])


def recursive_residual_group(x, cfg: MirnetConfig, names: _Namer):
    """RRG: conv -> MRBs -> conv, + the group's input."""
    c = x.shape[-1]
    f = conv(x, c, 3, names("rrg_in"))
    for _ in range(cfg.num_mrb):
        f = multi_scale_residual_block(f, cfg, names)
    f = conv(f, c, 3, names("rrg_out"))
    return layers.Add(name=names("rrg_res"))([x, f])


def build_mirnet(cfg: MirnetConfig = MirnetConfig(), input_shape=(None, None, 3), batch_size=None):
    """The whole network: conv -> RRGs -> conv -> global residual I + R, clipped to [0, 1].

    `input_shape` None sizes give a fully convolutional model (height and width must be
    multiples of SIZE_MULTIPLE); the converter needs a fixed shape and batch_size=1."""
    names = _Namer()
    image = keras.Input(shape=input_shape, batch_size=batch_size, name="low_light")
    f = conv(image, cfg.channels, 3, "feature_in")
    for _ in range(cfg.num_rrg):
        f = recursive_residual_group(f, cfg, names)
    residual = conv(f, 3, 3, "residual_out")
    out = layers.Add(name="global_residual")([image, residual])
    out = layers.Lambda(lambda t: tf.clip_by_value(t, 0.0, 1.0), name="enhanced")(out)
    return keras.Model(image, out, name="tiny_mirnet")


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
