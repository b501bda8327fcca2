"""Loss and image-quality metrics on float images in [0, 1] (max value 1, not 255)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

CHARBONNIER_EPS = 1e-3


def charbonnier_loss(y_true, y_pred, eps: float = CHARBONNIER_EPS):
    """mean(sqrt((y_pred - y_true)^2 + eps^2)), the MIRNet training loss."""
    diff = tf.cast(y_pred, tf.float32) - tf.cast(y_true, tf.float32)
    return tf.reduce_mean(tf.sqrt(diff * diff + eps * eps))


def mse_loss(y_true, y_pred):
    """Mean squared error: the loss PSNR is a function of."""
    diff = tf.cast(y_pred, tf.float32) - tf.cast(y_true, tf.float32)
    return tf.reduce_mean(diff * diff)


# The lightness-order term of the naturalness loss: its weight beside the other two, and the
# block size its lightness is averaged over (a 256 px SICE photo pooled by 4 is the 64 px image
# the LOE metric compares).
ORDER_WEIGHT = 60.0
ORDER_BLOCK = 4


def lightness_order_loss(raw, out, block: int = ORDER_BLOCK, tie: float = 1.0 / 255.0):
    """A differentiable lightness-order error (Wang et al. 2013, as model/naturalness.py scores
    it): L = max(R, G, B) of `block` x `block` averages; over all ordered pairs of blocks of a
    crop whose input lightness differs by more than `tie`, the mean of relu(-sign(a_i - a_j) x
    (b_i - b_j)): zero while the output keeps every order, growing with each inversion's size."""
    a = tf.reduce_max(tf.nn.avg_pool2d(tf.cast(raw, tf.float32), block, block, "VALID"), -1)
    b = tf.reduce_max(tf.nn.avg_pool2d(tf.cast(out, tf.float32), block, block, "VALID"), -1)
    n = tf.shape(a)[0]
    a, b = tf.reshape(a, [n, -1]), tf.reshape(b, [n, -1])
    da = a[:, :, None] - a[:, None, :]
    db = b[:, :, None] - b[:, None, :]
    sign = tf.sign(da) * tf.cast(tf.abs(da) > tie, tf.float32)
    return tf.reduce_mean(tf.nn.relu(-sign * db))


def scene_loss(raw, out, highlight: float = 0.5, keep: float = 0.95, min_sum: float = 0.3, eps: float = 1e-3,
               order: float = ORDER_WEIGHT):
    """Zero-reference naturalness loss of an enhanced real photo against the photo itself (no
    ground truth), shaped on issue "Natural on real scenes"'s metrics with a margin:

    * highlights: over pixels whose input L = max(R, G, B) >= `highlight`, the mean of
      relu(keep x L_in - L_out) (a highlight may brighten, never dim by more than 5 %);
    * chromaticity: over pixels whose input R + G + B >= `min_sum`, the mean L1 change of
      (R, G, B) / (R + G + B);
    * lightness order: `order` x lightness_order_loss.
    """
    raw = tf.cast(raw, tf.float32)
    out = tf.cast(out, tf.float32)
    l_in, l_out = tf.reduce_max(raw, -1), tf.reduce_max(out, -1)
    bright = tf.cast(l_in >= highlight, tf.float32)
    dimmed = tf.reduce_sum(tf.nn.relu(keep * l_in - l_out) * bright) / (tf.reduce_sum(bright) + 1.0)
    s_in = tf.reduce_sum(raw, -1, keepdims=True)
    s_out = tf.reduce_sum(out, -1, keepdims=True)
    lit = tf.cast(s_in[..., 0] >= min_sum, tf.float32)
    shift = tf.reduce_sum(tf.abs(raw / (s_in + eps) - out / (s_out + eps)), -1)
    shifted = tf.reduce_sum(shift * lit) / (tf.reduce_sum(lit) + 1.0)
    ordered = lightness_order_loss(raw, out) if order else 0.0
    return dimmed + shifted + order * ordered


# The weight of the structure term in `mse_ssim_loss`: 0.1 of SSIM (0.60 -> 0.70) weighs as much
# as 1 dB of PSNR at 20 dB (MSE 0.010 -> 0.0079).
SSIM_WEIGHT = 0.02


def mse_ssim_loss(y_true, y_pred, weight: float = SSIM_WEIGHT):
    """MSE + weight x (1 - SSIM): PSNR's loss plus the structure SSIM scores (grain left in flat
    regions costs SSIM far more than it costs MSE). SSIM as `ssim` computes it (11x11 Gaussian
    window), so crops must be at least 11 px."""
    y_true, y_pred = tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32)
    return mse_loss(y_true, y_pred) + weight * (1.0 - tf.reduce_mean(tf.image.ssim(y_true, y_pred, max_val=1.0)))


# Training losses by name (`tinymirnet train --loss`).
LOSSES = {"charbonnier": charbonnier_loss, "mse": mse_loss, "mse_ssim": mse_ssim_loss}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1]: 10 log10(1 / MSE)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


# ITU-R BT.601 luma weights, the grey level the GT-mean evaluation matches.
LUMA = np.array([0.299, 0.587, 0.114])


def mean_grey(img: np.ndarray) -> float:
    """Mean BT.601 luma of an HxWx3 image."""
    return float(np.mean(np.asarray(img, np.float64) @ LUMA))


def gt_mean_scaled(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """`out` multiplied by one factor so that its mean grey level equals the ground truth's,
    clipped to [0, 1]: the "GT-mean" evaluation of the low-light literature (LLFlow,
    Retinexformer). It removes the one thing a low-light frame cannot tell, how bright the
    normal-light reference was exposed, and is a diagnostic beside PSNR, never instead of it:
    it reads the ground truth."""
    out = np.asarray(out, np.float64)
    mean_out = mean_grey(out)
    if mean_out <= 0.0:
        return out
    return np.clip(out * (mean_grey(ref) / mean_out), 0.0, 1.0)


def brightness_log_ratio(out: np.ndarray, ref: np.ndarray) -> float:
    """ln(mean grey of `out` / mean grey of `ref`): how much brighter (> 0) or darker the
    output is exposed than the ground truth (0.1 is about 10 % brighter)."""
    return float(np.log(max(mean_grey(out), 1e-6) / max(mean_grey(ref), 1e-6)))


def psnr_gt_mean(out: np.ndarray, ref: np.ndarray) -> float:
    """PSNR after the GT-mean brightness match (`gt_mean_scaled`): a diagnostic."""
    return psnr(gt_mean_scaled(out, ref), ref)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two HxWx3 images in [0, 1] (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
    K1 0.01, K2 0.03, mean over channels), as tf.image.ssim computes it."""
    ta = tf.convert_to_tensor(np.asarray(a, np.float32)[None])
    tb = tf.convert_to_tensor(np.asarray(b, np.float32)[None])
    return float(tf.image.ssim(ta, tb, max_val=1.0)[0])
