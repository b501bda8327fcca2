"""The host's lightness-order step (model/lightness_order.py)."""
import itertools

import numpy as np
import pytest

from tinymirnet.model.exposure import guard
from tinymirnet.model.lightness_order import finish, keep_lightness_order, monotone_fit, order_gain
from tinymirnet.model.naturalness import lightness_order_parts


def _brute_monotone_fit(y, w):
    """The least-squares non-decreasing fit by brute force over every split into constant runs."""
    n, best, best_cost = len(y), None, np.inf
    for cuts in itertools.product([0, 1], repeat=n - 1):
        runs, start = [], 0
        for i, c in enumerate(cuts, 1):
            if c:
                runs.append((start, i))
                start = i
        runs.append((start, n))
        fit = np.concatenate([np.full(b - a, np.average(y[a:b], weights=w[a:b])) for a, b in runs])
        if np.all(np.diff(fit) >= -1e-12):
            cost = float(np.sum(w * (fit - y) ** 2))
            if cost < best_cost:
                best, best_cost = fit, cost
    return best


def test_monotone_fit_is_the_least_squares_non_decreasing_fit():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, w = rng.normal(size=7), rng.integers(1, 5, size=7).astype(float)
        fit = monotone_fit(y, w)
        assert np.all(np.diff(fit) >= -1e-12)
        np.testing.assert_allclose(fit, _brute_monotone_fit(y, w), atol=1e-9)
    np.testing.assert_allclose(monotone_fit(np.arange(5.0), np.ones(5)), np.arange(5.0))  # already ordered


def _scene(h=96, w=128, seed=0):
    """A dark frame of smooth regions (a gradient, a bright patch) and some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    lum = 10 + 30 * x / w
    lum[20:50, 30:70] += 25
    img = lum[..., None] * np.array([1.0, 0.9, 0.7]) + rng.normal(0, 1.5, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_an_order_preserving_output_is_left_alone():
    raw = _scene()
    out = (raw.astype(np.int32) * 3).astype(np.uint8)  # one gain (no clipping): the order is kept
    diff = np.abs(keep_lightness_order(raw, out).astype(int) - out.astype(int))
    # only the noise's coarse wiggles are evened out: within 2 levels or 3 %, 0.5 level on average
    assert np.all(diff <= np.maximum(2, np.ceil(0.03 * out))) and diff.mean() < 0.5, (diff.max(), diff.mean())


def test_reversed_regions_get_the_input_order_back():
    raw = _scene()
    out = (raw.astype(np.int32) * 3).astype(np.uint8)
    out[20:50, 30:70] //= 2  # the bright patch rendered darker than its surroundings
    before = lightness_order_parts(raw, out)[2]
    kept = keep_lightness_order(raw, out, strength=1.0)
    after = lightness_order_parts(raw, kept)[2]
    # what is left is the patch's rim, where the coarse gain map ramps over a coarse pixel or two
    assert after < 0.6 * before, (before, after)
    # a gain per pixel: the colour ratios of unclipped pixels stay the network's
    ratio_out = out[60:90, 90:120].astype(float) / out[60:90, 90:120].sum(-1, keepdims=True)
    ratio_kept = kept[60:90, 90:120].astype(float) / kept[60:90, 90:120].sum(-1, keepdims=True)
    assert np.abs(ratio_kept - ratio_out).mean() < 0.01


def test_strength_zero_is_the_identity_and_the_gain_is_bounded():
    raw = _scene(seed=1)
    out = np.zeros_like(raw)
    out[:, :64] = 200  # everything reversed at once
    assert np.array_equal(keep_lightness_order(raw, out, strength=0), out)
    g = order_gain(raw, out, strength=1.0)
    assert g.min() >= 0.5 - 1e-6 and g.max() <= 2.0 + 1e-6
    assert max(g.shape) == 48


def test_large_frames_are_done_in_bands_with_the_same_result(monkeypatch):
    import tinymirnet.model.lightness_order as lo
    raw = _scene(120, 200, seed=2)
    out = np.clip(255 - raw.astype(int) * 3, 0, 255).astype(np.uint8)
    whole = keep_lightness_order(raw, out)
    monkeypatch.setattr(lo, "_BAND_PIXELS", 1000)  # bands of 5 rows
    assert np.array_equal(keep_lightness_order(raw, out), whole)


def test_finish_applies_the_guards_after_the_step():
    raw = _scene(seed=3)
    raw[0:10, 0:10] = 240  # a highlight
    out = np.full_like(raw, 30)
    out[0:10, 0:10] = 100  # darkened by the network
    done = finish(raw, out)
    assert np.array_equal(done, guard(raw, keep_lightness_order(raw, out)))
    assert done[0:10, 0:10].min() >= 0.9 * 240


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 3, 3), (30, 2, 3)])
def test_tiny_frames_work(shape):
    raw = np.full(shape, 20, np.uint8)
    assert keep_lightness_order(raw, raw * 3).shape == shape


def test_mismatched_images_get_one_clear_error():
    with pytest.raises(ValueError, match="two HxWx3 images of one size"):
        keep_lightness_order(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
