"""The alternative without streams (model/network.py, design "half_resolution"): tiles that add up to the
whole frame, an output clip that costs the board no op, structured pruning that makes the model
smaller, and the naturalness loss it is trained with."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tinymirnet.model.network import MirnetConfig, build_context_model, build_mirnet, build_tile_model, context_parts
from tinymirnet.model.network_cost import conv_macs

BOARD = MirnetConfig(design="half_resolution", channels=8, depth=2, exposure_target=120,
                     thumbnail_width=32, thumbnail_height=24)
HALO = 8  # the design's reach at depth 2: a pixel changes outputs at most 8 px away


@pytest.fixture(scope="module")
def board_model():
    keras.utils.set_random_seed(3)
    model = build_mirnet(BOARD)
    # Random weights give a near-identity residual; larger ones make differences visible.
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w * 3.0 for w in layer.get_weights()])
    return model


def test_reach_of_one_pixel_is_within_the_halo(board_model):
    tile = build_tile_model(BOARD, board_model, (48, 48, 3))
    context = np.full((1, 1, 1, sum(context_parts(BOARD))), 0.5, np.float32)
    x = np.random.default_rng(0).random((1, 48, 48, 3)).astype(np.float32) * 0.4
    base = tile.predict([x, context], verbose=0)
    for p in (23, 24):
        moved = x.copy()
        moved[0, p, p] += 0.5
        changed = np.abs(tile.predict([moved, context], verbose=0) - base).max(-1)[0] > 0
        ys, xs = np.nonzero(changed)
        assert ys.min() >= p - HALO and ys.max() <= p + HALO and xs.min() >= p - HALO and xs.max() <= p + HALO


def test_tiles_add_up_to_the_whole_frame_so_no_grid_shows(board_model):
    """Tile by tile with a halo as wide as the network's reach equals the whole frame away from
    the frame's edge (where the board replicates edge pixels and the host mirrors them)."""
    from tinymirnet.model.inference import FloatEnhancer
    from tinymirnet.model.tiling import seam_ratio
    enhancer = FloatEnhancer(board_model, 0, BOARD)
    rng = np.random.default_rng(1)
    frame = (rng.random((120, 160, 3)) * 0.3 + np.linspace(0, 0.4, 160)[None, :, None]).astype(np.float32)
    whole = enhancer.full_frame(frame)
    tiled = enhancer.tiled(frame, 32, HALO)
    inner = (slice(HALO + 2, -HALO - 2), slice(HALO + 2, -HALO - 2))
    assert np.abs(whole[inner] - tiled[inner]).max() <= 1.0 / 255 + 1e-6
    assert seam_ratio(tiled, 32) < 1.05


def test_the_output_clip_is_the_int8_output_range_not_an_op(board_model):
    from tinymirnet.quantize.convert import convert_int8, fixed_frame_context_models, synthetic_tiles
    from tinymirnet.quantize.flatbuffer import op_names
    from tinymirnet.quantize.tflm import TflmModel
    _, tile = fixed_frame_context_models(board_model, BOARD, 48)
    tiles = synthetic_tiles(48, count=8)
    contexts = np.random.default_rng(0).random((8, 1, 1, sum(context_parts(BOARD)))).astype(np.float32)
    flatbuffer = convert_int8(tile, (tiles, contexts))
    ops = op_names(flatbuffer)
    assert not {"MINIMUM", "MAXIMUM", "RELU"} & set(ops), ops
    out = TflmModel(flatbuffer).output_quant
    assert out.zero_point == -128 and abs(out.scale - 1 / 255) < 1e-9


def test_structured_pruning_removes_whole_filters(board_model):
    from tinymirnet.quantize.prune import prune_filters
    x = tf.random.uniform((2, 32, 32, 3), 0, 0.5, seed=4)
    same, same_cfg = prune_filters(board_model, BOARD, 0.0)
    np.testing.assert_allclose(same(x).numpy(), board_model(x).numpy(), atol=1e-6)
    assert same_cfg.half_stream_widths() == BOARD.half_stream_widths()

    narrow, narrow_cfg = prune_filters(board_model, BOARD, 0.25)
    assert narrow_cfg.half_stream_widths() == [6, 6, 6] and narrow_cfg.squeeze == 2
    assert context_parts(narrow_cfg) == [6, 6]
    size = (40, 40, 3)
    assert conv_macs(build_mirnet(narrow_cfg, size, 1)) < 0.7 * conv_macs(build_mirnet(BOARD, size, 1))
    # The kept filters are the ones with the largest L1 norm, weights carried over unchanged.
    down = board_model.get_layer("down").get_weights()[0]
    kept = np.sort(np.argsort(-np.abs(down).sum(axis=(0, 1, 2)))[:6])
    np.testing.assert_array_equal(narrow.get_layer("down").get_weights()[0], down[..., kept])
    # The context and tile models of the narrower network build and run.
    context = build_context_model(narrow_cfg, narrow)(tf.zeros((1, 24, 32, 3)))
    assert build_tile_model(narrow_cfg, narrow)([x, tf.repeat(context, 2, axis=0)]).shape == x.shape


def test_structured_pruning_refuses_a_design_it_does_not_know():
    from tinymirnet.quantize.prune import prune_filters
    with pytest.raises(ValueError, match="not 'mrb'"):
        prune_filters(build_mirnet(MirnetConfig(channels=4)), MirnetConfig(channels=4), 0.25)


def test_scene_loss_is_zero_for_the_photo_itself_and_counts_dimmed_highlights_and_colour():
    from tinymirnet.model.metrics import scene_loss
    rng = np.random.default_rng(2)
    photo = (rng.random((2, 16, 16, 3)) * 0.65).astype(np.float32)
    assert float(scene_loss(photo, photo)) == pytest.approx(0.0, abs=1e-6)
    assert float(scene_loss(photo, photo * 1.5)) < 0.01  # brighter, colour kept: allowed
    assert float(scene_loss(photo, photo * 0.5)) > 0.05  # highlights dimmed
    tinted = photo.copy()
    tinted[..., 2] *= 0.5  # less blue: chromaticity moves
    assert float(scene_loss(photo, tinted)) > 0.05


def test_lightness_order_loss_counts_only_inversions_between_blocks():
    from tinymirnet.model.metrics import ORDER_BLOCK, lightness_order_loss, scene_loss
    ramp = np.linspace(0.05, 0.6, 16, dtype=np.float32)
    photo = np.repeat(np.repeat(ramp[None, None, :, None], 16, axis=1), 3, axis=3)  # dark left, bright right
    assert float(lightness_order_loss(photo, photo)) == 0.0
    assert float(lightness_order_loss(photo, photo * 1.7 + 0.05)) == 0.0  # brighter, same order
    mirrored = photo[:, :, ::-1]  # every left-right pair of blocks inverted
    inverted = float(lightness_order_loss(photo, mirrored))
    assert inverted > 0.05
    half = photo.copy()
    half[:, :, :8] = photo[:, :, 8:][:, :, ::-1]  # only the left blocks reordered
    assert 0.0 < float(lightness_order_loss(photo, half)) < inverted
    assert float(scene_loss(photo, mirrored)) > float(scene_loss(photo, mirrored, order=0.0))
    assert photo.shape[2] % ORDER_BLOCK == 0


def test_half_widths_survive_a_json_round_trip_and_stay_hashable():
    import json
    cfg = MirnetConfig(design="half_resolution", channels=16, depth=2, half_widths=(12, 12, 14), squeeze=4)
    back = MirnetConfig.from_dict(json.loads(cfg.to_json()))
    assert back == cfg and hash(back) == hash(cfg)
    with pytest.raises(ValueError, match="needs 3 entries"):
        MirnetConfig(design="half_resolution", depth=2, half_widths=(8, 8)).half_stream_widths()
