import numpy as np
import pytest
from PIL import Image

from tinymirnet.model.data import (DataError, find_pairs, load_pair, random_crop_pair, read_rgb,
                                   resolve_split, split_train_val)
from conftest import make_lol


def test_reads_lol_layout_with_mixed_formats(tmp_path):
    make_lol(tmp_path, "our485", 4, low_ext=".webp", high_ext=".jpg")
    pairs = find_pairs(resolve_split(tmp_path, "train"))
    assert [p.stem for p in pairs] == ["1", "2", "3", "4"]
    low, high = load_pair(pairs[0])
    assert low.shape == high.shape == (64, 96, 3) and low.dtype == np.uint8


def test_missing_partner_names_the_file(tmp_path):
    make_lol(tmp_path, "our485", 3)
    (tmp_path / "our485" / "high" / "2.png").unlink()
    with pytest.raises(DataError, match=r"low/2\.png: no partner"):
        find_pairs(tmp_path / "our485")


def test_size_mismatch_names_the_file(tmp_path):
    make_lol(tmp_path, "our485", 2)
    Image.new("RGB", (10, 10)).save(tmp_path / "our485" / "high" / "1.png")
    pair = find_pairs(tmp_path / "our485")[0]
    with pytest.raises(DataError, match=r"high/1\.png: size 10x10 differs"):
        load_pair(pair)


def test_corrupt_file_is_a_clear_error(tmp_path):
    make_lol(tmp_path, "our485", 2)
    (tmp_path / "our485" / "low" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"low/1\.png: not a readable image"):
        load_pair(find_pairs(tmp_path / "our485")[0])


def test_exclude_and_deterministic_split(tmp_path):
    make_lol(tmp_path, "our485", 40, h=8, w=8)
    pairs = find_pairs(tmp_path / "our485", exclude=("3", "7"))
    assert {"3", "7"}.isdisjoint(p.stem for p in pairs) and len(pairs) == 38
    train, val = split_train_val(pairs, val_percent=20)
    train2, val2 = split_train_val(list(reversed(pairs)), val_percent=20)
    assert {p.stem for p in val} == {p.stem for p in val2} and val
    assert not {p.stem for p in train} & {p.stem for p in val}


def test_resolve_split_prefers_the_named_lol_folders(tmp_path):
    make_lol(tmp_path, "eval15", 1, h=8, w=8)
    assert resolve_split(tmp_path, "eval").name == "eval15"
    with pytest.raises(DataError, match="no LoL train split"):
        resolve_split(tmp_path, "train")


def test_read_rgb_handles_gray_rgba_16bit_and_exif(tmp_path):
    Image.fromarray(np.full((4, 6), 128, np.uint8)).save(tmp_path / "g.png")
    assert read_rgb(tmp_path / "g.png").shape == (4, 6, 3)
    Image.new("RGBA", (6, 4), (10, 20, 30, 0)).save(tmp_path / "a.png")
    assert read_rgb(tmp_path / "a.png")[0, 0].tolist() == [10, 20, 30]
    Image.fromarray(np.full((4, 6), 65535, np.uint16)).save(tmp_path / "w.png")
    assert read_rgb(tmp_path / "w.png").max() == 255
    im = Image.new("RGB", (6, 4))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert read_rgb(tmp_path / "r.jpg").shape == (6, 4, 3)


def test_random_crop_keeps_pairs_aligned():
    rng = np.random.default_rng(0)
    low = np.arange(20 * 30 * 3, dtype=np.uint32).reshape(20, 30, 3)
    for _ in range(10):
        lo, hi = random_crop_pair(rng, low, low.copy(), 8)
        assert lo.shape == (8, 8, 3) and np.array_equal(lo, hi)


def test_context_jitter_takes_each_crops_thumbnail_from_a_window_of_its_frame():
    """With a jitter, a crop's thumbnail is the board's box-mean thumbnail of a random window
    of the frame (cut from a 4x finer thumbnail), so no training frame's context repeats."""
    from tinymirnet.model.data import context_crop_dataset, fine_thumbnail, jittered_thumbnail
    from tinymirnet.model.thumbnail import thumbnail
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    fine = fine_thumbnail(frame, 32, 24)
    assert fine.shape == (96, 128, 3)
    whole = jittered_thumbnail(rng, fine, 32, 24, 1e-9)
    assert np.array_equal(whole, thumbnail(fine, 32, 24))
    # the whole frame's box means again, but for the fine thumbnail's rounding and its boxes
    assert np.abs(whole.astype(int) - thumbnail(frame, 32, 24)).max() <= 40
    assert np.abs(whole.astype(int) - thumbnail(frame, 32, 24)).mean() < 8
    seen = {jittered_thumbnail(rng, fine, 32, 24, 0.2).tobytes() for _ in range(8)}
    assert len(seen) == 8 and all(len(s) == 24 * 32 * 3 for s in seen)
    # A window keeps at least 80 % of each side: a frame of two halves, dark left and bright
    # right, keeps both halves in every jittered thumbnail.
    halves = np.zeros_like(fine)
    halves[:, fine.shape[1] // 2:] = 200
    for _ in range(20):
        th = jittered_thumbnail(rng, halves, 32, 24, 0.2)
        assert th[:, 0].max() == 0 and th[:, -1].min() == 200
    low = rng.integers(0, 60, (64, 80, 3), dtype=np.uint8)
    batches = context_crop_dataset([low], [low], [fine_thumbnail(low, 32, 24)], 32, 2, 1, 0, 0.2, (32, 24))
    assert fine_thumbnail(low, 32, 24).shape == (64, 80, 3)  # a frame smaller than 128x96: itself
    (th, lo), hi = next(iter(batches))
    assert th.shape == (2, 24, 32, 3) and lo.shape == hi.shape == (2, 32, 32, 3)
