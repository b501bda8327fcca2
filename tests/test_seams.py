"""model.tiling.seam_ratio: how much a tile grid shows in an image."""
import numpy as np

from tinymirnet.model.tiling import seam_ratio


def smooth(h=120, w=160):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 1.2, y * 1.5, (x + y) * 0.6], -1)


def test_a_smooth_image_has_no_seams():
    assert abs(seam_ratio(smooth(), 20) - 1.0) < 0.05


def test_a_step_at_every_tile_boundary_shows():
    img = smooth()
    for k in range(20, 160, 20):
        img[:, k:] += 3.0  # a level step where each tile column starts
    assert seam_ratio(img, 20) > 1.5
    assert abs(seam_ratio(img, 16) - 1.0) < 0.3  # another grid does not line up with it
