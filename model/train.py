"""`tinymirnet train`: Adam + Charbonnier on random LoL crops, validation PSNR every epoch,
a checkpoint every epoch and --resume, a CSV log and a PNG of the curves.

A run directory holds everything: config.json (the run's settings), ckpt/ (the latest
checkpoint: weights, optimizer and epoch), state.json (schedule state and best score),
log.csv, curves.png and best.weights.h5 + best.json (the weights with the best validation
PSNR, ready for `tinymirnet eval` / `export`).
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from .exposure import normalize_exposure
from .data import (context_crop_dataset, crop_dataset, fine_thumbnail, find_pairs, find_photos, load_pairs,
                   read_rgb, resolve_split, scene_crop_dataset, split_photos, split_train_val, to_float)
from .files import atomic_save_weights, atomic_write_json, atomic_write_text
from .inference import FloatEnhancer
from .metrics import LOSSES, ORDER_WEIGHT, charbonnier_loss, psnr, scene_loss
from .network import MirnetConfig, build_frame_context_trainer, build_mirnet
from .network_cost import count_params, macs_per_pixel
from .plots import plot_curves
from .thumbnail import thumbnail
from .tiling import load_tiling


class TrainConfigError(ValueError):
    """A run's settings cannot train its network; the message names the setting."""


@dataclass
class TrainConfig:
    data: str
    epochs: int = 200
    batch: int = 8
    crop: int = 128
    steps_per_epoch: int = 0  # 0: one pass over the training pairs (len // batch)
    lr: float = 2e-3
    min_lr: float = 1e-5
    schedule: str = "cosine"  # "cosine" (linear warm-up + cosine) or "plateau"
    warmup_epochs: int = 3
    plateau_patience: int = 5  # ReduceLROnPlateau(factor=0.5, patience=5) of the keras.io MIRNet example
    plateau_factor: float = 0.5
    val_percent: float = 10.0
    exclude: list[str] = field(default_factory=list)
    seed: int = 0
    model: dict = field(default_factory=lambda: asdict(MirnetConfig()))
    # Tile adaptation (a second stage for the board): start from trained weights, train on
    # crops of the model's tile input, score only the centre the board keeps (loss_margin =
    # halo), validate tile by tile with the shared tiling configuration.
    init_weights: str = ""
    loss_margin: int = 0
    val_tiled: bool = False
    # Frame exposure normalisation (model/exposure.py) applied to every low-light frame before
    # cropping; 0 = off. The shipped pipeline reads its target from model/tiling.json.
    exposure_target: int = 0
    # The training loss (metrics.LOSSES): Charbonnier as in MIRNet, or MSE, the loss PSNR is
    # a function of. Validation always reports Charbonnier and PSNR.
    loss: str = "charbonnier"
    # Unpaired real scenes (a folder of photos, e.g. SICE train/): each step also runs a batch of
    # their crops and adds scene_weight x the naturalness loss (metrics.scene_loss: keep
    # highlights and chromaticity of the unnormalised photo). "" = LoL only.
    scenes: str = ""
    scene_weight: float = 1.0
    # Weight of the lightness-order term inside the naturalness loss (metrics.ORDER_WEIGHT by
    # default; 0 = the loss before the term existed, as the older configs in model/weights ran).
    order_weight: float = ORDER_WEIGHT
    # Side of the scene crops; 0 = `crop`. Larger crops put lightness pairs further apart into
    # the order term (the LOE metric compares every pair of the whole photo).
    scene_crop: int = 0
    # Distillation: the training targets become teacher_weight x the teacher network's output on
    # each training frame (its float pipeline, `FloatEnhancer.enhance`) + (1 - teacher_weight) x
    # the ground truth. "" = the ground truth alone. Validation stays on the ground truth.
    teacher: str = ""
    teacher_weight: float = 1.0
    # Frame context: each training crop's thumbnail is taken from a random window keeping
    # between 1 - context_jitter and all of each side of its frame (data.jittered_thumbnail);
    # 0 = the whole frame's, as the board computes it. Validation always uses the whole frame.
    context_jitter: float = 0.0
    # With a teacher and scenes: this many photos of the scenes' training split (evenly spaced)
    # join the training frames, each with the teacher's output as its target. The teacher's
    # choices on scenes LoL never shows (brightness above all) become targets too; 0 = LoL only.
    teacher_photos: int = 0


class LearningRate:
    """The per-epoch learning rate of either schedule; its state lives in state.json."""

    def __init__(self, cfg: TrainConfig, state: dict):
        self.cfg = cfg
        self.lr = state.get("lr", cfg.lr)
        self.best = state.get("plateau_best", -math.inf)
        self.wait = state.get("plateau_wait", 0)

    def for_epoch(self, epoch: int) -> float:
        c = self.cfg
        if c.schedule == "plateau":
            return self.lr
        if epoch < c.warmup_epochs:
            return c.lr * (epoch + 1) / (c.warmup_epochs + 1)
        t = (epoch - c.warmup_epochs) / max(1, c.epochs - c.warmup_epochs)
        return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))

    def after_epoch(self, val_psnr: float) -> None:
        if self.cfg.schedule != "plateau":
            return
        if val_psnr > self.best + 1e-4:
            self.best, self.wait = val_psnr, 0
        else:
            self.wait += 1
            if self.wait >= self.cfg.plateau_patience:
                self.lr = max(self.cfg.min_lr, self.lr * self.cfg.plateau_factor)
                self.wait = 0

    def state(self) -> dict:
        return {"lr": self.lr, "plateau_best": self.best, "plateau_wait": self.wait}


class ProgressBar:
    """A one-line text progress bar on stderr."""

    def __init__(self, total: int, label: str, stream=sys.stderr):
        self.total, self.label, self.stream = total, label, stream
        self.start = time.monotonic()

    def update(self, done: int, info: str = "") -> None:
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        filled = int(24 * done / self.total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (24 - filled)}] {done}/{self.total} "
                          f"{info} {elapsed:.0f}s<{eta:.0f}s ")
        self.stream.flush()

    def close(self, info: str = "") -> None:
        self.update(self.total, info)
        self.stream.write("\n")


# Validation runs on a centre crop of each validation image (a quarter of a LoL frame) to keep
# an epoch short on two cores; the benchmark (eval15) always uses whole frames.
VAL_CROP = (200, 300)


def teacher_targets(teacher: str | Path, weight: float, lows: list[np.ndarray], highs: list[np.ndarray]) -> list[np.ndarray]:
    """weight x the teacher's enhanced frame + (1 - weight) x the ground truth, 8-bit, for each
    raw low-light frame. A stronger network's output is a target the student can reach: it
    carries the teacher's estimate of each frame's brightness, where the ground truth carries
    its own photographer's exposure, which no input statistic predicts (docs/decisions)."""
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"teacher weight {weight:g} is outside (0, 1]")
    # The network and its guards, without the host's lightness-order step, which came after the
    # committed weights were trained (their configs replay with the same targets).
    teacher_net = FloatEnhancer.load(teacher, keep_order=False)
    bar = ProgressBar(len(lows), "teacher")
    targets = []
    for k, (lo, hi) in enumerate(zip(lows, highs)):
        taught = teacher_net.enhance(lo) * 255.0
        targets.append(np.round(weight * taught + (1.0 - weight) * hi).clip(0, 255).astype(np.uint8))
        bar.update(k + 1)
    bar.close()
    return targets


def teacher_photo_pairs(teacher: str | Path, scenes: str | Path, count: int,
                        val_percent: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`count` photos of the training split of `scenes`, evenly spaced, and the teacher's output
    on each as its target: pairs for scenes that have no ground truth."""
    photos, _ = split_photos(find_photos(scenes), val_percent)
    picked = [photos[round(k * len(photos) / count)] for k in range(count)]
    raws = [read_rgb(p) for p in picked]
    return raws, teacher_targets(teacher, 1.0, raws, raws)


def center_crop(images: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    out = []
    for im in images:
        h, w = im.shape[:2]
        ch, cw = min(size[0], h), min(size[1], w)
        y, x = (h - ch) // 2, (w - cw) // 2
        out.append(im[y:y + ch, x:x + cw])
    return out


LOG_FIELDS = ["epoch", "lr", "train_loss", "train_psnr", "scene_loss", "val_loss", "val_psnr", "seconds"]


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v is not None} for row in csv.DictReader(f)]


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOG_FIELDS)
    w.writeheader()
    for r in rows:
        w.writerow({k: (int(r[k]) if k == "epoch" else f"{r.get(k, math.nan):.6g}") for k in LOG_FIELDS})
    atomic_write_text(path, buf.getvalue())


def _plot(run_dir: Path, rows: list[dict]) -> None:
    epochs = [int(r["epoch"]) for r in rows]
    plot_curves(run_dir / "curves.png", epochs, {
        "Charbonnier loss": {"train": [r["train_loss"] for r in rows],
                             "validation": [r["val_loss"] for r in rows]},
        "PSNR (dB)": {"train crops": [r["train_psnr"] for r in rows],
                      "validation": [r["val_psnr"] for r in rows]},
    })


def evaluate_images(enhancer: FloatEnhancer, lows, highs, tiling=None) -> tuple[float, float]:
    """Mean Charbonnier loss and mean PSNR over whole images, run whole or (with a tiling
    config) tile by tile as on the board."""
    losses, scores = [], []
    for lo, hi in zip(lows, highs):
        if tiling is None:
            out = enhancer.full_frame(to_float(lo))
        else:
            out = enhancer.tiled(to_float(lo), tiling.tile, tiling.halo)
        ref = to_float(hi)
        losses.append(float(charbonnier_loss(ref, out)))
        scores.append(psnr(out, ref))
    return float(np.mean(losses)), float(np.mean(scores))


def train(run_dir: str | Path, cfg: TrainConfig | None = None, resume: bool = False,
          max_epochs_this_call: int | None = None, log=print) -> dict:
    """Trains (or, with resume, continues) the run in run_dir. Returns the final state."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if resume:
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{run_dir}: nothing to resume (no config.json)")
        saved = TrainConfig(**json.loads(cfg_path.read_text()))
        if cfg is not None:  # a resumed run may be extended, nothing else changes
            saved.epochs = cfg.epochs
        cfg = saved
    elif cfg is None:
        raise ValueError("a new run needs a TrainConfig")
    elif (run_dir / "ckpt").exists():
        raise FileExistsError(f"{run_dir}: a run is already there; use --resume or another --out")
    if cfg.loss not in LOSSES:
        raise TrainConfigError(f"unknown loss {cfg.loss!r} (one of {', '.join(LOSSES)})")
    model_cfg = replace(MirnetConfig.from_dict(cfg.model), exposure_target=cfg.exposure_target)
    if not 0.0 <= cfg.context_jitter < 1.0:
        raise TrainConfigError(f"--context-jitter {cfg.context_jitter:g}: give a fraction in [0, 1)")
    if cfg.context_jitter and not model_cfg.frame_context:
        raise TrainConfigError("--context-jitter jitters the frame context's thumbnail (give --frame-context)")
    if cfg.teacher_photos < 0 or (cfg.teacher_photos and not (cfg.teacher and cfg.scenes)):
        raise TrainConfigError(f"--teacher-photos {cfg.teacher_photos}: give a count of photos, with --teacher "
                               f"and --scenes (the teacher labels photos of --scenes)")
    if cfg.teacher_photos and not resume:
        available = len(split_photos(find_photos(cfg.scenes), cfg.val_percent)[0])
        if cfg.teacher_photos > available:
            raise TrainConfigError(f"--teacher-photos {cfg.teacher_photos}: {cfg.scenes} has {available} "
                                   f"training photos")
    for name, size in (("--crop", cfg.crop), ("--scene-crop", cfg.scene_crop)):
        if size % model_cfg.size_multiple:
            raise TrainConfigError(f"{name} {size}: the {model_cfg.design} network's input must be a multiple of "
                             f"{model_cfg.size_multiple}")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg_path, asdict(cfg))

    split = resolve_split(cfg.data, "train")
    train_pairs, val_pairs = split_train_val(find_pairs(split, tuple(cfg.exclude)), cfg.val_percent)
    log(f"data: {split} -> {len(train_pairs)} training pairs, {len(val_pairs)} validation pairs")
    train_low, train_high = load_pairs(train_pairs)
    val_low, val_high = load_pairs(val_pairs)
    if cfg.teacher:
        train_high = teacher_targets(cfg.teacher, cfg.teacher_weight, train_low, train_high)
        log(f"targets: {cfg.teacher_weight:g} x the output of {cfg.teacher} + {1 - cfg.teacher_weight:g} x the ground truth")
    if cfg.teacher_photos:
        photo_low, photo_high = teacher_photo_pairs(cfg.teacher, cfg.scenes, cfg.teacher_photos, cfg.val_percent)
        train_low, train_high = train_low + photo_low, train_high + photo_high
        log(f"teacher photos: {cfg.teacher_photos} photos of {cfg.scenes} join the training frames, "
            f"the teacher's output as their target")
    if cfg.exposure_target:
        log(f"exposure: every low-light frame normalised to mean {cfg.exposure_target}")
        train_low = [normalize_exposure(im, cfg.exposure_target) for im in train_low]
        val_low = [normalize_exposure(im, cfg.exposure_target) for im in val_low]
    val_low, val_high = center_crop(val_low, VAL_CROP), center_crop(val_high, VAL_CROP)
    train_thumbs = None
    if model_cfg.frame_context:
        size = (model_cfg.thumbnail_width, model_cfg.thumbnail_height)
        log(f"frame context: attention computed on a {size[0]}x{size[1]} thumbnail of each frame")
        if cfg.context_jitter:
            log(f"context jitter: each crop's thumbnail from a window keeping {1 - cfg.context_jitter:.0%} "
                f"to all of each side of its frame")
        train_thumbs = [(fine_thumbnail if cfg.context_jitter else thumbnail)(im, *size) for im in train_low]

    scene_raw = scene_prepared = scene_thumbs = None
    if cfg.scenes:
        if not model_cfg.frame_context:
            raise ValueError("--scenes trains a frame-context network (give --frame-context)")
        scene_paths, _ = split_photos(find_photos(cfg.scenes), cfg.val_percent)
        scene_raw = [read_rgb(p) for p in scene_paths]
        scene_prepared = [normalize_exposure(im, cfg.exposure_target) for im in scene_raw]
        scene_thumbs = [thumbnail(im, model_cfg.thumbnail_width, model_cfg.thumbnail_height) for im in scene_prepared]
        log(f"scenes: {cfg.scenes} -> {len(scene_raw)} unpaired training photos, "
            f"naturalness loss x {cfg.scene_weight}")

    model = build_mirnet(model_cfg)
    # What the loss is computed on: the network itself, or (frame context) the context model
    # on the frame's thumbnail feeding the tile model, both on `model`'s layers.
    trained = build_frame_context_trainer(model_cfg, model, cfg.crop) if model_cfg.frame_context else model
    # The real-photo crops may be larger: the same layers at their size.
    scene_size = cfg.scene_crop or cfg.crop
    scene_trained = (build_frame_context_trainer(model_cfg, model, scene_size)
                     if cfg.scenes and scene_size != cfg.crop else trained)
    if cfg.init_weights and not resume:
        model.load_weights(cfg.init_weights)
        log(f"initialized from {cfg.init_weights}")
    val_tiling = load_tiling() if cfg.val_tiled else None
    log(f"model: {model_cfg} -> {count_params(model)} parameters, "
        f"{macs_per_pixel(model_cfg):.0f} MACs per pixel")
    optimizer = keras.optimizers.Adam(learning_rate=cfg.lr)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(ckpt, str(run_dir / "ckpt"), max_to_keep=2)
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if resume and state_path.is_file() else {}
    if resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        log(f"resumed from {manager.latest_checkpoint} (epoch {int(epoch_var.numpy())} done)")
    rows = [r for r in _read_log(run_dir / "log.csv") if r["epoch"] <= int(epoch_var.numpy())]
    schedule = LearningRate(cfg, state)
    best = state.get("best_val_psnr", -math.inf)
    enhancer = FloatEnhancer(model, 0, model_cfg)  # frames are normalised above already

    m = cfg.loss_margin
    loss_fn = LOSSES[cfg.loss]

    @tf.function(jit_compile=True, reduce_retracing=True)
    def train_step(lo, hi, scene_in=None, scene_raw=None):
        with tf.GradientTape() as tape:
            out = trained(lo, training=True)
            if m:  # only the centre of a tile is kept on the board
                out, hi = out[:, m:-m, m:-m], hi[:, m:-m, m:-m]
            loss = loss_fn(hi, out)
            natural = tf.constant(0.0)
            if scene_in is not None:
                natural = scene_loss(scene_raw, scene_trained(scene_in, training=True), order=cfg.order_weight)
            total = loss + cfg.scene_weight * natural
        grads = tape.gradient(total, trained.trainable_variables)
        optimizer.apply_gradients(zip(grads, trained.trainable_variables))
        mse = tf.reduce_mean(tf.square(out - hi), axis=[1, 2, 3])
        return loss, tf.reduce_mean(10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-10)) / math.log(10.0)), natural

    steps = cfg.steps_per_epoch or max(1, len(train_pairs) // cfg.batch)
    first = int(epoch_var.numpy())
    last = cfg.epochs if max_epochs_this_call is None else min(cfg.epochs, first + max_epochs_this_call)
    for epoch in range(first, last):
        t0 = time.monotonic()
        lr = schedule.for_epoch(epoch)
        optimizer.learning_rate.assign(lr)
        seed = cfg.seed * 100003 + epoch
        data = (context_crop_dataset(train_low, train_high, train_thumbs, cfg.crop, cfg.batch, steps, seed,
                                     cfg.context_jitter, (model_cfg.thumbnail_width, model_cfg.thumbnail_height))
                if train_thumbs else crop_dataset(train_low, train_high, cfg.crop, cfg.batch, steps, seed))
        if scene_raw is not None:
            data = tf.data.Dataset.zip((data, scene_crop_dataset(scene_raw, scene_prepared, scene_thumbs, scene_size,
                                                                 cfg.batch, steps, seed)))
        bar = ProgressBar(steps, f"epoch {epoch + 1}/{cfg.epochs}")
        losses, scores, naturals = [], [], []
        for k, batch in enumerate(data):
            (lo, hi), scenes = (batch if scene_raw is not None else (batch, (None, None)))
            loss, score, natural = train_step(lo, hi, *scenes)
            losses.append(float(loss))
            scores.append(float(score))
            naturals.append(float(natural))
            bar.update(k + 1, f"loss {np.mean(losses):.4f} psnr {np.mean(scores):.2f}"
                       + (f" scene {np.mean(naturals):.4f}" if scene_raw is not None else ""))
        val_loss, val_psnr = evaluate_images(enhancer, val_low, val_high, val_tiling) if val_low else (math.nan, math.nan)
        bar.close(f"loss {np.mean(losses):.4f} val psnr {val_psnr:.2f} lr {lr:.2e}")
        schedule.after_epoch(val_psnr)
        epoch_var.assign(epoch + 1)
        if val_psnr > best:
            best = val_psnr
            atomic_save_weights(model, run_dir / "best.weights.h5")
            atomic_write_text(run_dir / "best.json", model_cfg.to_json() + "\n")
        rows.append({"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)),
                     "train_psnr": float(np.mean(scores)),
                     "scene_loss": float(np.mean(naturals)) if scene_raw is not None else math.nan, "val_loss": val_loss,
                     "val_psnr": val_psnr, "seconds": time.monotonic() - t0})
        # The checkpoint is complete on disk before the state that points past it is written.
        manager.save(checkpoint_number=epoch + 1)
        state = {**schedule.state(), "epoch": epoch + 1, "best_val_psnr": best}
        atomic_write_json(state_path, state)
        _write_log(run_dir / "log.csv", rows)
        _plot(run_dir, rows)
    return state
