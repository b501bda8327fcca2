"""The tiny MIRNet (Zamir et al., "Learning Enriched Features for Real Image Restoration and
Enhancement", ECCV 2020), one small function per block, in tf_keras, in three designs
(`MirnetConfig.design`):

* "mrb_half_resolution", the shipped one (`Builder.half_resolution_mirnet`): one RRG holding one
  MRB whose three streams run at 1/2, 1/4 and 1/8 of the resolution, with MIRNet-v2's light
  blocks (`light_*`, `progressive_multi_scale_residual_block`);
* "mrb", the textbook network at full resolution (`Builder.network`'s RRGs);
* "half_resolution", the alternative without streams built from its channel attention
  (`Builder.half_resolution_network`).

Every op lowers to a TFLite builtin that TensorFlow Lite Micro runs, and no tensor has more
than four dimensions. Three exact rewrites of the textbook blocks keep the TFLM arena small
without changing what the network computes:

* up-sampling: a 1x1 conv commutes with bilinear resizing (both are linear and the bilinear
  weights sum to one), so both branches of the residual up-sampling module apply their 1x1
  conv at the low resolution, are summed there, and one bilinear resize follows;
* SKFF: the per-stream 1x1 "up" convs are one conv with streams*C outputs, reshaped to
  (1, C, streams) so that the softmax across streams runs on the last axis, then split;
* channel mean/max for spatial attention are REDUCE ops on the last axis (4-D tensors only).

(The textbook blocks; the board's light blocks need none of these rewrites.)

Frame context (MirnetConfig.thumbnail_width > 0). Channel attention and SKFF pool over the
whole input, so a 28 px tile sees only itself where MIRNet saw the frame. A frame-context
network runs twice on the board: once on a thumbnail of the whole frame (the context model,
whose output is every attention weight vector of the network: the sigmoid of each channel
attention, the softmax of each SKFF, in build order), then on every tile with those vectors as
a second input (the tile model, which has no pooling, squeeze or excite of its own). Both are
views of one set of layers (`build_mirnet`'s), so one weights file serves all three.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

from .network_config import NUM_STREAMS, MirnetConfig


class _Namer:
    """Gives every layer a readable, unique name (block_index/part)."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def __call__(self, block: str) -> str:
        n = self.counts.get(block, 0)
        self.counts[block] = n + 1
        return f"{block}{n}"


POOL, COLLECT, GIVEN = "pool", "collect", "given"


class Builder:
    """Builds the network's graph, one small method per block.

    Layers with weights come from `bank` (name -> layer) when it has them, so graphs built
    with the same bank share every weight; weightless layers are new in every graph. The
    attention mode: POOL, the textbook network; COLLECT, the same, recording every attention
    weight vector (the context model's output); GIVEN, attention weights read in order from
    `context` (the tile model)."""

    def __init__(self, cfg: MirnetConfig, mode: str = POOL, bank: dict | None = None,
                 context: list | None = None):
        self.cfg, self.mode = cfg, mode
        self.bank = {} if bank is None else bank
        self.context = list(context or [])
        self.collected: list = []
        self.names = _Namer()
        # Where the weightless layers come from: Keras itself here; a subclass may hand out
        # layers that do more (quantize/qat.py's fake quantization of every output).
        self.layers = layers

    def shared(self, cls, name, **kwargs):
        if name not in self.bank:
            self.bank[name] = cls(name=name, **kwargs)
        return self.bank[name]

    def conv(self, x, filters, kernel, name, activation=None, strides=1):
        return self.shared(layers.Conv2D, name, filters=filters, kernel_size=kernel, padding="same",
                           activation=activation, strides=strides)(x)

    def prelu(self, x, name):
        return self.shared(layers.PReLU, name, shared_axes=[1, 2])(x)

    def attention_weights(self, count: int, compute):
        """`count` attention weight vectors: computed (POOL, COLLECT) or read (GIVEN)."""
        if self.mode == GIVEN:
            if len(self.context) < count:
                raise ValueError("the context has fewer attention vectors than the network uses")
            taken, self.context = self.context[:count], self.context[count:]
            return taken
        weights = compute()
        if self.mode == COLLECT:
            self.collected.extend(weights)
        return weights

    def channel_attention(self, x, name, squeeze: int | None = None):
        """Global average pool -> 1x1 squeeze -> ReLU -> 1x1 excite -> sigmoid, rescales x.
        `squeeze`: the squeezed width (default max(2, C // attention_reduction))."""
        c = x.shape[-1]

        def compute():
            w = self.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gap")(x)
            w = self.conv(w, squeeze or max(2, c // self.cfg.attention_reduction), 1, f"{name}_squeeze",
                          activation="relu")
            return [self.conv(w, c, 1, f"{name}_excite", activation="sigmoid")]

        (w,) = self.attention_weights(1, compute)
        return self.layers.Multiply(name=f"{name}_scale")([x, w])

    def spatial_attention(self, x, name):
        """Channel-wise mean and max -> conv -> sigmoid, rescales x."""
        mean = self.layers.Lambda(lambda t: tf.reduce_mean(t, axis=-1, keepdims=True), name=f"{name}_mean")(x)
        peak = self.layers.Lambda(lambda t: tf.reduce_max(t, axis=-1, keepdims=True), name=f"{name}_max")(x)
        w = self.layers.Concatenate(name=f"{name}_pool")([mean, peak])
        w = self.conv(w, 1, self.cfg.spatial_kernel, f"{name}_conv", activation="sigmoid")
        return self.layers.Multiply(name=f"{name}_scale")([x, w])

    def dual_attention_unit(self, x, name):
        """DAU: conv-PReLU-conv, channel and spatial attention in parallel, concat, 1x1, + x."""
        c = x.shape[-1]
        f = self.conv(x, c, 3, f"{name}_conv_a")
        f = self.prelu(f, f"{name}_prelu")
        f = self.conv(f, c, 3, f"{name}_conv_b")
        return self.attention_fusion(x, f, name, self.spatial_attention)

    def attention_fusion(self, x, f, name, spatial_attention):
        """A DAU's second half: channel and spatial attention of f in parallel, concat, 1x1, + x."""
        ca = self.channel_attention(f, f"{name}_ca")
        sa = spatial_attention(f, f"{name}_sa")
        f = self.layers.Concatenate(name=f"{name}_cat")([ca, sa])
        f = self.conv(f, x.shape[-1], 1, f"{name}_fuse")
        return self.layers.Add(name=f"{name}_res")([x, f])

    def selective_kernel_fusion(self, streams, name):
        """SKFF: sum the streams, GAP, 1x1 down, one merged 1x1 up for all streams, softmax
        across streams on the last axis, weighted sum."""
        c = streams[0].shape[-1]
        n = len(streams)

        def compute():
            total = self.layers.Add(name=f"{name}_sum")(streams)
            z = self.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gap")(total)
            z = self.conv(z, max(4, c // self.cfg.skff_reduction), 1, f"{name}_down", activation="relu")
            z = self.conv(z, c * n, 1, f"{name}_up")  # output channel index = channel * n + stream
            z = self.layers.Reshape((1, c, n), name=f"{name}_to_streams")(z)
            z = self.layers.Softmax(axis=-1, name=f"{name}_softmax")(z)
            parts = self.layers.Lambda(lambda t: tf.split(t, n, axis=-1), name=f"{name}_split")(z)
            return [self.layers.Reshape((1, 1, c), name=f"{name}_weight{k}")(w) for k, w in enumerate(parts)]

        weights = self.attention_weights(n, compute)
        fused = [self.layers.Multiply(name=f"{name}_select{k}")([s, w])
                 for k, (s, w) in enumerate(zip(streams, weights))]
        return self.layers.Add(name=f"{name}_fused")(fused)

    def downsample(self, x, out_channels, name):
        """Residual resizing module, 2x down: [1x1-PReLU-3x3-PReLU-avgpool-1x1] + [avgpool-1x1]."""
        c = x.shape[-1]
        m = self.prelu(self.conv(x, c, 1, f"{name}_conv_a"), f"{name}_prelu_a")
        m = self.prelu(self.conv(m, c, 3, f"{name}_conv_b"), f"{name}_prelu_b")
        m = self.layers.AveragePooling2D(2, name=f"{name}_pool_main")(m)
        m = self.conv(m, out_channels, 1, f"{name}_proj_main")
        s = self.layers.AveragePooling2D(2, name=f"{name}_pool_skip")(x)
        s = self.conv(s, out_channels, 1, f"{name}_proj_skip")
        return self.layers.Add(name=f"{name}_sum")([m, s])

    def upsample(self, x, out_channels, name):
        """Residual resizing module, 2x up: [1x1-PReLU-3x3-PReLU-up-1x1] + [up-1x1], with both
        1x1 projections moved before one shared bilinear resize (exact: see the module docstring)."""
        c = x.shape[-1]
        m = self.prelu(self.conv(x, c, 1, f"{name}_conv_a"), f"{name}_prelu_a")
        m = self.prelu(self.conv(m, c, 3, f"{name}_conv_b"), f"{name}_prelu_b")
        m = self.conv(m, out_channels, 1, f"{name}_proj_main")
        s = self.conv(x, out_channels, 1, f"{name}_proj_skip")
        total = self.layers.Add(name=f"{name}_sum")([m, s])
        return self.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_resize")(total)

    def resize(self, x, from_level, to_level):
        """Moves a feature map between stream levels with a chain of 2x resizing modules."""
        channels = self.cfg.stream_channels()
        while from_level < to_level:
            from_level += 1
            x = self.downsample(x, channels[from_level], self.names("down"))
        while from_level > to_level:
            from_level -= 1
            x = self.upsample(x, channels[from_level], self.names("up"))
        return x

    def multi_scale_residual_block(self, x):
        """MRB: three parallel streams (full, 1/2, 1/4 resolution), a DAU on each, information
        exchange by SKFF at every scale, a second DAU, fusion back at full resolution, + x."""
        levels = [x]
        for k in range(1, NUM_STREAMS):
            levels.append(self.resize(levels[-1], k - 1, k))
        levels = [self.dual_attention_unit(f, self.names("dau")) for f in levels]
        exchanged = []
        for k in range(NUM_STREAMS):
            inputs = [self.resize(f, j, k) for j, f in enumerate(levels)]
            exchanged.append(self.selective_kernel_fusion(inputs, self.names("skff")))
        refined = [self.dual_attention_unit(f, self.names("dau")) for f in exchanged]
        back = [self.resize(f, k, 0) for k, f in enumerate(refined)]
        f = self.selective_kernel_fusion(back, self.names("skff"))
        f = self.conv(f, self.cfg.stream_channels()[0], 3, self.names("mrb_out"))
        return self.layers.Add(name=self.names("mrb_res"))([x, f])

    def recursive_residual_group(self, x):
        """RRG: conv -> MRBs -> conv, + the group's input."""
        c = x.shape[-1]
        f = self.conv(x, c, 3, self.names("rrg_in"))
        for _ in range(self.cfg.num_mrb):
            f = self.multi_scale_residual_block(f)
        f = self.conv(f, c, 3, self.names("rrg_out"))
        return self.layers.Add(name=self.names("rrg_res"))([x, f])

    def hard_sigmoid(self, x, name):
        """A hard sigmoid on a linear projection: clip(z, 0, 1), where the projection has learnt
        (z + 3) / 6 (the textbook form). An 8-bit fake quantization on [0, 1] as `pixels`: the
        int8 converter folds the clip into the tensor's range, so it costs the board nothing."""
        return self.layers.Lambda(
            lambda t: tf.quantization.fake_quant_with_min_max_args(t, min=0.0, max=1.0, num_bits=8),
            name=name)(x)

    def light_spatial_attention(self, x, name):
        """Spatial attention with a 1x1 projection to one map and a hard sigmoid (allowed for the
        board: no channel mean/max, no 5x5 conv, no LOGISTIC), rescaling every pixel of x."""
        w = self.conv(x, 1, 1, f"{name}_conv")
        w = self.hard_sigmoid(w, f"{name}_gate")
        return self.layers.Multiply(name=f"{name}_scale")([x, w])

    def light_dual_attention_unit(self, x, name, inner: int):
        """DAU, board form: 3x3 conv (ReLU fused) - 3x3 conv, channel attention and per-pixel
        spatial attention in parallel, concat, 1x1, + x. `inner`: the first conv's filters
        (structured pruning thins it)."""
        c = x.shape[-1]
        f = self.conv(x, inner, 3, f"{name}_conv_a", activation="relu")
        f = self.conv(f, c, 3, f"{name}_conv_b")
        return self.attention_fusion(x, f, name, self.light_spatial_attention)

    def light_downsample(self, x, out_channels, name):
        """Resizing module, 2x down, MIRNet-v2's form: average pool, 1x1 conv."""
        x = self.layers.AveragePooling2D(2, name=f"{name}_pool")(x)
        return self.conv(x, out_channels, 1, f"{name}_proj")

    def light_upsample(self, x, out_channels, name):
        """Resizing module, 2x up, board form: 1x1 conv to 4 x out_channels, depth-to-space
        (a learnt sub-pixel up-sampling: no RESIZE_BILINEAR)."""
        x = self.conv(x, 4 * out_channels, 1, f"{name}_proj")
        return self.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2), name=f"{name}_shuffle")(x)

    def progressive_multi_scale_residual_block(self, x):
        """MRB, MIRNet-v2's form: three parallel streams (the input's resolution, 1/2 and 1/4 of
        it) made by 2x down-sampling; each round runs a DAU on every stream, then SKFF fuses the
        bottom stream into the middle one (the exchange) and the middle into the top one (the
        final fusion); a 1x1 conv, + x."""
        ch = self.cfg.stream_channels()
        inner = iter(self.cfg.dau_inner_widths())
        top = x
        mid = self.light_downsample(top, ch[1], "mrb_down1")
        bot = self.light_downsample(mid, ch[2], "mrb_down2")
        for r in range(self.cfg.mrb_rounds):
            top = self.light_dual_attention_unit(top, f"round{r}_dau_top", next(inner))
            mid = self.light_dual_attention_unit(mid, f"round{r}_dau_mid", next(inner))
            bot = self.light_dual_attention_unit(bot, f"round{r}_dau_bot", next(inner))
            mid = self.selective_kernel_fusion([mid, self.light_upsample(bot, ch[1], f"round{r}_up_bot")],
                                               f"round{r}_skff_mid")
            top = self.selective_kernel_fusion([top, self.light_upsample(mid, ch[0], f"round{r}_up_mid")],
                                               f"round{r}_skff_top")
        out = self.conv(top, ch[0], 1, "mrb_out")
        return self.layers.Add(name="mrb_res")([x, out])

    def half_resolution_mirnet(self, image):
        """The tiny MIRNet as the board runs it: a stride-2 3x3 conv in (ReLU fused) puts the top
        stream at half resolution; one RRG (the MRB, a 3x3 conv, + the group's input); the
        sub-pixel head and global residual of `sub_pixel_output`. With a frame context every
        channel attention and SKFF weight comes from the thumbnail, once per frame."""
        f = self.conv(image, self.cfg.stream_channels()[0], 3, "feature_in", activation="relu", strides=2)
        g = self.progressive_multi_scale_residual_block(f)
        g = self.conv(g, self.cfg.stream_channels()[0], 3, "rrg_out")
        f = self.layers.Add(name="rrg_res")([f, g])
        return self.sub_pixel_output(image, f)

    def sub_pixel_output(self, image, f):
        """A 3x3 convolution to 16 channels at half resolution and a depth-to-space back to full
        resolution (ESPCN), where each pixel gets a lift L and a residual R: output
        I + I*L + R = (1 + L)*I + R, clipped to [0, 1]. The gain (1 + L) brightens the pixel's
        own detail and keeps its colour (one lift for R, G and B); R denoises."""
        f = self.conv(f, 16, 3, "head")  # 2x2 sub-pixels x (lift, residual R, G, B)
        f = self.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2), name="head_shuffle")(f)
        lift, residual = self.layers.Lambda(lambda t: tf.split(t, [1, 3], axis=-1), name="head_split")(f)
        lifted = self.layers.Multiply(name="lift")([image, lift])
        out = self.layers.Add(name="gain_applied")([image, lifted])
        out = self.layers.Add(name="global_residual")([out, residual])
        return self.pixels(out)

    def half_resolution_network(self, image):
        """The alternative without streams, all at half resolution as FFDNet (Zhang et al., TIP
        2018): a stride-2 3x3 convolution from the image to C channels, `depth` 3x3 convolutions
        each scaled by MIRNet's channel attention, then `sub_pixel_output`. Every activation is a
        ReLU fused into its convolution; with a frame context the attention runs once per frame
        on the thumbnail."""
        down, *blocks = self.cfg.half_stream_widths()
        f = self.conv(image, down, 3, "down", activation="relu", strides=2)
        for k, width in enumerate(blocks):
            f = self.conv(f, width, 3, f"block{k}_conv", activation="relu")
            f = self.channel_attention(f, f"block{k}_ca", self.cfg.squeeze or None)
        return self.sub_pixel_output(image, f)

    def pixels(self, x):
        """x clipped to [0, 1] as an 8-bit fake quantization (steps of 1/255, which the output
        is anyway): the int8 converter folds it into the output tensor's range, so the clip
        costs the board nothing (a clip_by_value became two ops per tile)."""
        return self.layers.Lambda(
            lambda t: tf.quantization.fake_quant_with_min_max_args(t, min=0.0, max=1.0, num_bits=8),
            name="enhanced")(x)

    def network(self, image):
        """conv -> RRGs -> conv -> global residual I + R, clipped to [0, 1]."""
        if self.cfg.design == "half_resolution":
            return self.half_resolution_network(image)
        if self.cfg.design == "mrb_half_resolution":
            return self.half_resolution_mirnet(image)
        f = self.conv(image, self.cfg.channels, 3, "feature_in")
        for _ in range(self.cfg.num_rrg):
            f = self.recursive_residual_group(f)
        residual = self.conv(f, 3, 3, "residual_out")
        out = self.layers.Add(name="global_residual")([image, residual])
        return self.layers.Lambda(lambda t: tf.clip_by_value(t, 0.0, 1.0), name="enhanced")(out)


# The blocks on their own (textbook attention, fresh layers), as the keras.io example has them.
def dual_attention_unit(x, cfg: MirnetConfig, name):
    return Builder(cfg).dual_attention_unit(x, name)


def selective_kernel_fusion(streams, cfg: MirnetConfig, name):
    return Builder(cfg).selective_kernel_fusion(streams, name)


def downsample(x, out_channels, name):
    return Builder(MirnetConfig()).downsample(x, out_channels, name)


def upsample(x, out_channels, name):
    return Builder(MirnetConfig()).upsample(x, out_channels, name)


def multi_scale_residual_block(x, cfg: MirnetConfig, names: _Namer | None = None):
    b = Builder(cfg)
    b.names = names or b.names
    return b.multi_scale_residual_block(x)


def build_mirnet(cfg: MirnetConfig = MirnetConfig(), input_shape=(None, None, 3), batch_size=None,
                 builder=Builder):
    """The whole network with textbook attention (pooled over its own input). Its layers hold
    every weight of a frame-context network too: the context and tile models are built on them.

    `input_shape` None sizes give a fully convolutional model (height and width must be
    multiples of SIZE_MULTIPLE); the converter needs a fixed shape and batch_size=1."""
    image = keras.Input(shape=input_shape, batch_size=batch_size, name="low_light")
    return keras.Model(image, builder(cfg).network(image), name="tiny_mirnet")


PRUNING_PREFIX = "prune_low_magnitude_"  # TFMOT's name for the wrapper of a pruned layer


def weight_bank(model) -> dict:
    """name -> layer for every layer with weights of a model `build_mirnet` built (or its
    clone with pruning wrappers, filed under the wrapped layer's name)."""
    return {layer.name.removeprefix(PRUNING_PREFIX): layer for layer in model.layers if layer.weights}


def context_parts(cfg: MirnetConfig) -> list[int]:
    """Lengths of the attention weight vectors in the context, in build order: per MRB, the
    first DAU of each stream, the three exchange SKFFs (one vector per input stream), the
    second DAU of each stream, the final SKFF."""
    if cfg.design == "half_resolution":
        return cfg.half_stream_widths()[1:]
    ch = cfg.stream_channels()
    if cfg.design == "mrb_half_resolution":
        # Per round: the DAUs' channel attention (top, middle, bottom), the middle SKFF's two
        # weights, the top SKFF's two.
        return [ch[0], ch[1], ch[2], ch[1], ch[1], ch[0], ch[0]] * cfg.mrb_rounds
    exchange = [ch[k] for k in range(NUM_STREAMS) for _ in range(NUM_STREAMS)]
    return (ch + exchange + ch + [ch[0]] * NUM_STREAMS) * (cfg.num_rrg * cfg.num_mrb)


def context_size(cfg: MirnetConfig) -> int:
    """Length of the context vector: every attention weight vector of the network."""
    return sum(context_parts(cfg))


def build_context_model(cfg: MirnetConfig, textbook=None, batch_size=None, builder=Builder):
    """Thumbnail of the whole frame (thumbnail_height x thumbnail_width x 3) -> the context
    vector (1 x 1 x context_size): every attention weight vector, concatenated in build order.
    Shares its layers with `textbook` (a `build_mirnet` model) when given."""
    b = builder(cfg, COLLECT, weight_bank(textbook) if textbook is not None else None)
    thumb = keras.Input(shape=(cfg.thumbnail_height, cfg.thumbnail_width, 3), batch_size=batch_size,
                        name="thumbnail")
    b.network(thumb)
    # TFLM's CONCATENATION takes at most 10 inputs: join groups of 8, then the groups.
    groups = [b.collected[k:k + 8] for k in range(0, len(b.collected), 8)]
    groups = [g[0] if len(g) == 1 else b.layers.Concatenate(axis=-1, name=f"context_part{k}")(g)
              for k, g in enumerate(groups)]
    context = groups[0] if len(groups) == 1 else b.layers.Concatenate(axis=-1, name="context")(groups)
    return keras.Model(thumb, context, name="tiny_mirnet_context")


def build_tile_model(cfg: MirnetConfig, textbook=None, input_shape=(None, None, 3), batch_size=None,
                     builder=Builder):
    """[tile, context vector] -> enhanced tile: the network with every attention weight read
    from the context (no pooling of its own). Shares its layers with `textbook` when given."""
    sizes = context_parts(cfg)
    image = keras.Input(shape=input_shape, batch_size=batch_size, name="low_light")
    context = keras.Input(shape=(1, 1, sum(sizes)), batch_size=batch_size, name="context")
    parts = layers.Lambda(lambda t: tf.split(t, sizes, axis=-1), name="context_split")(context)
    b = builder(cfg, GIVEN, weight_bank(textbook) if textbook is not None else None, parts)
    out = b.network(image)
    if b.context:
        raise ValueError("the context has more attention vectors than the network uses")
    return keras.Model([image, context], out, name="tiny_mirnet_tile")


def build_frame_context_trainer(cfg: MirnetConfig, textbook, tile: int, builder=Builder):
    """[thumbnail, tile] -> enhanced tile, the context model feeding the tile model, both on
    `textbook`'s layers: what a frame-context network is trained as."""
    context_model = build_context_model(cfg, textbook, builder=builder)
    tile_model = build_tile_model(cfg, textbook, (tile, tile, 3), builder=builder)
    thumb = keras.Input(shape=context_model.input.shape[1:], name="thumbnail")
    image = keras.Input(shape=(tile, tile, 3), name="low_light")
    return keras.Model([thumb, image], tile_model([image, context_model(thumb)]), name="tiny_mirnet_framed")
