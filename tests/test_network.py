import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tinymirnet.model.network import (MirnetConfig, build_mirnet, dual_attention_unit, downsample,
                                      multi_scale_residual_block, selective_kernel_fusion, upsample, _Namer)


def run_block(block, shapes):
    inputs = [keras.Input(shape=s, batch_size=1) for s in shapes]
    out = block(inputs if len(inputs) > 1 else inputs[0])
    model = keras.Model(inputs, out)
    return model([tf.random.uniform((1, *s)) for s in shapes]).shape


def test_block_output_shapes():
    cfg = MirnetConfig(channels=6)
    assert run_block(lambda x: dual_attention_unit(x, cfg, "dau"), [(16, 16, 6)]) == (1, 16, 16, 6)
    assert run_block(lambda xs: selective_kernel_fusion(xs, cfg, "skff"), [(16, 16, 6)] * 3) == (1, 16, 16, 6)
    assert run_block(lambda x: downsample(x, 12, "down"), [(16, 16, 6)]) == (1, 8, 8, 12)
    assert run_block(lambda x: upsample(x, 3, "up"), [(8, 8, 6)]) == (1, 16, 16, 3)
    grow = MirnetConfig(channels=4, growth=2.0)
    assert grow.stream_channels() == [4, 8, 16]
    assert run_block(lambda x: multi_scale_residual_block(x, grow, _Namer()), [(16, 16, 4)]) == (1, 16, 16, 4)


@pytest.mark.parametrize("cfg", [MirnetConfig(), MirnetConfig(channels=4, growth=1.5, num_rrg=2, num_mrb=2)])
def test_full_model_keeps_image_shape_and_range(cfg):
    model = build_mirnet(cfg)
    x = tf.random.uniform((2, 24, 36, 3))
    y = model(x).numpy()
    assert y.shape == (2, 24, 36, 3) and y.min() >= 0.0 and y.max() <= 1.0


def test_moving_the_1x1_conv_before_bilinear_resize_is_exact():
    """The rewrite the up-sampling module relies on: resize(conv1x1(x)) == conv1x1(resize(x))."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((1, 7, 9, 5)), tf.float32)
    conv = keras.layers.Conv2D(4, 1)
    up = keras.layers.UpSampling2D(2, interpolation="bilinear")
    a = up(conv(x)).numpy()
    b = conv(up(x)).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_no_tensor_has_more_than_four_dimensions():
    model = build_mirnet(MirnetConfig(), input_shape=(28, 28, 3), batch_size=1)
    for layer in model.layers:
        outs = layer.output if isinstance(layer.output, list) else [layer.output]
        assert all(len(o.shape) <= 4 for o in outs), layer.name


def test_frame_context_models_equal_the_textbook_network_on_its_own_context():
    """The context model (run on the input itself) feeding the tile model reproduces the
    textbook network exactly: the split into two models changes nothing but where the
    attention is pooled. Both share the textbook model's layers (one weights file)."""
    from tinymirnet.model.network import build_context_model, build_tile_model, context_size
    keras.utils.set_random_seed(1)
    cfg = MirnetConfig(channels=4, growth=1.5, thumbnail_width=16, thumbnail_height=12)
    textbook = build_mirnet(cfg)
    context_model = build_context_model(cfg, textbook)
    tile_model = build_tile_model(cfg, textbook)
    x = tf.random.uniform((2, 12, 16, 3), seed=3)
    context = context_model(x)
    assert context.shape == (2, 1, 1, context_size(cfg))
    np.testing.assert_allclose(tile_model([x, context]).numpy(), textbook(x).numpy(), atol=1e-6)
    # No pooling of its own: another context changes the tile model's output.
    assert np.abs(tile_model([x, context * 0.5]).numpy() - textbook(x).numpy()).max() > 1e-4
    shared = {id(v) for v in textbook.weights}
    assert {id(v) for v in tile_model.weights} <= shared and {id(v) for v in context_model.weights} <= shared


def test_context_model_concatenates_at_most_ten_tensors_per_op():
    """TFLM's CONCATENATION takes at most 10 inputs; the context vector joins 18."""
    from tinymirnet.model.network import build_context_model
    model = build_context_model(MirnetConfig(channels=4, thumbnail_width=16, thumbnail_height=12))
    concats = [l for l in model.layers if isinstance(l, keras.layers.Concatenate) and l.name.startswith("context")]
    assert concats and all(len(l.input) <= 10 for l in concats)
