"""The tiny MIRNet the board runs (model/network.py, design "mrb_half_resolution"): the context
holds every attention vector in build order, the hard sigmoid of spatial attention is the int8
range of its projection (no op of its own), structured pruning thins each DAU, and the whole
pipeline (context model, tile model, full frame) runs."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tinymirnet.model.network import MirnetConfig, build_context_model, build_mirnet, build_tile_model, context_parts
from tinymirnet.model.network_cost import conv_macs

MIRNET = MirnetConfig(design="mrb_half_resolution", channels=8, exposure_target=120,
                      thumbnail_width=32, thumbnail_height=24)


@pytest.fixture(scope="module")
def mirnet():
    keras.utils.set_random_seed(5)
    return build_mirnet(MIRNET)


def test_the_context_is_every_attention_vector_in_build_order(mirnet):
    # Per round: channel attention of the top, middle and bottom DAU, the middle SKFF's two
    # weights, the top SKFF's two.
    assert context_parts(MIRNET) == [8, 8, 8, 8, 8, 8, 8] * 2
    thumb = tf.random.uniform((1, 24, 32, 3), 0, 1, seed=1)
    context = build_context_model(MIRNET, mirnet)(thumb)
    assert context.shape == (1, 1, 1, 112)
    values = context.numpy().reshape(-1)
    parts = np.split(values, np.cumsum(context_parts(MIRNET))[:-1])
    for r in range(2):
        dau, skff_mid, skff_top = parts[7 * r:7 * r + 3], parts[7 * r + 3:7 * r + 5], parts[7 * r + 5:7 * r + 7]
        assert all(((p > 0) & (p < 1)).all() for p in dau)  # sigmoids
        np.testing.assert_allclose(skff_mid[0] + skff_mid[1], 1.0, atol=1e-5)  # softmax across two streams
        np.testing.assert_allclose(skff_top[0] + skff_top[1], 1.0, atol=1e-5)


def test_the_tile_model_with_its_frames_context_is_the_textbook_network_on_that_frame(mirnet):
    """The context model on a frame, fed to the tile model, computes what the network with
    attention pooled over that same frame computes (the thumbnail here is the frame itself)."""
    frame = tf.random.uniform((1, 24, 32, 3), 0, 0.6, seed=2)
    context = build_context_model(MIRNET, mirnet)(frame)
    tiled = build_tile_model(MIRNET, mirnet)([frame, context])
    np.testing.assert_allclose(tiled.numpy(), mirnet(frame).numpy(), atol=1e-5)


def test_the_spatial_attention_gate_is_the_int8_range_of_its_projection(mirnet):
    from tinymirnet.quantize.convert import convert_int8, fixed_frame_context_models, synthetic_tiles
    from tinymirnet.quantize.flatbuffer import op_names
    from tensorflow.lite.python import schema_py_generated as schema
    _, tile = fixed_frame_context_models(mirnet, MIRNET, 48)
    tiles = synthetic_tiles(48, count=8)
    contexts = np.random.default_rng(0).random((8, 1, 1, 112)).astype(np.float32)
    flatbuffer = convert_int8(tile, (tiles, contexts))
    assert not {"MINIMUM", "MAXIMUM", "RELU", "RELU6", "LOGISTIC", "HARD_SWISH"} & set(op_names(flatbuffer))
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    graph = model.subgraphs[0]
    # One-channel maps at the streams' resolutions (the head's lift is one at the tile's).
    gates = [t for t in graph.tensors if len(t.shape) == 4 and t.shape[-1] == 1 and 1 < t.shape[1] < 48]
    assert len(gates) == 6  # one per DAU: a [0, 1] map, the hard sigmoid folded into its range
    for t in gates:
        assert t.quantization.zeroPoint[0] == -128 and abs(t.quantization.scale[0] - 1 / 255) < 1e-7


def test_structured_pruning_thins_every_dau(mirnet):
    from tinymirnet.quantize.prune import prune_filters
    x = tf.random.uniform((2, 32, 32, 3), 0, 0.5, seed=4)
    same, same_cfg = prune_filters(mirnet, MIRNET, 0.0)
    np.testing.assert_allclose(same(x).numpy(), mirnet(x).numpy(), atol=1e-6)
    narrow, narrow_cfg = prune_filters(mirnet, MIRNET, 0.25)
    assert narrow_cfg.dau_inner_widths() == [6] * 6 and narrow_cfg.stream_channels() == [8, 8, 8]
    size = (48, 48, 3)
    assert conv_macs(build_mirnet(narrow_cfg, size, 1)) < 0.9 * conv_macs(build_mirnet(MIRNET, size, 1))
    a = mirnet.get_layer("round0_dau_top_conv_a").get_weights()[0]
    kept = np.sort(np.argsort(-np.abs(a).sum(axis=(0, 1, 2)))[:6])
    np.testing.assert_array_equal(narrow.get_layer("round0_dau_top_conv_a").get_weights()[0], a[..., kept])
    context = build_context_model(narrow_cfg, narrow)(tf.zeros((1, 24, 32, 3)))
    assert build_tile_model(narrow_cfg, narrow)([x, tf.repeat(context, 2, axis=0)]).shape == x.shape


def test_a_frame_of_any_size_runs_whole(mirnet):
    """Frames that are no multiple of the network's size multiple (8) are padded and cropped back."""
    from tinymirnet.model.inference import FloatEnhancer
    assert MIRNET.size_multiple == 8
    enhancer = FloatEnhancer(mirnet, 120, MIRNET)
    low = (np.random.default_rng(3).random((37, 53, 3)) * 60).astype(np.uint8)
    out = enhancer.enhance(low)
    assert out.shape == (37, 53, 3) and 0 <= out.min() and out.max() <= 1


def test_a_config_with_an_unknown_design_is_refused():
    with pytest.raises(ValueError, match="unknown design 'mirnet_v3'"):
        MirnetConfig.from_dict({"design": "mirnet_v3"})
    with pytest.raises(ValueError, match="dau_widths"):
        MirnetConfig(design="mrb_half_resolution", dau_widths=(4, 4)).dau_inner_widths()
