import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinymirnet.host.cli import main
from tinymirnet.model.network import MirnetConfig, build_mirnet


@pytest.fixture
def tiny_weights(tmp_path):
    import tf_keras as keras
    keras.utils.set_random_seed(0)  # the same untrained network on every run
    cfg = MirnetConfig(channels=4)
    model = build_mirnet(cfg)
    path = tmp_path / "tiny.weights.h5"
    model.save_weights(str(path))
    (tmp_path / "tiny.json").write_text(cfg.to_json())
    return path


def test_eval_writes_report_keyed_by_method_and_grid(lol_root, tiny_weights, tmp_path, capsys):
    report = tmp_path / "out" / "eval.json"
    assert main(["eval", "--data", str(lol_root), "--weights", str(tiny_weights), "--report", str(report)]) == 0
    r = json.loads(report.read_text())
    for method in ["input", "autocontrast", "histogram_equalization", "gamma",
                   "tiny_mirnet_float_full", "tiny_mirnet_float_tiled"]:
        assert set(r[method]) >= {"psnr", "ssim", "images"} and len(r[method]["images"]) == 3
        assert 0 < r[method]["psnr"] < 60 and 0 < r[method]["psnr_gt_mean"] < 100
        assert r[method]["psnr_gt_mean"] == pytest.approx(
            np.mean([i["psnr_gt_mean"] for i in r[method]["images"]]))
        assert r[method]["brightness_log_ratio_rms"] >= abs(r[method]["brightness_log_ratio_mean"])
    # The diagnostics of the one method whose output is known (the dark input itself), recomputed
    # here from the files: the input, far too dark, gains a lot from the GT-mean brightness match.
    # (No inequality between PSNR and GT-mean PSNR holds for any output: an untrained network's
    # near-black frame, multiplied up to the reference's brightness, can score lower.)
    for img in r["input"]["images"]:
        low = np.asarray(Image.open(lol_root / "eval15" / "low" / f"{img['name']}.png"), np.float64) / 255
        high = np.asarray(Image.open(lol_root / "eval15" / "high" / f"{img['name']}.png"), np.float64) / 255
        luma = np.array([0.299, 0.587, 0.114])
        gain = (high @ luma).mean() / (low @ luma).mean()
        mse = np.mean((np.clip(low * gain, 0, 1) - high) ** 2)
        assert img["psnr_gt_mean"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-6)
        assert img["brightness_log_ratio"] == pytest.approx(-np.log(gain), abs=1e-6)
    assert r["input"]["brightness_log_ratio_mean"] < -0.5
    assert r["input"]["psnr_gt_mean"] > r["input"]["psnr"] + 5.0
    assert r["meta"]["params"] > 0 and "tiling_loss_db" in r["meta"]
    assert Image.open(report.with_suffix(".png")).size[0] > 400
    assert "autocontrast" in capsys.readouterr().out


def test_enhance_any_size_and_format_and_reports_bad_files(tmp_path, tiny_weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((23, 37), 40, np.uint8)).save(src / "gray.png")
    Image.new("RGBA", (30, 17), (5, 6, 7, 128)).save(src / "rgba.png")
    Image.fromarray(np.full((9, 11), 3000, np.uint16)).save(src / "deep.png")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    files = sorted(src.iterdir())
    before = {p: p.read_bytes() for p in files}
    code = main(["enhance", *map(str, files), "--out", str(out), "--weights", str(tiny_weights)])
    assert code == 1  # one file failed, the others were still processed
    err = capsys.readouterr().err
    assert "broken.jpg: not a readable image" in err and err.count("\n") == 1
    assert Image.open(out / "gray_enhanced.png").size == (37, 23)
    assert Image.open(out / "rgba_enhanced.png").size == (30, 17)
    assert Image.open(out / "deep_enhanced.png").size == (11, 9)
    assert all(p.read_bytes() == before[p] for p in files)  # inputs untouched


def test_enhance_never_overwrites_its_input(tmp_path, tiny_weights):
    img = tmp_path / "x_enhanced.png"
    Image.new("RGB", (8, 8), (10, 10, 10)).save(img)
    original = img.read_bytes()
    assert main(["enhance", str(img), "--out", str(tmp_path), "--weights", str(tiny_weights)]) == 0
    assert img.read_bytes() == original
    assert (tmp_path / "x_enhanced_enhanced.png").exists()


def test_tile_means_are_set_per_tile_and_channel():
    from tinymirnet.quantize.tiling_study import set_tile_means, tile_means
    rng = np.random.default_rng(0)
    img = rng.uniform(0.1, 0.5, (45, 50, 3))  # border tiles are partial
    target = rng.uniform(0.1, 0.5, (45, 50, 3))
    out = set_tile_means(img, target, 20)
    assert np.allclose(tile_means(out, 20), tile_means(target, 20), atol=2e-3)
    # inside a tile only the level changes: the ratio to the input is one constant per channel
    ratio = out[:20, :20] / img[:20, :20]
    assert np.allclose(ratio, ratio[0, 0])


def test_tiling_study_report(lol_root, tiny_weights, tmp_path):
    from tinymirnet.host.cli import main
    artifacts = Path(__file__).resolve().parents[1] / "quantize" / "artifacts"
    # The study is about attention pooled per tile: a frame-context tile model is refused.
    with pytest.raises(SystemExit, match="is a frame-context tile model"):
        main(["tiling-study", "--data", str(lol_root), "--weights", str(tiny_weights),
              "--int8", str(artifacts / "tiny_mirnet_int8.tflite"), "--report", str(tmp_path / "no.json")])
    per_tile_int8 = artifacts / "per_tile_attention" / "tiny_mirnet_int8.tflite"
    # (quantized for its own tiling, 20 + 2 x 4)
    assert main(["tiling-study", "--data", str(lol_root), "--weights", str(tiny_weights), "--tile", "20",
                 "--halo", "4", "--int8", str(per_tile_int8), "--report", str(tmp_path / "study.json")]) == 0
    report = json.loads((tmp_path / "study.json").read_text())
    m = report["meta"]
    assert m["images"] == 3
    assert abs(m["tiling_loss_db"] - (report["float_full"]["psnr"] - report["float_tiled"]["psnr"])) < 1e-9
    assert abs(m["recovered_by_tile_means_oracle_db"] + m["left_inside_tiles_db"] - m["tiling_loss_db"]) < 1e-9
    assert m["model_input_thumbnail_width"] == m["tile"] + 2 * m["halo"]
    assert abs(m["recovered_by_model_input_thumbnail_curve_db"]
               - (report["tiled_harmonized_model_input_thumbnail_curve"]["psnr"] - report["float_tiled"]["psnr"])) < 1e-9
    assert "Tiling loss" in (tmp_path / "study.md").read_text()
    # the board's own pipeline: int8 tiles on TFLM, and the same with the thumbnail curve
    assert abs(m["int8_recovered_by_model_input_thumbnail_curve_db"]
               - (report["int8_tiled_harmonized_model_input_thumbnail_curve"]["psnr"]
                  - report["int8_tiled"]["psnr"])) < 1e-9
    assert report["int8_tiled"]["psnr"] > 5.0  # a real enhancement, not an empty frame


def test_tiling_study_on_the_validation_split(lol_root, tiny_weights, tmp_path):
    """Decisions about tiling fixes are taken on the validation split, never on eval15."""
    from tinymirnet.host.cli import main
    from tinymirnet.model.data import find_pairs, split_train_val
    _, val = split_train_val(find_pairs(lol_root / "our485"), 50.0)
    assert 0 < len(val) < 12
    assert main(["tiling-study", "--data", str(lol_root), "--weights", str(tiny_weights),
                 "--split", "val", "--val-percent", "50", "--report", str(tmp_path / "val.json")]) == 0
    report = json.loads((tmp_path / "val.json").read_text())
    assert report["meta"]["split"] == "val"
    assert report["meta"]["images"] == len(val)
    assert [i["name"] for i in report["float_full"]["images"]] == [p.stem for p in val]
    assert "our485" in report["meta"]["dataset"]


@pytest.mark.parametrize("frame_format", ["yuv422", "rgb565"])
def test_eval_frame_format_scores_the_frames_a_board_holds(lol_root, tiny_weights, tmp_path, frame_format):
    """--frame-format: every method sees each low-light frame at that format's precision; the
    input method's output is then exactly that frame, as the board's pixel conversion gives it."""
    from tinymirnet.host.protocol import (PIXEL_FORMAT_RGB565, PIXEL_FORMAT_YUV422, frame_to_rgb888,
                                          rgb888_to_frame)
    fmt = {"yuv422": PIXEL_FORMAT_YUV422, "rgb565": PIXEL_FORMAT_RGB565}[frame_format]
    report = tmp_path / "eval_frames.json"
    assert main(["eval", "--data", str(lol_root), "--weights", str(tiny_weights), "--report", str(report),
                 "--frame-format", frame_format]) == 0
    r = json.loads(report.read_text())
    assert frame_format.upper() in r["meta"]["frames"]
    for img in r["input"]["images"]:
        low = np.asarray(Image.open(lol_root / "eval15" / "low" / f"{img['name']}.png"))
        h, w = low.shape[:2]
        if w % 2:  # the host pairs an odd last column with itself
            low = np.concatenate([low, low[:, -1:]], axis=1)
        board = frame_to_rgb888(rgb888_to_frame(low, fmt), fmt, low.shape[1], h)[:, :w]
        high = np.asarray(Image.open(lol_root / "eval15" / "high" / f"{img['name']}.png"), np.float64) / 255
        mse = np.mean((board / 255.0 - high) ** 2)
        assert img["psnr"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)


@pytest.mark.parametrize("command", ["tiling-study", "eval"])
@pytest.mark.parametrize("bad", ["missing.tflite", "weights.h5"])
def test_a_bad_int8_model_is_one_error_line(lol_root, tiny_weights, tmp_path, command, bad, capsys):
    from tinymirnet.host.cli import main
    path = tmp_path / bad
    if bad.endswith(".h5"):
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    assert main([command, "--data", str(lol_root), "--weights", str(tiny_weights),
                 "--int8", str(path), "--report", str(tmp_path / "report.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --int8 {path}"), err
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("argv", [
    ["eval", "--data", "/nonexistent"],
    ["eval", "--data", "{tmp}"],
    ["enhance", "{img}", "--weights", "{tmp}/missing.h5", "--out", "{tmp}/o"],
    ["enhance", "{img}", "--weights", "{tmp}/lonely.weights.h5", "--out", "{tmp}/o"],
    ["enhance", "{img}", "--port", "sim", "--int8", "{img}"],
    ["enhance", "--sample", "/some/photo.png"],
    ["enhance", "{img}", "--out", "{img}"],
    ["train", "--out", "{tmp}/run"],
    ["capture"],
    ["no-such-command"],
], ids=lambda a: " ".join(a[:2]))
def test_ordinary_mistakes_are_one_error_line_before_any_model_loads(argv, tmp_path, capsys, monkeypatch):
    """Issue "A user's product": one `error:` line, exit code 1, no traceback, nothing written."""
    from PIL import Image
    from tinymirnet.host.cli import main
    import tinymirnet.model.inference as inference
    img = tmp_path / "photo.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(img)
    (tmp_path / "lonely.weights.h5").write_bytes(b"weights without their network config")
    # None of these may get as far as building a network.
    monkeypatch.setattr(inference, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    args = [a.format(tmp=tmp_path, img=img) for a in argv]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "o").exists()


def test_version_and_defaults_in_help(capsys):
    from tinymirnet.host.cli import main
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("tinymirnet ")
    with pytest.raises(SystemExit):
        main(["enhance", "--help"])
    assert "(default: enhanced)" in capsys.readouterr().out


@pytest.fixture
def frame_context_weights(tmp_path):
    """An untrained network of the shipped kind (half resolution, attention from a 32x24
    thumbnail of the frame, exposure normalisation), small."""
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    cfg = MirnetConfig(design="half_resolution", channels=8, exposure_target=120,
                       thumbnail_width=32, thumbnail_height=24)
    path = tmp_path / "fc.weights.h5"
    build_mirnet(cfg).save_weights(str(path))
    (tmp_path / "fc.json").write_text(cfg.to_json())
    return path


def test_large_photos_run_in_tiles_in_bounded_memory(frame_context_weights, capsys):
    """Issue "Natural on real scenes": a 12 MP photo on the host path within 1.5 GB. Above
    LARGE_PHOTO_PIXELS the photo stays 8-bit and only one batch of tiles is float at a time: the
    arrays it needs (numpy's, traced) stay under 20 bytes per pixel, where a float32 copy of the
    frame alone is 12 and the old path's float64 rounding of the whole frame 24. The result is
    the float pipeline's, tile by tile, rounded to 8 bits."""
    import tracemalloc
    from tinymirnet.host.model_commands import LARGE_PHOTO_PIXELS, PHOTO_HALO, PHOTO_TILE, enhance_photo
    from tinymirnet.model.data import to_uint8
    from tinymirnet.model.inference import FloatEnhancer
    enhancer = FloatEnhancer.load(frame_context_weights)
    h, w = 1000, 1200
    assert h * w > LARGE_PHOTO_PIXELS
    photo = np.random.default_rng(0).integers(0, 50, (h, w, 3)).astype(np.uint8)
    enhance_photo(enhancer, photo[:400, :400], "warm-up")  # traces the network's functions
    tracemalloc.start()
    try:
        out = enhance_photo(enhancer, photo, "photo.jpg")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.dtype == np.uint8 and out.shape == photo.shape
    assert peak < 20 * h * w, f"{peak / (h * w):.1f} bytes per pixel"
    tiles = -(-h // PHOTO_TILE) * -(-w // PHOTO_TILE)
    assert f"photo.jpg: {tiles}/{tiles} tiles" in capsys.readouterr().err
    crop = np.s_[:2 * PHOTO_TILE, :2 * PHOTO_TILE]  # the float path, on a part: the same bytes
    small = photo[crop]
    assert np.array_equal(enhancer.enhance_u8(small, PHOTO_TILE, PHOTO_HALO),
                          to_uint8(enhancer.enhance(small, PHOTO_TILE, PHOTO_HALO)))
