import numpy as np
import pytest

from tinymirnet.model.metrics import LUMA, charbonnier_loss, gt_mean_scaled, psnr, psnr_gt_mean, ssim


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


def test_gt_mean_psnr_removes_a_global_brightness_error_only():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.1, 0.6, (16, 16, 3))
    too_dark = ref * 0.5
    assert psnr(too_dark, ref) < 15.0
    assert psnr_gt_mean(too_dark, ref) > 100.0  # the same image, darker: only exposure differs
    noisy = np.clip(ref + rng.normal(0.0, 0.05, ref.shape), 0.0, 1.0)
    # Structure errors stay: matching the mean does not make a noisy image clean.
    assert psnr_gt_mean(noisy, ref) == pytest.approx(psnr(noisy, ref), abs=0.2)
    assert np.mean(gt_mean_scaled(too_dark, ref) @ LUMA) == pytest.approx(np.mean(ref @ LUMA))
    assert psnr_gt_mean(np.zeros_like(ref), ref) == psnr(np.zeros_like(ref), ref)  # black stays black


def test_mse_loss_matches_hand_computation():
    from tinymirnet.model.metrics import mse_loss
    y_true = np.zeros((1, 1, 2, 1), np.float32)
    y_pred = np.array([0.3, 0.4], np.float32).reshape(1, 1, 2, 1)
    assert float(mse_loss(y_true, y_pred)) == pytest.approx((0.09 + 0.16) / 2, rel=1e-6)


def test_mse_ssim_loss_is_mse_plus_the_weighted_ssim_deficit():
    from tinymirnet.model.metrics import SSIM_WEIGHT, mse_loss, mse_ssim_loss
    rng = np.random.default_rng(2)
    clean = rng.uniform(0.2, 0.8, (1, 24, 24, 3)).astype(np.float32)
    grainy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    assert float(mse_ssim_loss(clean, clean)) == pytest.approx(0.0, abs=1e-6)
    expected = float(mse_loss(clean, grainy)) + SSIM_WEIGHT * (1 - ssim(grainy[0], clean[0]))
    assert float(mse_ssim_loss(clean, grainy)) == pytest.approx(expected, rel=1e-4)


def test_brightness_log_ratio_is_the_exposure_error():
    from tinymirnet.model.metrics import brightness_log_ratio
    ref = np.random.default_rng(1).uniform(0.1, 0.5, (8, 8, 3))
    assert brightness_log_ratio(ref * 1.5, ref) == pytest.approx(np.log(1.5))
    assert brightness_log_ratio(ref, ref) == pytest.approx(0.0)
    assert np.isfinite(brightness_log_ratio(np.zeros_like(ref), ref))


def test_the_command_line_offers_exactly_the_losses_training_knows():
    from tinymirnet.model.network_config import LOSS_NAMES
    from tinymirnet.model.metrics import LOSSES
    assert sorted(LOSS_NAMES) == sorted(LOSSES)
