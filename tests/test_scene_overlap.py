"""The seen / other-brightness / new-scene groups of `tinymirnet eval` (model/scene_overlap.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinymirnet.model.data import Pair
from tinymirnet.model.scene_overlap import SAME_SCENE, TrainingScenes


def _scene(seed: int, h: int = 40, w: int = 60, gain: float = 1.0) -> np.ndarray:
    """A smooth scene of its own (random frequencies and phases per seed), times `gain`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    f, p = rng.uniform(2, 9, (3, 2)), rng.uniform(0, 6.3, (3, 2))
    base = np.stack([0.45 + 0.3 * np.sin(f[c, 0] * x + p[c, 0]) * np.cos(f[c, 1] * y + p[c, 1])
                     for c in range(3)], axis=-1)
    return np.clip(np.round(base * gain * 255), 0, 255).astype(np.uint8)


def _write_split(root: Path, name: str, highs: dict[str, np.ndarray]) -> Path:
    for sub in ("low", "high"):
        (root / name / sub).mkdir(parents=True, exist_ok=True)
    for stem, high in highs.items():
        Image.fromarray(high).save(root / name / "high" / f"{stem}.png")
        Image.fromarray((high // 6).astype(np.uint8)).save(root / name / "low" / f"{stem}.png")
    return root / name


@pytest.fixture
def training(tmp_path):
    folder = _write_split(tmp_path / "LOL", "our485", {str(i): _scene(i) for i in range(1, 11)})
    return [Pair(str(i), folder / "low" / f"{i}.png", folder / "high" / f"{i}.png") for i in range(1, 11)]


def test_a_reshot_at_the_same_brightness_is_seen_another_brightness_or_scene_is_new(training):
    scenes = TrainingScenes.from_pairs(training)
    rng = np.random.default_rng(9)
    # A re-shot of scene 3: shifted by a pixel, with sensor noise, as bright as its training target.
    reshot = np.clip(np.roll(_scene(3), 1, axis=1) + rng.normal(0, 2, (40, 60, 3)), 0, 255).astype(np.uint8)
    m = scenes.match(reshot)
    assert m["training_stem"] == "3" and m["correlation"] > 0.97 and m["group"] == "seen"
    assert abs(m["brightness_ln_ratio"]) < 0.01
    # The same scene a third brighter: the same scene (the correlation ignores brightness), at
    # another brightness.
    brighter = scenes.match(_scene(3, gain=4 / 3))
    assert brighter["training_stem"] == "3" and brighter["correlation"] > 0.99
    assert brighter["brightness_ln_ratio"] == pytest.approx(np.log(4 / 3), abs=0.02)
    assert brighter["group"] == "other_brightness"
    # A scene of its own: nothing in the training set correlates enough.
    other = scenes.match(_scene(42))
    assert other["correlation"] < SAME_SCENE and other["group"] == "new_scene"
    # A training target itself: correlation 1, seen.
    assert scenes.match(_scene(5)) == {"training_stem": "5", "correlation": pytest.approx(1.0),
                                       "brightness_ln_ratio": pytest.approx(0.0, abs=1e-9), "group": "seen"}


def test_no_training_pairs_is_an_error():
    with pytest.raises(ValueError, match="no training pairs"):
        TrainingScenes.from_pairs([])


@pytest.fixture
def small_weights(tmp_path):
    import tf_keras as keras
    from tinymirnet.model.network import MirnetConfig, build_mirnet
    keras.utils.set_random_seed(0)
    cfg = MirnetConfig(channels=4)
    path = tmp_path / "w" / "tiny.weights.h5"
    path.parent.mkdir()
    build_mirnet(cfg).save_weights(str(path))
    (path.parent / "tiny.json").write_text(cfg.to_json())
    return path


def test_eval_scores_seen_and_new_frames_apart(training, small_weights, tmp_path, capsys):
    from tinymirnet.host.cli import main
    root = tmp_path / "LOL"
    _write_split(root, "eval15", {"a": _scene(2), "b": _scene(2, gain=1.3), "c": _scene(77)})
    report = tmp_path / "eval.json"
    assert main(["eval", "--data", str(root), "--weights", str(small_weights), "--report", str(report)]) == 0
    r = json.loads(report.read_text())
    overlap = r["meta"]["scene_overlap"]
    assert [(i["name"], i["group"]) for i in overlap["images"]] == [("a", "seen"), ("b", "other_brightness"),
                                                                     ("c", "new_scene")]
    assert overlap["images"][0]["training_stem"] == "2"
    assert (overlap["seen"], overlap["other_brightness"], overlap["new_scene"]) == (1, 1, 1)
    for method in ("gamma", "tiny_mirnet_float_full"):
        images = {i["name"]: i for i in r[method]["images"]}
        groups = r[method]["by_scene"]
        assert groups["seen"]["images"] == 1 and groups["seen"]["psnr"] == pytest.approx(images["a"]["psnr"])
        assert groups["other_brightness"]["images"] == groups["new_scene"]["images"] == 1
        assert groups["other_brightness"]["psnr_gt_mean"] == pytest.approx(images["b"]["psnr_gt_mean"])
        assert groups["new_scene"]["psnr"] == pytest.approx(images["c"]["psnr"])
    out = capsys.readouterr().out
    assert "seen (1)" in out and "known scene, other brightness (1)" in out and "new scene (1)" in out

    # The validation split is matched against the rest of the training split only: a frame is never
    # its own training scene.
    report_val = tmp_path / "eval_val.json"
    assert main(["eval", "--data", str(root), "--weights", str(small_weights), "--split", "val",
                 "--report", str(report_val)]) == 0
    r = json.loads(report_val.read_text())
    val_stems = {i["name"] for i in r["gamma"]["images"]}
    assert val_stems and not val_stems & {i["training_stem"] for i in r["meta"]["scene_overlap"]["images"]}


def test_eval_without_a_training_split_says_so(small_weights, tmp_path, capsys):
    from tinymirnet.host.cli import main
    folder = _write_split(tmp_path, "pairs", {"x": _scene(1), "y": _scene(2)})
    report = tmp_path / "eval.json"
    assert main(["eval", "--data", str(folder), "--weights", str(small_weights), "--report", str(report)]) == 0
    r = json.loads(report.read_text())
    assert "scene_overlap" not in r["meta"] and "by_scene" not in r["gamma"]
    assert "groups are not scored" in capsys.readouterr().out
