"""Quantization-aware fine-tuning (QAT) of the pruned network before its int8 conversion.

The int8 model computes every tensor between two ops on 256 levels and every conv kernel on
255 levels per output channel; trained in float, the network never saw that rounding. Here the
pruned network is fine-tuned with the rounding in its forward pass, where TFLite's int8 kernels
put it, so that it learns weights the rounding hurts less:

* conv kernels: per output channel, symmetric, 127 levels each side of 0 (TFLite's per-channel
  int8 weights), on the pruned kernel: the pruning mask is kept fixed, zeros stay zeros;
* activations: 8-bit fake quantization of every tensor an int8 op writes with a scale of its
  own (conv, PReLU, ADD, MUL, CONCATENATION, MEAN, SOFTMAX, LOGISTIC, the reduce Lambdas), with
  the range seen so far in training (the running min and max, as the converter's calibration
  takes min and max over its representative set); pooling, resizing and reshaping keep their
  input's scale in TFLite and are left alone.

Gradients pass straight through the rounding (the straight-through estimator). The converter
still calibrates the fine-tuned float weights itself (quantize/convert.py): QAT changes the
weights, not the conversion. TFMOT's own quantize_model is not used: it cannot wrap the
network's Lambda, PReLU-with-shared-axes and bilinear-resize layers without a QuantizeConfig
for each."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

from tinymirnet.model.network import (Builder, MirnetConfig, build_frame_context_trainer, build_mirnet,
                                      weight_bank)

from .prune import PRUNABLE, RampThenCosine, centre_loss, fit


class RangeFakeQuant(layers.Layer):
    """8-bit fake quantization of an activation with the running min and max of every batch it
    has seen in training (widened to contain 0, as TFLite's asymmetric int8 ranges do)."""

    def build(self, input_shape):
        self.lo = self.add_weight(name="lo", shape=(), initializer="zeros", trainable=False)
        self.hi = self.add_weight(name="hi", shape=(), initializer="zeros", trainable=False)

    def call(self, x, training=None):
        if training:
            self.lo.assign(tf.minimum(self.lo, tf.reduce_min(x)))
            self.hi.assign(tf.maximum(self.hi, tf.reduce_max(x)))
        hi = tf.maximum(self.hi, self.lo + 1e-6)  # a range never seen yet: a tiny one, not none
        return tf.quantization.fake_quant_with_min_max_vars(x, self.lo, hi, num_bits=8)


def per_channel_int8(kernel):
    """`kernel` rounded as TFLite stores conv weights: per output channel (the last axis),
    symmetric, scale max|w| / 127; the gradient passes straight through."""
    scale = tf.maximum(tf.reduce_max(tf.abs(kernel), axis=[0, 1, 2]), 1e-12) / 127.0
    return kernel + tf.stop_gradient(tf.round(kernel / scale) * scale - kernel)


class MaskedFakeQuantConv2D(layers.Conv2D):
    """Conv2D whose kernel is multiplied by a fixed 0/1 mask (the pruned weights stay 0) and
    rounded to per-channel int8 in the forward pass."""

    def build(self, input_shape):
        super().build(input_shape)
        self.mask = self.add_weight(name="mask", shape=self.kernel.shape, initializer="ones", trainable=False)

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, per_channel_int8(kernel * self.mask))


# Weightless layers whose int8 op writes its output with a scale of its own.
REQUANTIZING = ("Add", "Multiply", "Concatenate", "Softmax", "GlobalAveragePooling2D", "Lambda")


class _FakeQuantLayers:
    """Stands in for the `layers` module in a Builder: the layers of REQUANTIZING come out
    followed by a RangeFakeQuant; every other layer is Keras's own."""

    def __getattr__(self, name):
        cls = getattr(layers, name)
        if name not in REQUANTIZING:
            return cls

        def make(*args, **kwargs):
            layer = cls(*args, **kwargs)

            def apply(x):
                y = layer(x)
                return y if isinstance(y, (list, tuple)) else RangeFakeQuant()(y)
            return apply
        return make


class FakeQuantBuilder(Builder):
    """The network's graph with int8 rounding where the int8 model has it (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.layers = _FakeQuantLayers()

    def conv(self, x, filters, kernel, name, activation=None, strides=1):
        # TFLite fuses a ReLU into the conv; a sigmoid is a LOGISTIC op of its own after the
        # conv's int8 output.
        fused = None if activation == "sigmoid" else activation
        y = RangeFakeQuant()(self.shared(MaskedFakeQuantConv2D, name, filters=filters, kernel_size=kernel,
                                         padding="same", activation=fused, strides=strides)(x))
        if activation == "sigmoid":
            y = RangeFakeQuant()(layers.Activation("sigmoid")(y))
        return y

    def prelu(self, x, name):
        return RangeFakeQuant()(super().prelu(x, name))

    def spatial_attention(self, x, name):
        """As Builder's, with the rounding the int8 model has: REDUCE_MAX and CONCATENATION tie
        the features, their channel max and mean and the concatenation to one range, the union
        of theirs (convert.widen_tied_ranges): one RangeFakeQuant serves all four."""
        tied = RangeFakeQuant()
        xt = tied(x)  # the features' values belong to the shared range
        mean = tied(layers.Lambda(lambda t: tf.reduce_mean(t, axis=-1, keepdims=True), name=f"{name}_mean")(xt))
        peak = tied(layers.Lambda(lambda t: tf.reduce_max(t, axis=-1, keepdims=True), name=f"{name}_max")(xt))
        w = tied(layers.Concatenate(name=f"{name}_pool")([mean, peak]))
        w = self.conv(w, 1, self.cfg.spatial_kernel, f"{name}_conv", activation="sigmoid")
        return self.layers.Multiply(name=f"{name}_scale")([x, w])


def _copy_weights(src_bank: dict, dst_bank: dict, into_fake_quant: bool) -> None:
    """Conv kernels, biases and PReLU slopes by layer name between a plain network and its
    fake-quantized twin; the twin's masks are set from the plain kernels' zeros."""
    for name, src in src_bank.items():
        dst = dst_bank[name]
        if isinstance(dst if into_fake_quant else src, MaskedFakeQuantConv2D):
            if into_fake_quant:
                kernel, bias = src.get_weights()
                dst.kernel.assign(kernel)
                dst.bias.assign(bias)
                dst.mask.assign((kernel != 0).astype(np.float32))
            else:
                dst.set_weights([(src.kernel * src.mask).numpy(), src.bias.numpy()])
        else:
            dst.set_weights(src.get_weights())


def quantization_aware_finetune(model, cfg: MirnetConfig, dataset, steps: int, crop: int, lr: float = 1e-4,
                                margin: int = 0, loss: str = "mse", log=print, scenes=None,
                                scene_weight: float = 0.0):
    """Fine-tunes the (pruned, stripped) network `model` for `steps` batches of `dataset` with
    int8 rounding in its forward pass (module docstring); returns a plain network with the
    fine-tuned weights and the same zeros. `model` is left unchanged. `dataset` feeds the
    network as it is trained: (thumbnail, crop) -> crop for a frame-context network; `scenes`
    and `scene_weight` add the naturalness loss on real photos (prune.fit)."""
    twin = build_mirnet(cfg, (crop, crop, 3), builder=FakeQuantBuilder)
    trained = build_frame_context_trainer(cfg, twin, crop, builder=FakeQuantBuilder) if cfg.frame_context else twin
    plain_bank = weight_bank(model)
    twin_bank = {n: l for n, l in weight_bank(twin).items() if not isinstance(l, RangeFakeQuant)}
    if set(plain_bank) != set(twin_bank):
        raise ValueError("the fake-quantized network's layers differ from the network's")
    _copy_weights(plain_bank, twin_bank, into_fake_quant=True)
    log(f"quantization-aware fine-tune: {steps} steps at {lr:g} (cosine), {loss} loss")
    fit(trained, dataset, steps, RampThenCosine(lr, 0, steps, min_lr=lr / 100), centre_loss(margin, loss),
        scenes, scene_weight, log)
    out = build_mirnet(cfg)
    _copy_weights(twin_bank, weight_bank(out), into_fake_quant=False)
    for layer in out.layers:  # the masks held
        if isinstance(layer, PRUNABLE):
            assert np.all(layer.kernel.numpy()[plain_bank[layer.name].kernel.numpy() == 0] == 0)
    return out
