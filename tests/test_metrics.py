import numpy as np
import pytest

from tinymirnet.model.metrics import charbonnier_loss, psnr, ssim


def test_charbonnier_matches_hand_computation():
    y_true = np.zeros((1, 1, 2, 1), np.float32)
    y_pred = np.array([0.003, 0.004], np.float32).reshape(1, 1, 2, 1)
    expected = (np.sqrt(0.003**2 + 1e-6) + np.sqrt(0.004**2 + 1e-6)) / 2  # eps = 1e-3
    assert float(charbonnier_loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)


def test_psnr_uses_max_value_one():
    a = np.zeros((8, 8, 3))
    b = np.full((8, 8, 3), 0.1)  # MSE 0.01 -> 20 dB with max 1 (not 255)
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = np.full((16, 16, 3), 0.2), np.full((16, 16, 3), 0.4)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.4 + c1) / (0.2**2 + 0.4**2 + c1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-4)
    assert ssim(a, a) == pytest.approx(1.0)
