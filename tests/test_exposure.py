"""Frame exposure normalisation (model/exposure.py): the integer gain the board computes."""
import numpy as np
import pytest

from tinymirnet.model.exposure import (GAIN_ONE_Q8, KNEE, MAX_GAIN_Q8, apply_gain_q8, exposure_gain_q8,
                                       gain_table, normalize_exposure)


def uniform(value: int, h: int = 4, w: int = 6) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_gain_brings_a_uniform_frame_to_the_target():
    assert exposure_gain_q8(uniform(16), 120) == 1920  # 120 * 256 / 16
    assert normalize_exposure(uniform(16), 120).max() == 120
    assert normalize_exposure(uniform(40), 100).min() == 100


def test_gain_rounds_to_nearest_and_is_clamped():
    frame = uniform(16, 8, 8)
    frame[0, 0] = 0  # 3 of 192 values black: 1920 * 192 / 189 = 1950.48 -> 1950
    assert exposure_gain_q8(frame, 120) == 1950
    assert exposure_gain_q8(uniform(200), 120) == GAIN_ONE_Q8  # never darkens
    assert exposure_gain_q8(uniform(1), 120) == MAX_GAIN_Q8  # at most 32x
    assert exposure_gain_q8(uniform(0), 120) == MAX_GAIN_Q8


def test_gained_pixels_round_half_up_below_the_knee_and_bend_above_it():
    pixels = np.array([0, 3, 100, 128, 200, 255], dtype=np.uint8)
    # x 1.5: 4.5 -> 5; 150; 192 is the knee (slope 1 there); 300 bends to 192 + 63 * 108 / 171
    # = 231.8 -> 232 instead of clipping; 382.5 would bend to 239, below 255 itself: never darker
    assert apply_gain_q8(pixels, 384).tolist() == [0, 5, 150, 192, 232, 255]


def test_gain_table_is_monotone_never_darkens_and_never_clips_two_values_into_one_at_moderate_gain():
    for gain in (GAIN_ONE_Q8, 300, 384, 1000, 1920, MAX_GAIN_Q8):
        table = gain_table(gain).astype(int)
        assert (np.diff(table) >= 0).all(), gain
        assert (table >= np.arange(256)).all(), gain
    assert gain_table(GAIN_ONE_Q8).tolist() == list(range(256))  # gain 1 is the identity
    # a lamp and the walls around it (128..200 at 2x): a hard clip made them all 255
    assert len(set(gain_table(512)[128:200].tolist())) > 10
    assert gain_table(512)[KNEE // 2] == KNEE and KNEE < gain_table(512)[127] < 255


def test_mean_lands_near_the_target_on_a_real_looking_frame():
    rng = np.random.default_rng(0)
    low = rng.integers(6, 25, (60, 80, 3)).astype(np.uint8)  # nothing saturates at gain ~8
    out = normalize_exposure(low, 120)
    assert abs(out.mean() - 120) < 0.5
    ratio = out[..., 0].astype(float).sum() / max(1.0, out[..., 1].astype(float).sum())
    assert ratio == pytest.approx(low[..., 0].astype(float).sum() / low[..., 1].astype(float).sum(), rel=0.03)


def test_target_zero_is_off_and_bad_input_is_refused():
    frame = uniform(16)
    assert normalize_exposure(frame, 0) is frame
    with pytest.raises(ValueError, match="uint8"):
        exposure_gain_q8(frame.astype(np.float32), 120)
    with pytest.raises(ValueError, match="outside"):
        exposure_gain_q8(frame, 300)


def test_float_pipeline_feeds_the_network_the_frame_the_weights_were_trained_on(tmp_path):
    """FloatEnhancer.load reads the weights' exposure_target, and enhance() normalises the
    whole frame before running it whole or tile by tile (the board's order)."""
    import tf_keras as keras
    from tinymirnet.model.data import to_float
    from tinymirnet.model.inference import FloatEnhancer
    from tinymirnet.model.network import MirnetConfig, build_mirnet
    keras.utils.set_random_seed(0)
    cfg = MirnetConfig(channels=4, exposure_target=120)
    build_mirnet(cfg).save_weights(str(tmp_path / "w.weights.h5"))
    (tmp_path / "w.json").write_text(cfg.to_json())
    enhancer = FloatEnhancer.load(tmp_path / "w.weights.h5")
    assert enhancer.exposure_target == 120
    low = np.random.default_rng(1).integers(0, 30, (24, 40, 3)).astype(np.uint8)
    from tinymirnet.model.data import to_uint8
    from tinymirnet.model.exposure import guard
    from tinymirnet.model.lightness_order import finish
    normalised = to_float(normalize_exposure(low, 120))

    def piped(out):  # rounded to 8 bits, the output guards against the camera frame, the host's finish
        return to_float(finish(low, guard(low, to_uint8(out))))
    assert np.array_equal(enhancer.enhance(low), piped(enhancer.full_frame(normalised)))
    assert np.array_equal(enhancer.enhance(low, 8, 4), piped(enhancer.tiled(normalised, 8, 4)))
    assert not np.array_equal(enhancer.enhance(low), piped(enhancer.full_frame(to_float(low))))
    enhancer.keep_order = False  # what the board's tiles hold: no whole-frame step
    assert np.array_equal(enhancer.enhance(low, 8, 4), to_float(guard(low, to_uint8(enhancer.tiled(normalised, 8, 4)))))


def test_whole_frame_path_has_no_coloured_border(small_float_weights):
    """The convolutions pad with zeros: without the mirrored border, a flat photo came back with
    coloured outermost pixels (issue "Natural on real scenes": one photo's left column
    [118, 0, 48] against [64, 8, 4] inside). A flat frame must come back flat."""
    from tinymirnet.model import import_tensorflow_quietly
    import_tensorflow_quietly()
    from tinymirnet.model.inference import FloatEnhancer, load_model
    model, cfg = load_model(small_float_weights)
    flat = np.full((37, 53, 3), (60, 40, 30), np.uint8)
    out = FloatEnhancer(model, cfg.exposure_target, cfg).enhance(flat)
    assert np.abs(out - out[18, 26]).max() < 1e-4


def test_highlight_guard_keeps_every_highlight_and_leaves_dark_pixels_alone():
    """The table the board uses too (pixels.h checks the same values): 0 up to 127, at least
    90 % of the value from 0.6 (153) on, so the issue's 'highlights darkened' is 0 whatever
    the network outputs."""
    from tinymirnet.model.exposure import HIGHLIGHT_FLOOR, keep_highlights
    from tinymirnet.model.naturalness import highlights_darkened
    assert [int(HIGHLIGHT_FLOOR[p]) for p in (0, 127, 128, 153, 255)] == [0, 0, 6, 141, 235]
    p = np.arange(256)
    assert np.all(HIGHLIGHT_FLOOR[153:] >= 0.9 * p[153:]) and np.all(HIGHLIGHT_FLOOR <= p)
    assert np.all(np.diff(HIGHLIGHT_FLOOR.astype(int)) >= 0)
    raw = np.random.default_rng(3).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    black = np.zeros_like(raw)
    kept = keep_highlights(raw, black)
    assert highlights_darkened(raw, kept) == 0.0
    assert np.all(kept[raw < 128] == 0) and np.array_equal(keep_highlights(raw, raw), raw)


def test_colour_guard_keeps_the_cameras_chromaticity_where_it_saw_colour():
    """The values firmware/tests/test_tiler.cc checks too: S = R + G + B >= 115 keeps the camera's
    chromaticity with the network's brightness, S <= 77 keeps the network's colour, a blend
    between; the chromaticity shift of lit pixels becomes (nearly) nil."""
    from tinymirnet.model.exposure import guard, keep_colour
    from tinymirnet.model.naturalness import chromaticity_shift
    raw = np.array([[[200, 100, 50], [10, 10, 10], [60, 30, 10]]], np.uint8)
    out = np.array([[[150, 150, 150], [30, 31, 32], [90, 90, 90]]], np.uint8)
    assert keep_colour(raw, out).tolist() == [[[255, 129, 64], [30, 31, 32], [134, 85, 52]]]
    rng = np.random.default_rng(4)
    photo = rng.integers(40, 200, (40, 60, 3), dtype=np.uint8)
    grey = np.repeat(photo.mean(-1, keepdims=True), 3, -1).astype(np.uint8)
    assert chromaticity_shift(photo, grey) > 5
    assert chromaticity_shift(photo, guard(photo, grey)) < 0.5
    # In bands of rows and whole give the same bytes (the guard runs in bands of about 64 K pixels).
    np.testing.assert_array_equal(keep_colour(photo, grey, pixels=7 * 60), keep_colour(photo, grey, pixels=10**6))
    np.testing.assert_array_equal(keep_colour(photo, grey, pixels=1), keep_colour(photo, grey))
