import csv
import json

import numpy as np

from tinymirnet.model.network import MirnetConfig
from tinymirnet.model.train import TrainConfig, train
from dataclasses import asdict


def small_config(data) -> TrainConfig:
    return TrainConfig(data=str(data), epochs=2, batch=2, crop=32, steps_per_epoch=2, lr=1e-3,
                       val_percent=30, model=asdict(MirnetConfig(channels=4)))


def best_weights(run_dir):
    from tinymirnet.model.inference import load_model
    model, cfg = load_model(run_dir / "best.weights.h5")
    assert cfg == MirnetConfig(channels=4)
    return model.get_weights()


def test_two_step_training_killed_and_resumed(lol_root, tmp_path):
    run = tmp_path / "run"
    # First call stops after one epoch, as a run killed during epoch 2 would have left it.
    train(run, small_config(lol_root), max_epochs_this_call=1, log=lambda *_: None)
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 1
    # A second start without --resume must refuse to overwrite the run.
    try:
        train(run, small_config(lol_root), log=lambda *_: None)
        raise AssertionError("a new run over an existing one was accepted")
    except FileExistsError:
        pass
    messages = []
    train(run, None, resume=True, log=messages.append)
    assert any("resumed from" in m and "epoch 1 done" in m for m in messages)
    with (run / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    assert (run / "curves.png").stat().st_size > 1000
    assert all(np.isfinite(w).all() for w in best_weights(run))


def test_cosine_schedule_warms_up_then_decays_to_min_lr():
    from tinymirnet.model.train import LearningRate
    cfg = TrainConfig(data="x", epochs=20, lr=1e-3, min_lr=1e-5, warmup_epochs=3, schedule="cosine")
    rate = LearningRate(cfg, {})
    lrs = [rate.for_epoch(e) for e in range(cfg.epochs)]
    assert lrs[0] < lrs[1] < lrs[2] < lrs[3] == 1e-3
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    assert abs(lrs[-1] - (1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + np.cos(np.pi * 16 / 17)))) < 1e-12


def test_plateau_schedule_halves_after_patience_and_keeps_state_over_resume():
    from tinymirnet.model.train import LearningRate
    cfg = TrainConfig(data="x", lr=1e-3, min_lr=3e-4, schedule="plateau", plateau_patience=2,
                      plateau_factor=0.5)
    rate = LearningRate(cfg, {})
    seen = []
    for val in [10.0, 11.0, 11.0, 10.5, 12.0, 11.0, 11.0, 11.0, 11.0]:
        seen.append(rate.for_epoch(len(seen)))
        rate.after_epoch(val)
    # two epochs without a better score -> halve; then again, floored at min_lr
    assert seen == [1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 3e-4, 3e-4]
    resumed = LearningRate(cfg, json.loads(json.dumps(rate.state())))
    assert (resumed.lr, resumed.best, resumed.wait) == (rate.lr, rate.best, rate.wait)


def test_mse_loss_is_recorded_and_trained_with(lol_root, tmp_path):
    from dataclasses import replace
    import pytest
    run = tmp_path / "mse"
    train(run, replace(small_config(lol_root), epochs=1, loss="mse"), log=lambda *_: None)
    assert json.loads((run / "config.json").read_text())["loss"] == "mse"
    with (run / "log.csv").open() as f:
        row = next(csv.DictReader(f))
    # The logged training loss is the mean squared error: 10 log10(1 / loss) is close to the
    # logged training PSNR (a Charbonnier loss would read several dB lower).
    assert abs(10 * np.log10(1 / float(row["train_loss"])) - float(row["train_psnr"])) < 1.5
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        train(tmp_path / "l3", replace(small_config(lol_root), loss="l3"), log=lambda *_: None)
    assert not (tmp_path / "l3" / "ckpt").exists()


def test_frame_context_training_through_the_cli_and_the_float_pipeline(lol_root, tmp_path):
    """`train --frame-context 32x24` trains the context model feeding the tile model; the
    thumbnail size is saved with the weights, and the float pipeline then computes each frame's
    context itself, whole frame or tile by tile (no context given: a clear error)."""
    import pytest
    from tinymirnet.host.cli import main
    from tinymirnet.model.inference import FloatEnhancer
    run = tmp_path / "framed"
    assert main(["train", "--data", str(lol_root), "--out", str(run), "--epochs", "1", "--steps", "2",
                 "--batch", "2", "--crop", "32", "--channels", "4", "--val-percent", "30",
                 "--frame-context", "32x24", "--loss-margin", "4", "--val-tiled", "--context-jitter", "0.2",
                 "--loss", "mse_ssim"]) == 0
    assert json.loads((run / "config.json").read_text())["context_jitter"] == 0.2
    saved = json.loads((run / "best.json").read_text())
    assert (saved["thumbnail_width"], saved["thumbnail_height"]) == (32, 24)
    enhancer = FloatEnhancer.load(run / "best.weights.h5")
    assert enhancer.frame_context
    low = np.random.default_rng(0).integers(0, 60, (48, 64, 3), dtype=np.uint8)
    full, tiled = enhancer.enhance(low), enhancer.enhance(low, 24, 4)
    assert full.shape == tiled.shape == (48, 64, 3) and np.isfinite(tiled).all()
    with pytest.raises(ValueError, match="needs the context of the frame"):
        enhancer(np.zeros((1, 32, 32, 3), np.float32))
    assert main(["train", "--data", str(lol_root), "--frame-context", "32"]) == 1  # one error line
    # The jitter moves the thumbnail's window: without a frame context, one line and no run.
    assert main(["train", "--data", str(lol_root), "--out", str(tmp_path / "plain"), "--context-jitter", "0.2"]) == 1
    assert not (tmp_path / "plain").exists()
    # The tiny MIRNet's input is a multiple of 8 (three 2x down-samplings): another crop is one line.
    assert main(["train", "--data", str(lol_root), "--out", str(tmp_path / "odd"), "--crop", "28"]) == 1
    assert not (tmp_path / "odd").exists()


def test_real_photo_crops_of_their_own_size_train_the_order_term(lol_root, tmp_path):
    """`--scenes` with `--scene-crop` larger than `--crop`: the naturalness loss (with its
    lightness-order term) runs on the larger crops through the same layers, and the run's
    config records both."""
    import csv
    import math
    from PIL import Image
    from tinymirnet.host.cli import main
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(4)
    for k in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photos / f"{k}.png")
    run = tmp_path / "scenes"
    assert main(["train", "--data", str(lol_root), "--out", str(run), "--epochs", "1", "--steps", "2",
                 "--batch", "2", "--crop", "24", "--scene-crop", "36", "--design", "half_resolution",
                 "--channels", "4", "--val-percent", "30", "--frame-context", "32x24", "--exposure", "120",
                 "--scenes", str(photos), "--scene-weight", "0.5", "--order-weight", "7"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["scene_crop"], saved["order_weight"], saved["scene_weight"]) == (36, 7.0, 0.5)
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert rows and math.isfinite(float(rows[0]["scene_loss"])) and float(rows[0]["scene_loss"]) > 0


def test_teacher_targets_blend_the_teachers_output_with_the_ground_truth(small_float_weights, lol_root, tmp_path):
    """Distillation (`--teacher`): each training target is w x the teacher's float pipeline on the
    raw frame + (1 - w) x the ground truth, in 8 bits; the run's config records the teacher."""
    import pytest
    from tinymirnet.host.cli import main
    from tinymirnet.model.data import to_uint8
    from tinymirnet.model.inference import FloatEnhancer
    from tinymirnet.model.train import teacher_targets
    rng = np.random.default_rng(3)
    lows = [rng.integers(0, 60, (32, 40, 3), dtype=np.uint8) for _ in range(2)]
    highs = [rng.integers(0, 256, (32, 40, 3), dtype=np.uint8) for _ in range(2)]
    # the teacher's network and guards, without the host's lightness-order step
    taught = [to_uint8(FloatEnhancer.load(small_float_weights, keep_order=False).enhance(lo)) for lo in lows]
    assert all(np.array_equal(t, e) for t, e in zip(teacher_targets(small_float_weights, 1.0, lows, highs), taught))
    half = teacher_targets(small_float_weights, 0.5, lows, highs)
    expect = np.round(0.5 * taught[0].astype(np.float64) + 0.5 * highs[0])
    assert np.abs(half[0].astype(np.int64) - expect).max() <= 1 and not np.array_equal(half[0], taught[0])
    with pytest.raises(ValueError, match="outside"):
        teacher_targets(small_float_weights, 0.0, lows, highs)
    run = tmp_path / "distilled"
    assert main(["train", "--data", str(lol_root), "--out", str(run), "--epochs", "1", "--steps", "2",
                 "--batch", "2", "--crop", "24", "--design", "half_resolution", "--channels", "4",
                 "--val-percent", "30", "--frame-context", "32x24", "--exposure", "120",
                 "--teacher", str(small_float_weights), "--teacher-weight", "0.5"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["teacher"] == str(small_float_weights) and saved["teacher_weight"] == 0.5
    for bad in (["--teacher", str(tmp_path / "none.weights.h5")],
                ["--teacher", str(small_float_weights), "--teacher-weight", "1.5"]):
        assert main(["train", "--data", str(lol_root), "--out", str(tmp_path / "refused"), *bad]) == 1
        assert not (tmp_path / "refused").exists()  # refused before anything is written


def test_teacher_photos_join_the_training_frames_with_the_teachers_output(small_float_weights, lol_root, tmp_path):
    """`--teacher-photos N`: N photos of --scenes' training split, evenly spaced, become training
    pairs whose target is the teacher's output; without --scenes, or asking for more photos than
    the split holds, one line and nothing written."""
    from PIL import Image
    from tinymirnet.host.cli import main
    from tinymirnet.model.data import find_photos, read_rgb, split_photos, to_uint8
    from tinymirnet.model.inference import FloatEnhancer
    from tinymirnet.model.train import teacher_photo_pairs
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for k in range(6):
        Image.fromarray(rng.integers(0, 120, (32, 40, 3), dtype=np.uint8)).save(photos / f"{k}.png")
    train_split, _ = split_photos(find_photos(photos), 30)
    lows, targets = teacher_photo_pairs(small_float_weights, photos, 2, 30)
    teacher = FloatEnhancer.load(small_float_weights, keep_order=False)
    assert [lo.shape for lo in lows] == [(32, 40, 3)] * 2
    assert np.array_equal(lows[0], read_rgb(train_split[0]))
    assert np.array_equal(lows[1], read_rgb(train_split[round(len(train_split) / 2)]))
    assert all(np.array_equal(t, to_uint8(teacher.enhance(lo))) for lo, t in zip(lows, targets))
    run = tmp_path / "photo_distilled"
    common = ["train", "--data", str(lol_root), "--epochs", "1", "--steps", "2", "--batch", "2", "--crop", "24",
              "--design", "half_resolution", "--channels", "4", "--val-percent", "30", "--frame-context", "32x24",
              "--exposure", "120", "--teacher", str(small_float_weights)]
    assert main([*common, "--out", str(run), "--scenes", str(photos), "--scene-weight", "0.1",
                 "--teacher-photos", "2"]) == 0
    assert json.loads((run / "config.json").read_text())["teacher_photos"] == 2
    for bad in (["--teacher-photos", "2"], ["--scenes", str(photos), "--teacher-photos", str(len(train_split) + 1)],
                ["--scenes", str(photos), "--teacher-photos", "-1"]):
        assert main([*common, "--out", str(tmp_path / "refused"), *bad]) == 1
        assert not (tmp_path / "refused").exists()
