import numpy as np
import pytest

from tinymirnet.model.thumbnail import thumbnail


def test_qqvga_thumbnail_is_an_exact_5x5_box_mean_rounded_half_up():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    thumb = thumbnail(frame, 32, 24)
    assert thumb.shape == (24, 32, 3) and thumb.dtype == np.uint8
    sums = frame.astype(np.int64).reshape(24, 5, 32, 5, 3).sum(axis=(1, 3))
    np.testing.assert_array_equal(thumb, (sums + 12) // 25)


def test_uneven_frames_use_integer_boxes_that_cover_every_pixel_once():
    frame = np.zeros((400, 600, 3), np.uint8)
    frame[:, 17, 0] = 255  # 600 -> 32: the first box is columns 0..17 (600 // 32 = 18 wide)
    thumb = thumbnail(frame, 32, 24)
    assert thumb[:, 0, 0].tolist() == [14] * 24 and thumb[:, 1:, 0].max() == 0  # 255 / 18 = 14.2
    flat = np.full((7, 9, 3), 77, np.uint8)
    assert (thumbnail(flat, 9, 7) == 77).all() and (thumbnail(flat, 2, 3) == 77).all()


def test_bad_frames_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="smaller than the 32x24 thumbnail"):
        thumbnail(np.zeros((20, 40, 3), np.uint8), 32, 24)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        thumbnail(np.zeros((120, 160), np.uint8), 32, 24)
