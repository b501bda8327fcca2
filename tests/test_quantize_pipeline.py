"""`tinymirnet quantize` end to end on synthetic LoL-layout data and a small network: a broken
budget stops it with a message naming the budget before anything is written; a passing run
writes the .tflite, the C array and headers (which read back to the same bytes) and reports."""
import json

import numpy as np
import pytest

from tinymirnet.model.network import MirnetConfig, build_mirnet
from tinymirnet.model.tiling import load_tiling
from tinymirnet.quantize import budget
from tinymirnet.quantize.export import parse_c_array
from tinymirnet.quantize.pipeline import INT8_NAME, run_quantize


@pytest.fixture
def small_weights(tmp_path):
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    # Trained (here: initialised) for the pipeline's exposure normalisation, as quantize checks.
    cfg = MirnetConfig(channels=4, exposure_target=load_tiling().exposure_target)
    path = tmp_path / "small.weights.h5"
    model = build_mirnet(cfg)
    # An untrained network's 2-channel attention squeezes (ReLU after a global pool) can be
    # dead on every calibration tile, which the converter check rightly refuses; a small
    # positive bias keeps them alive, as training does.
    for layer in model.layers:
        if layer.name.endswith("_squeeze"):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, bias + 0.05])
    model.save_weights(str(path))
    (tmp_path / "small.json").write_text(cfg.to_json())
    return path


def test_quantize_pipeline_budget_failure_then_success(lol_root, small_weights, tmp_path, monkeypatch):
    out, fw = tmp_path / "artifacts", tmp_path / "firmware"
    fw.mkdir()
    (fw / "model_settings.h").write_text("// previous export\n")
    quiet = dict(finetune_steps=3, finetune_batch=4, out_dir=out, firmware_dir=fw, log=lambda *_: None)

    monkeypatch.setattr(budget, "ARENA_BUDGET", 10_000)
    with pytest.raises(budget.BudgetError, match="TFLM arena budget broken: .* > 10,000 B"):
        run_quantize(lol_root, small_weights, **quiet)
    assert not out.exists()
    assert (fw / "model_settings.h").read_text() == "// previous export\n"
    monkeypatch.undo()

    report = run_quantize(lol_root, small_weights, **quiet)
    flatbuffer = (out / INT8_NAME).read_bytes()
    assert parse_c_array((fw / "model_data.cc").read_text()) == flatbuffer
    assert report["export"]["sha256"] in (fw / "model_settings.h").read_text()
    assert report["tflm"]["reference_check"]["bit_exact"]
    assert report["sparsity"]["overall"] > 0.1  # 3 steps reach part of the 50% schedule
    assert set(report["quality"]) >= {"tiny_mirnet_float_tiled", "tiny_mirnet_pruned_tiled", "tiny_mirnet_int8_tiled"}
    assert report["ram"]["total"] + report["ram"]["headroom"] == budget.RAM_BYTES
    saved = json.loads((out / "quantize_report.json").read_text())
    assert saved["export"]["sha256"] == report["export"]["sha256"]
    assert "Projected device time" in (out / "quantize_report.md").read_text()
    assert saved["pruning_finetune"] == {"steps": 3, "batch": 4, "crop": load_tiling().model_input,
                                         "lr": 1e-3, "loss": "mse", "loss_margin": load_tiling().halo}
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
