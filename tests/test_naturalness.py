"""The naturalness metrics (model/naturalness.py) and `tinymirnet naturalness`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tinymirnet.model import naturalness as nat


def photo(seed=0, h=48, w=64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 4 + c * 30) % 256 for c in range(3)], -1) * (0.3 + 0.7 * y[..., None] / h)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def test_identity_is_perfectly_natural():
    img = photo()
    m = nat.image_metrics(img, img)
    assert m == {"highlights_darkened_pct": 0.0, "loe_pct": 0.0, "loe_broken_ties_pct": 0.0,
                 "loe_reversed_pct": 0.0, "chromaticity_shift": 0.0}


def test_lightness_order_error_splits_into_broken_ties_and_reversed_pairs():
    # 64 px wide already: the downscale keeps every pixel. Input: 8 levels, 8 pixels each.
    levels = np.repeat(np.arange(8, dtype=np.uint8) * 10 + 20, 8)[None, :64]
    inp = np.repeat(levels[..., None], 3, -1)
    n = 64 * 64
    # Each level spread into 8 distinct values, order between levels kept: only ties broken,
    # each tied pair counted once (one of its two orders changes).
    spread = inp + np.tile(np.arange(8, dtype=np.uint8), 8)[None, :, None]
    loe, ties, reversed_pairs = nat.lightness_order_parts(inp, spread)
    assert ties == pytest.approx(100 * 8 * (8 * 7 / 2) / n) and reversed_pairs == 0 and loe == ties
    # Levels inverted, ties kept: only reversed pairs, each counted in both orders.
    loe, ties, reversed_pairs = nat.lightness_order_parts(inp, 255 - inp)
    assert ties == 0 and reversed_pairs == pytest.approx(100 * 2 * (8 * 7 / 2) * 64 / n) and loe == reversed_pairs
    img = photo()
    parts = nat.lightness_order_parts(img, nat.gamma(img))
    assert parts[0] == pytest.approx(parts[1] + parts[2]) and parts[0] == nat.lightness_order_error(img, nat.gamma(img))


def test_inverting_brightness_breaks_order_and_dimming_darkens_highlights():
    img = photo()
    grey = np.repeat(img.max(-1, keepdims=True), 3, -1)
    assert nat.lightness_order_error(grey, 255 - grey) > 40
    assert nat.highlights_darkened(img, img // 2) == 100.0


def test_definitions_on_hand_made_pixels():
    inp = np.array([[[200, 100, 50], [160, 160, 160], [10, 10, 10]]], np.uint8)
    out = np.array([[[170, 100, 50], [150, 150, 150], [20, 20, 20]]], np.uint8)
    # highlights: L >= 0.6 -> the first two pixels (200/255, 160/255); 170 < 0.9 * 200 darkened,
    # 150 >= 0.9 * 160 = 144 not.
    assert nat.highlights_darkened(inp, out) == pytest.approx(50.0)
    # chromaticity: pixels with R+G+B >= 0.45 -> the first two; grey stays grey.
    r = np.array([200, 100, 50]) / 350
    r2 = np.array([170, 100, 50]) / 320
    assert nat.chromaticity_shift(inp, out) == pytest.approx(100 * np.abs(r - r2).sum() / 2)
    # no highlight at all: no figure rather than a misleading 0
    assert nat.highlights_darkened(inp // 4, inp // 4) is None


def test_monotone_curves_keep_highlights():
    img = photo()
    assert nat.highlights_darkened(img, nat.gamma(img)) == 0.0
    assert nat.lightness_order_error(img, nat.gamma(img)) < 5


def test_cli_writes_report_sheet_and_markdown(tmp_path, small_float_weights, capsys):
    from tinymirnet.host.cli import main
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(photo(i)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not a photo")
    report = tmp_path / "out" / "nat.json"
    assert main(["naturalness", str(folder), "--report", str(report), "--weights", str(small_float_weights)]) == 0
    data = json.loads(report.read_text())
    assert set(data["mean"]) == {"network_float", "gamma_1/2.2", "equalize"}
    assert len(data["per_image"]["gamma_1/2.2"]) == 2
    assert data["mean"]["gamma_1/2.2"]["highlights_darkened_pct"] == 0.0
    sheet = Image.open(report.with_suffix(".png"))
    assert sheet.size == (160 * 4, nat.LABEL_HEIGHT + 160 * 2)
    assert "| gamma_1/2.2 |" in report.with_suffix(".md").read_text()


def test_markdown_says_when_every_method_ran_on_the_board_frame():
    from tinymirnet.host.naturalness_commands import markdown
    row = {"highlights_darkened_pct": 0.0, "loe_pct": 3.0, "loe_broken_ties_pct": 2.0, "loe_reversed_pct": 1.0,
           "chromaticity_shift": 1.0}
    report = {"what": "metrics", "images": ["a.png"], "mean": {"gamma_1/2.2": row}}
    assert "YUV422" not in markdown(report)
    assert "| gamma_1/2.2 | 0.00 | 3.00 | 2.00 + 1.00 | 1.00 |" in markdown(report)
    report["board"] = {"port": "sim", "firmware": "fw", "frame": [160, 120], "pixel_format": "YUV422"}
    text = markdown(report)
    assert "cover 160x120" in text and "YUV422" in text
    assert text.index("YUV422") < text.index("| method |")


def test_cli_missing_folder_is_one_error_line(tmp_path, capsys):
    from tinymirnet.host.cli import main
    assert main(["naturalness", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_cli_scores_the_int8_network_against_its_float_twin(tmp_path, capsys):
    """With --int8: each photo fitted to the board's frame, the int8 pipeline (host TFLM)
    against the float network on the same tiling, per image and as mean and min."""
    from tinymirnet.host.cli import main
    from tinymirnet.model.paths import DEFAULT_INT8_MODEL as DEFAULT_MODEL
    from tinymirnet.model.samples import SAMPLE_PHOTOS
    report = tmp_path / "nat.json"
    assert main(["naturalness", "--samples", "--int8", str(DEFAULT_MODEL), "--report", str(report)]) == 0
    agreement = json.loads(report.read_text())["int8_vs_float"]
    assert agreement["frame"] == [160, 120] and len(agreement["images"]) == len(SAMPLE_PHOTOS)
    values = [r["psnr"] for r in agreement["images"]]
    assert agreement["psnr_min"] == min(values) and 20 < agreement["psnr_min"] <= agreement["psnr_mean"] < 60
    assert "int8 against float (same tiling, 160x120 frames)" in capsys.readouterr().out
    assert "int8 against float on the same tiling" in report.with_suffix(".md").read_text()


def test_cli_keeps_only_the_dark_photos_of_the_validation_split(tmp_path, small_float_weights):
    """--split val and --darker-than pick the held-out low-light photos of a mixed folder (SICE
    train/); the report says which photos it scored."""
    from tinymirnet.host.cli import main
    from tinymirnet.model.data import split_photos
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(40):
        img = photo(i, 24, 32)
        Image.fromarray(img if i % 2 else 255 - (img // 4)).save(folder / f"{i}.png")  # odd: dark
    val = split_photos(sorted(folder.iterdir()))[1]
    dark_val = [p.name for p in val if np.asarray(Image.open(p)).mean() < 120]
    assert 0 < len(dark_val) < len(val)
    report = tmp_path / "nat.json"
    assert main(["naturalness", str(folder), "--split", "val", "--darker-than", "120", "--report", str(report),
                 "--weights", str(small_float_weights)]) == 0
    data = json.loads(report.read_text())
    assert sorted(data["images"]) == sorted(dark_val)
    assert data["selection"]["split"] == "val" and data["selection"]["darker_than"] == 120
    assert "validation split, mean below 120" in report.with_suffix(".md").read_text()


def test_cli_nothing_left_after_the_selection_is_one_error_line(tmp_path, capsys):
    from tinymirnet.host.cli import main
    folder = tmp_path / "bright"
    folder.mkdir()
    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(folder / "0.png")
    report = tmp_path / "nat.json"
    assert main(["naturalness", str(folder), "--darker-than", "50", "--report", str(report)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--darker-than 50" in err[0]
    assert not report.exists()
    assert main(["naturalness", str(folder), "--darker-than", "0"]) == 1
