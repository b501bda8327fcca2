"""`tinymirnet quantize` end to end on synthetic LoL-layout data and a small network: a broken
budget stops it with a message naming the budget before anything is written; a passing run
writes the .tflite, the C array and headers (which read back to the same bytes) and reports."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinymirnet.model.network import MirnetConfig, build_mirnet
from tinymirnet.model.tiling import load_tiling
from tinymirnet.quantize import budget
from tinymirnet.quantize.export import parse_c_array
from tinymirnet.host.cli import main as main_cli
from tinymirnet.model.paths import INT8_NAME
from tinymirnet.quantize.pipeline import run_quantize

# Whole quantize runs (pruning, QAT, conversion, TFLM checks): minutes each.
pytestmark = pytest.mark.slow


def save_untrained(cfg: MirnetConfig, path: Path) -> Path:
    """Random weights of `cfg` saved with its config (x.weights.h5 beside x.json). An untrained
    network's attention squeezes (ReLU after a global pool) can be dead on every calibration
    tile, which the converter check rightly refuses; a small positive bias keeps them alive, as
    training does."""
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    model = build_mirnet(cfg)
    for layer in model.layers:
        if layer.name.endswith("_squeeze"):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, bias + 0.05])
    model.save_weights(str(path))
    path.with_name(path.name.split(".")[0] + ".json").write_text(cfg.to_json())
    return path


@pytest.fixture
def small_weights(tmp_path):
    # Trained (here: initialised) for the pipeline's exposure normalisation, as quantize checks.
    return save_untrained(MirnetConfig(channels=4, exposure_target=load_tiling().exposure_target),
                          tmp_path / "small.weights.h5")


def test_quantize_pipeline_budget_failure_then_success(lol_root, small_weights, tmp_path, monkeypatch):
    """The tiny MIRNet (unstructured pruning, one model per tile) at the tiling it shipped with,
    20 + 2x4: at the board network's 32 + 2x8 its arena would not fit the budget."""
    from dataclasses import replace
    from tinymirnet.quantize import pipeline
    tiling = replace(load_tiling(), tile=20, halo=4)
    monkeypatch.setattr(pipeline, "load_tiling", lambda *args, **kwargs: tiling)
    out, fw = tmp_path / "artifacts", tmp_path / "firmware"
    (fw / "tinymirnet").mkdir(parents=True)
    (fw / "tinymirnet" / "model_settings.h").write_text("// previous export\n")
    quiet = dict(finetune_steps=3, finetune_batch=4, out_dir=out, firmware_dir=fw, log=lambda *_: None)

    with monkeypatch.context() as small_budget:
        small_budget.setattr(budget, "ARENA_BUDGET", 10_000)
        with pytest.raises(budget.BudgetError, match="TFLM arena budget broken: .* > 10,000 B"):
            run_quantize(lol_root, small_weights, **quiet)
    assert not out.exists()
    assert (fw / "tinymirnet" / "model_settings.h").read_text() == "// previous export\n"

    report = run_quantize(lol_root, small_weights, **quiet)
    flatbuffer = (out / INT8_NAME).read_bytes()
    assert parse_c_array((fw / "model_data.cc").read_text()) == flatbuffer
    assert report["export"]["sha256"] in (fw / "tinymirnet" / "model_settings.h").read_text()
    assert report["tflm"]["reference_check"]["bit_exact"]
    assert report["tflm"]["library"].startswith("Chirale_TensorFlowLite 2.0.0")
    assert report["tflm"]["board_tflm_vs_reference"]["tiles"] == report["tflm"]["reference_check"]["tiles"]
    assert report["sparsity"]["overall"] > 0.1  # 3 steps reach part of the 50% schedule
    assert set(report["quality"]) >= {"tiny_mirnet_float_tiled", "tiny_mirnet_pruned_tiled", "tiny_mirnet_int8_tiled"}
    assert report["ram"]["total"] + report["ram"]["headroom"] == budget.RAM_BYTES
    saved = json.loads((out / "quantize_report.json").read_text())
    assert saved["export"]["sha256"] == report["export"]["sha256"]
    assert "Projected device time" in (out / "quantize_report.md").read_text()
    assert saved["pruning_finetune"] == {"steps": 3, "batch": 4, "crop": tiling.model_input,
                                         "lr": 1e-3, "schedule": "cosine", "target": "ground truth", "loss": "mse", "loss_margin": tiling.halo,
                                         "scene_weight": 0.0}
    assert all(np.isfinite(v["psnr_gt_mean"]) for k, v in saved["quality"].items() if isinstance(v, dict))
    assert not list(out.glob("*.tmp")) and not list(fw.glob(".*tmp*"))


def test_quantize_refuses_weights_trained_for_another_exposure(lol_root, small_weights, tmp_path):
    """Weights trained without (or with another) exposure normalisation would be fed frames
    they never saw on the board: refused before anything is written, naming both values."""
    other = json.loads(small_weights.with_name("small.json").read_text())
    other["exposure_target"] = 0 if load_tiling().exposure_target else 100
    small_weights.with_name("small.json").write_text(json.dumps(other))
    out = tmp_path / "artifacts"
    with pytest.raises(ValueError, match=r"trained with exposure_target \d+, but model/tiling.json sets"):
        run_quantize(lol_root, small_weights, out_dir=out, firmware_dir=tmp_path, log=lambda *_: None)
    assert not out.exists()


@pytest.fixture
def varied_lol_root(tmp_path):
    """A LoL layout whose scenes differ as a whole (brightness, colour, a bright patch), so
    that thumbnails, unlike tiles of the shared fixture's near-identical scenes, vary."""
    from PIL import Image
    from conftest import darken, scene
    rng = np.random.default_rng(7)
    for split, n in (("our485", 24), ("eval15", 2)):
        for d in ("low", "high"):
            (tmp_path / "LOL" / split / d).mkdir(parents=True)
        for i in range(1, n + 1):
            high = scene(rng, 64, 96).astype(np.float64) * rng.uniform(0.3, 1.2, 3)
            y, x = rng.integers(0, 40), rng.integers(0, 70)
            high[y:y + 24, x:x + 26] = rng.uniform(0, 255, 3)
            high = np.clip(high, 0, 255).astype(np.uint8)
            Image.fromarray(darken(high)).save(tmp_path / "LOL" / split / "low" / f"{i}.png")
            Image.fromarray(high).save(tmp_path / "LOL" / split / "high" / f"{i}.png")
    return tmp_path / "LOL"


def test_quantize_a_frame_context_network_measures_both_models_and_exports_both(
        varied_lol_root, small_weights, tmp_path, monkeypatch):
    """A frame-context network becomes two int8 models (context on the thumbnail, tile model
    with the context as a second input), both bit-exact on TFLM, budgeted together, scored on
    the ladder, and exported for the firmware: two C arrays, the union of their ops, the
    context settings; the firmware core compiles against the export, and `tinymirnet export`
    writes the same files again from the artifacts folder. The tiny MIRNet design at 32 + 2x8
    tiles, where its arena fits (at the board network's 40 + 2x8 it would not); every command
    below reads that tiling."""
    from dataclasses import replace
    from tinymirnet.model import tiling as tiling_module
    from tinymirnet.model.network import context_size
    from tinymirnet.quantize import pipeline
    pinned = replace(load_tiling(), tile=32, halo=8)
    for module in (tiling_module, pipeline):
        monkeypatch.setattr(module, "load_tiling", lambda *args, **kwargs: pinned)
    from tinymirnet.model.paths import CONTEXT_INT8_NAME
    from tinymirnet.quantize.tflm import TflmModel
    cfg_path = small_weights.with_name("small.json")
    cfg = MirnetConfig.load(cfg_path)
    framed = MirnetConfig(**{**json.loads(cfg.to_json()), "thumbnail_width": 32, "thumbnail_height": 24})
    cfg_path.write_text(framed.to_json())
    # The context model pools thumbnails of the synthetic scenes, all alike: livelier squeezes.
    model = build_mirnet(framed)
    model.load_weights(str(small_weights))
    for layer in model.layers:
        if layer.name.endswith(("_squeeze", "_down")):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, bias + 0.5])
    model.save_weights(str(small_weights))
    out, fw = tmp_path / "artifacts", tmp_path / "firmware"
    (fw / "tinymirnet").mkdir(parents=True)
    (fw / "tinymirnet" / "model_settings.h").write_text("// previous export\n")
    report = run_quantize(varied_lol_root, small_weights, finetune_steps=3, finetune_batch=4, qat_steps=2,
                          out_dir=out, firmware_dir=fw, log=lambda *_: None)
    fc = report["frame_context"]
    # The quantization-aware fine-tune ran: its float row is on the ladder, the zeros held.
    assert report["qat_finetune"]["steps"] == 2 and "tiny_mirnet_pruned_qat_tiled" in report["quality"]
    assert report["qat_finetune"]["target"] == "ground truth"  # no --distill
    assert fc["thumbnail"] == [32, 24] and fc["context_values"] == context_size(framed)
    assert fc["context_reference_check"]["bit_exact"] and report["tflm"]["reference_check"]["bit_exact"]
    tile_model = TflmModel((out / INT8_NAME).read_bytes())
    context_model = TflmModel((out / CONTEXT_INT8_NAME).read_bytes())
    assert tile_model.context_shape == (1, 1, 1, context_size(framed))
    assert context_model.input_shape == (1, 24, 32, 3) and context_model.context_shape is None
    assert report["tflm"]["arena_bytes"] == max(fc["context_arena_bytes"], fc["tile_model_arena_bytes"])
    assert report["compute"]["macs_context_model_per_frame"] > 0
    assert np.isfinite(report["quality"]["tiny_mirnet_int8_tiled"]["psnr"])
    # The firmware export: both arrays read back, the settings say what the models are.
    from tinymirnet.quantize.export import CONTEXT_ARRAY_NAME
    source = (fw / "model_data.cc").read_text()
    assert parse_c_array(source) == (out / INT8_NAME).read_bytes()
    assert parse_c_array(source, CONTEXT_ARRAY_NAME) == (out / CONTEXT_INT8_NAME).read_bytes()
    settings = (fw / "tinymirnet" / "model_settings.h").read_text()
    for line in ("kFrameContext = true", "kThumbnailWidth = 32", "kThumbnailHeight = 24",
                 f"kContextValues = {context_size(framed)}", report["export"]["context_sha256"],
                 f"kTileImageInput = {tile_model.image_index}", f"kTileContextInput = {tile_model.context_index}"):
        assert line in settings, line
    ops = sorted(set(report["tflm"]["ops"]) | set(fc["context_model_ops"]))
    assert f"kModelOpCount = {len(ops)};" in settings and all(f'"{op}"' in settings for op in ops)
    assert report["ram"]["rows"]["frame context (int8 thumbnail + context vector)"] == 32 * 24 * 3 + context_size(framed)
    root = Path(__file__).resolve().parents[1] / "firmware" / "lib" / "tinymirnet_core"
    for unit in sorted(root.glob("*.cc")) + [fw / "model_data.cc"]:
        subprocess.run(["g++", "-std=c++14", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", f"-I{root}",
                        f"-I{fw}", str(unit)], check=True)
    again = tmp_path / "again"
    assert main_cli(["export", str(out), "--firmware-dir", str(again)]) == 0
    assert all((again / f).read_bytes() == (fw / f).read_bytes() for f in report["export"]["files"])
    assert json.loads((out / "quantize_report.json").read_text())["export"]["firmware"] == "exported (tinymirnet export)"
    assert report["sparsity"]["overall"] > 0.1
    assert "## Frame context (two models)" in (out / "quantize_report.md").read_text()
    # `tinymirnet eval --int8` finds the context model beside the tile model: same figure.
    from tinymirnet.host.cli import main
    eval_json = tmp_path / "eval.json"
    assert main(["eval", "--data", str(varied_lol_root), "--weights", str(small_weights),
                 "--int8", str(out / INT8_NAME), "--report", str(eval_json)]) == 0
    scored = json.loads(eval_json.read_text())["tiny_mirnet_int8_tiled"]["psnr"]
    assert scored == pytest.approx(report["quality"]["tiny_mirnet_int8_tiled"]["psnr"], abs=1e-9)
    (out / CONTEXT_INT8_NAME).unlink()
    with pytest.raises(SystemExit, match="context model is missing or unreadable"):
        main(["eval", "--data", str(varied_lol_root), "--weights", str(small_weights),
              "--int8", str(out / INT8_NAME), "--report", str(eval_json)])


def test_quantize_prunes_the_board_network_by_whole_filters(lol_root, tmp_path):
    """The half_resolution network: structured pruning (fine-tuned towards the unpruned
    network's outputs) makes the int8 model narrower and smaller than the unpruned one,
    calibration mixes in real photos, and the pruned config is written beside the pruned
    weights."""
    from conftest import scene
    from PIL import Image
    from tinymirnet.model.network import MirnetConfig as Cfg
    weights = save_untrained(Cfg(design="half_resolution", channels=8, depth=2, thumbnail_width=32,
                                 thumbnail_height=24, exposure_target=load_tiling().exposure_target),
                             tmp_path / "board.weights.h5")
    photos = tmp_path / "scenes"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for k in range(12):
        Image.fromarray(scene(rng, 64, 80)).save(photos / f"{k}.jpg")
    out = tmp_path / "artifacts"
    report = run_quantize(lol_root, weights, sparsity=0.25, finetune_steps=2, finetune_batch=4, qat_steps=2, out_dir=out,
                          firmware_dir=None, scenes=photos, scene_weight=0.3, finetune_distill=True,
                          log=lambda *_: None)
    pruning = report["structured_pruning"]
    assert pruning["widths_before"] == [8, 8, 8] and pruning["widths_after"] == [6, 6, 6]
    assert pruning["params_after"] < pruning["params_before"]
    assert report["sizes"]["flatbuffer_bytes"] < report["sizes"]["dense_flatbuffer_bytes"]
    assert report["calibration"]["scenes"] == str(photos)
    assert report["pruning_finetune"]["scene_weight"] == 0.3
    assert report["pruning_finetune"]["target"] == "unpruned model (distillation)"
    assert report["qat_finetune"]["target"] == "unpruned model (distillation)"  # QAT distils too
    assert Cfg.load(out / "tiny_mirnet_pruned.json").half_stream_widths() == [6, 6, 6]
    assert "Structured: the 25% of filters" in (out / "quantize_report.md").read_text()

    # --pruned: the pruned, fine-tuned weights converted again without pruning or fine-tuning.
    # At the same tiling that is the same int8 model, byte for byte; at another tile size only
    # the tile model's input changes, and the records of the pruning come along.
    from dataclasses import replace
    from tinymirnet.quantize import pipeline
    from tinymirnet.quantize.tflm import TflmModel
    again = run_quantize(lol_root, weights, pruned_weights=out / "tiny_mirnet_pruned.weights.h5", out_dir=tmp_path / "again",
                         firmware_dir=None, scenes=photos, log=lambda *_: None)
    assert (tmp_path / "again" / INT8_NAME).read_bytes() == (out / INT8_NAME).read_bytes()
    assert again["structured_pruning"]["widths_after"] == [6, 6, 6] and "from" in again["structured_pruning"]
    wider = replace(load_tiling(), tile=load_tiling().tile + 8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "load_tiling", lambda *args, **kwargs: wider)
        run_quantize(lol_root, weights, pruned_weights=out / "tiny_mirnet_pruned.weights.h5", out_dir=tmp_path / "wider",
                     firmware_dir=None, scenes=photos, log=lambda *_: None)
    assert TflmModel((tmp_path / "wider" / INT8_NAME).read_bytes()).input_shape[1] == wider.model_input
    other = save_untrained(Cfg(design="half_resolution", channels=8, depth=3, thumbnail_width=32,
                               thumbnail_height=24, exposure_target=load_tiling().exposure_target),
                           tmp_path / "other.weights.h5")
    with pytest.raises(pipeline.PrunedMismatch, match="depth"):
        run_quantize(lol_root, weights, pruned_weights=other, out_dir=tmp_path / "never", firmware_dir=None,
                     log=lambda *_: None)
    assert not (tmp_path / "never").exists()


def test_quantize_the_tiny_mirnet_thins_its_daus_and_checks_its_graph(lol_root, tmp_path):
    """The shipped design ("mrb_half_resolution"): structured pruning thins every DAU, the
    report records the MIRNet parts found in the int8 graphs (three streams, spatial attention,
    SKFF), and `tinymirnet export` of the folder carries the tiling it was converted for."""
    from tinymirnet.host.cli import main
    from tinymirnet.model.network import MirnetConfig as Cfg
    weights = save_untrained(Cfg(design="mrb_half_resolution", channels=8, thumbnail_width=32, thumbnail_height=24,
                                 exposure_target=load_tiling().exposure_target), tmp_path / "mirnet.weights.h5")
    out = tmp_path / "artifacts"
    report = run_quantize(lol_root, weights, sparsity=0.25, finetune_steps=2, finetune_batch=4, out_dir=out,
                          firmware_dir=None, log=lambda *_: None)
    pruning = report["structured_pruning"]
    assert pruning["fraction_removed"] == 0.25
    assert pruning["widths_before"] == [8] * 6 and pruning["widths_after"] == [6] * 6
    assert report["sizes"]["flatbuffer_bytes"] < report["sizes"]["dense_flatbuffer_bytes"]
    size = load_tiling().model_input
    parts = report["mirnet_parts"]["tile"]
    assert parts["stream_resolutions"] == [size // 2, size // 4, size // 8]
    assert all(parts["spatial_attention"][s] == 2 for s in parts["stream_resolutions"])
    firmware = tmp_path / "fw"
    assert main(["export", str(out), "--firmware-dir", str(firmware)]) == 0
    settings = (firmware / "tinymirnet" / "model_settings.h").read_text()
    assert f"kHalo = {load_tiling().halo};" in settings and f"kModelInputSize = {size};" in settings
