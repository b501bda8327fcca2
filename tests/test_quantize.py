import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinymirnet.model.network import MirnetConfig, build_mirnet
from tinymirnet.model.tiling import load_tiling
from tinymirnet.quantize.budget import BudgetError, Measured, check_budgets, firmware_buffers, ram_table
from tinymirnet.quantize.convert import random_weights_int8
from tinymirnet.quantize.flatbuffer import degenerate_tensors, op_names
from tinymirnet.quantize.export import (RESOLVER_METHODS, ExportInfo, model_data_files, parse_c_array,
                                        write_firmware_files)
from tinymirnet.quantize.pipeline import verify_bit_exact
from tinymirnet.quantize.tflm import TflmModel, parse_arena_total

ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
             "-fno-exceptions", "-fno-rtti"]


def mirnet_tiling():
    """The tiling the tiny MIRNet (MirnetConfig()'s default design) was shipped with."""
    from dataclasses import replace
    return replace(load_tiling(), tile=20, halo=4)


@pytest.fixture(scope="module")
def int8_model():
    """The tiny MIRNet (random weights) converted at its tile size: the converter, TFLM and
    export checks below run on its 17 ops (the shipped network's are tested in
    tests/test_board_network.py and tests/test_quantize_pipeline.py)."""
    return random_weights_int8(MirnetConfig(), mirnet_tiling().model_input)


@pytest.fixture(scope="module")
def export_info(int8_model):
    tflm = TflmModel(int8_model)
    tflm.invoke(np.zeros(tflm.input_shape, np.int8))
    return ExportInfo(int8_model, mirnet_tiling(), tflm.input_quant, tflm.output_quant,
                      tflm.arena_used_bytes(), op_names(int8_model))


def test_int8_io_and_every_op_has_a_tflm_registration(int8_model, export_info):
    import tensorflow as tf
    it = tf.lite.Interpreter(model_content=int8_model)
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert it.get_output_details()[0]["dtype"] == np.int8
    assert set(export_info.ops) <= set(RESOLVER_METHODS)
    assert "CONV_2D" in export_info.ops
    # Full input range calibrated: every 8-bit pixel gets its own int8 code.
    assert export_info.input_quant.scale == pytest.approx(1 / 255, rel=1e-3)
    assert export_info.input_quant.zero_point == -128
    assert 50_000 < export_info.arena_measured < 200_000


def test_tflm_equals_reference_kernels_bit_for_bit(int8_model):
    """The converter's check: the tflite_micro runtime agrees with TFLite's reference kernels.
    The board's TFLM (Chirale 2.0.0) does not on this network: its MEAN truncates."""
    rng = np.random.default_rng(0)
    size = mirnet_tiling().model_input
    tiles = [rng.integers(0, 80, (size, size, 3), dtype=np.uint8) for _ in range(4)]
    result = verify_bit_exact(int8_model, tiles)
    assert result["bit_exact"], result
    board = verify_bit_exact(int8_model, tiles, runtime="board")
    assert board["tflm"].startswith("Chirale_TensorFlowLite 2.0.0")
    assert not board["bit_exact"] and board["max_abs_diff"] <= 40, board


def test_board_tflm_equals_reference_kernels_without_mean():
    """Conv, PReLU-free activations, ADD, MUL, average pooling, bilinear resize: where the board's
    kernels implement TFLite's arithmetic they agree with the reference bit for bit."""
    import tf_keras as keras
    from tinymirnet.quantize.convert import convert_int8
    keras.utils.set_random_seed(1)
    x = keras.Input((16, 16, 3), batch_size=1)
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    b = keras.layers.Conv2D(8, 1)(a)
    p = keras.layers.AveragePooling2D(2)(b)
    u = keras.layers.Resizing(16, 16, interpolation="bilinear")(p)
    y = keras.layers.Conv2D(3, 3, padding="same")(keras.layers.Add()([a, u]) * b)
    model = keras.Model(x, y)
    rng = np.random.default_rng(0)
    flatbuffer = convert_int8(model, rng.random((16, 16, 16, 3), dtype=np.float32))
    assert "MEAN" not in op_names(flatbuffer)
    tiles = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    result = verify_bit_exact(flatbuffer, tiles, runtime="board")
    assert result["bit_exact"], result


def test_c_array_parses_back_to_identical_bytes(export_info):
    source = model_data_files(export_info)["model_data.cc"]
    assert "alignas(16) const unsigned char g_tiny_mirnet_model[]" in source
    assert parse_c_array(source) == export_info.flatbuffer


def _compile(compiler, flags, tmp_path, export_info):
    write_firmware_files(export_info, tmp_path)
    (tmp_path / "check.cc").write_text(f"""
#include "tinymirnet/model_settings.h"
#include "tinymirnet/model_data.h"
static_assert(tinymirnet::kModelInputSize == {export_info.tiling.model_input}, "geometry");
static_assert(sizeof(tinymirnet::kModelSha256) == 65, "sha256 hex");
static_assert(tinymirnet::kArenaSize >= tinymirnet::kArenaMeasuredBytes, "arena margin");
unsigned int model_length() {{ return g_tiny_mirnet_model_len; }}
""")
    for src in ("check.cc", "model_data.cc"):
        subprocess.run([compiler, "-std=c++14", "-Wall", "-Wextra", "-Werror", *flags, "-I.", "-c", src,
                        "-o", f"{src}.o"], cwd=tmp_path, check=True, capture_output=True)


def test_generated_headers_compile_with_host_gcc(tmp_path, export_info):
    _compile("g++", [], tmp_path, export_info)


def test_generated_headers_compile_for_cortex_m4(tmp_path, export_info):
    if not shutil.which("arm-none-eabi-g++"):
        pytest.skip("arm-none-eabi-g++ is not installed (.ci/run installs gcc-arm-none-eabi)")
    _compile("arm-none-eabi-g++", ARM_FLAGS, tmp_path, export_info)


def test_budget_check_names_the_broken_budget():
    with pytest.raises(BudgetError, match="TFLM arena budget broken: 200,000 B"):
        check_budgets(Measured(flatbuffer_bytes=100_000, arena_bytes=200_000))
    with pytest.raises(BudgetError, match="flatbuffer budget broken"):
        check_budgets(Measured(flatbuffer_bytes=400_000, arena_bytes=100_000))
    check_budgets(Measured(flatbuffer_bytes=122_000, arena_bytes=116_000))
    with pytest.raises(BudgetError, match="RAM budget broken"):
        ram_table(180_000, firmware_buffers(160, 120, 20, 28))


def test_a_tile_whose_rgb_does_not_fit_one_tile_message_does_not_fit():
    """The protocol's payload limit (host and firmware agree on it) bounds the tile size: 52 px
    (8,126 B with the TILE header) fits, 53 px does not, and the budget sweep says so."""
    from tinymirnet.host.protocol.frames import MAX_PAYLOAD_LIMIT
    from tinymirnet.quantize.budget import MAX_PAYLOAD_LIMIT as budget_limit, tile_payload_violations
    assert budget_limit == MAX_PAYLOAD_LIMIT
    header = (Path(__file__).resolve().parent.parent / "firmware" / "lib" / "tinymirnet_core" / "tinymirnet"
              / "protocol.h").read_text()
    assert f"kMaxPayloadLimit = {MAX_PAYLOAD_LIMIT};" in header
    assert tile_payload_violations(52) == []
    assert tile_payload_violations(53) == ["a 53 px tile's TILE payload is 8,441 B > the protocol's 8,192 B"]


def test_ram_table_buffers_match_the_firmware_core(tmp_path):
    """The RAM table's buffer sizes are the ones the C++ core really declares."""
    t = load_tiling()
    rows = list(firmware_buffers(t.frame_width, t.frame_height, t.tile, t.model_input).values())
    root = Path(__file__).resolve().parent.parent / "firmware" / "lib"
    (tmp_path / "sizes.cc").write_text(f"""
#include "tinymirnet/device.h"
static_assert(tinymirnet::kFrameBufferBytes == {rows[0]}, "camera frame");
static_assert(tinymirnet::kTileIoBytes == {rows[1]}, "tile I/O");
static_assert(tinymirnet::kProtocolBufferBytes == {rows[2]}, "protocol buffers");
static_assert(tinymirnet::kExposedTableBytes == {rows[3]}, "exposed input table");
""")
    subprocess.run(["g++", "-std=c++14", "-fsyntax-only", f"-I{root / 'tinymirnet_core'}",
                    f"-I{root / 'tinymirnet_model'}", "sizes.cc"], cwd=tmp_path, check=True)


def test_arena_total_is_parsed_from_the_allocation_report():
    text = "[RecordingMicroAllocator] Arena allocation total 116080 bytes\n[...] head 58048 bytes"
    assert parse_arena_total(text) == 116080
    with pytest.raises(RuntimeError):
        parse_arena_total("nothing here")


@pytest.mark.slow
def test_pruning_reaches_the_requested_sparsity():
    import tensorflow as tf
    from tinymirnet.quantize.prune import prune, sparsity_report
    model = build_mirnet(MirnetConfig(channels=4))
    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x * 0.2, x)).batch(4).repeat()
    before = [w.copy() for w in model.get_weights()]
    pruned = prune(model, data, steps=20, sparsity=0.5, margin=2)
    report = sparsity_report(pruned)
    assert report["overall"] == pytest.approx(0.5, abs=0.02)
    assert all(v >= 0.45 for v in report["per_layer"].values())
    # The float model the ladder compares against is untouched by the fine-tune.
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert sparsity_report(model)["overall"] < 0.01


def test_budget_choice_prefers_quality_then_fewer_macs():
    from tinymirnet.quantize.candidates import choose, markdown
    def row(label, psnr, macs, fits=True):
        return {"label": label, "int8_tiled_psnr": psnr, "macs_per_frame": macs, "fits": fits,
                "params": 1, "flatbuffer_bytes": 1, "arena_bytes": 1, "macs_per_tile": macs / 48,
                "tiles_per_frame": 48, "budget_problems": [] if fits else ["TFLM arena budget broken"]}
    rows = [row("small tile", 18.26, 570e6), row("default", 18.21, 342e6),
            row("too big", 19.5, 300e6, fits=False), row("untrained", None, 100e6)]
    assert choose(rows)["label"] == "default"  # 0.05 dB worse counts as equal; 40% fewer MACs
    rows[0]["int8_tiled_psnr"] = 18.5
    assert choose(rows)["label"] == "small tile"
    assert choose([rows[2], rows[3]]) is None
    md = markdown(rows, choose(rows))
    assert "no: TFLM arena budget broken" in md and "**small tile**" in md
    # Counted on the board, the instructions decide, not the MACs.
    rows[0]["int8_tiled_psnr"] = 18.26
    rows[0]["instructions_per_frame"], rows[1]["instructions_per_frame"] = 2.0e9, 2.6e9
    assert choose(rows)["label"] == "small tile"
    assert "| 2,000 |" in markdown(rows, choose(rows))


def test_a_collapsed_activation_range_is_a_clear_error_not_an_abort():
    # A ReLU dead on every calibration tile gets a ~1e-8 scale; TFLM abort()s on such a model.
    import tf_keras as keras
    from tinymirnet.quantize.convert import convert_int8
    inp = keras.Input((8, 8, 3), batch_size=1)
    dead = keras.layers.Conv2D(4, 1, activation="relu", bias_initializer=keras.initializers.Constant(-50.0))(inp)
    out = keras.layers.Conv2D(3, 1)(dead)
    model = keras.Model(inp, out)
    calibration = np.random.default_rng(0).random((4, 8, 8, 3), np.float32)
    flatbuffer = convert_int8(model, calibration, widen_ranges=False)  # the converter as it comes
    assert degenerate_tensors(flatbuffer)
    with pytest.raises(ValueError, match="collapsed range"):
        TflmModel(flatbuffer)
    # The project's conversion opens the collapsed range (quantize/convert.py open_collapsed_ranges):
    # TFLM runs the model, and the dead unit's constant output is still exact.
    opened = convert_int8(model, calibration)
    assert not degenerate_tensors(opened)
    tflm = TflmModel(opened)
    q = tflm.input_quant
    tile = np.clip(np.round(calibration[0] / q.scale + q.zero_point), -128, 127).astype(np.int8)
    o = tflm.output_quant
    got = (tflm.invoke(tile).astype(np.float32) - o.zero_point) * o.scale
    np.testing.assert_allclose(got, model.predict(calibration[:1], verbose=0)[0], atol=2 * o.scale + 1e-6)


def test_calibration_tiles_are_low_light_only_unless_asked(lol_root):
    from tinymirnet.quantize.convert import representative_tiles
    low_light_max = 64 / 255  # conftest.darken maps a full-range scene to at most 25 % of 255
    tiles = representative_tiles(lol_root, 16, count=8, exposure_target=0)
    assert tiles.shape == (8, 16, 16, 3)
    assert np.max(tiles, axis=(1, 2, 3)).max() <= low_light_max  # no normal-light crop slipped in
    mixed = representative_tiles(lol_root, 16, count=8, bright_fraction=0.5, exposure_target=0)
    assert int(np.sum(np.max(mixed, axis=(1, 2, 3)) > low_light_max)) == 4


def test_quantize_cli_passes_out_schedule_and_no_firmware(monkeypatch, tmp_path, lol_root):
    """`--no-firmware` leaves the firmware alone (firmware_dir=None), `--out`, `--schedule` and
    `--qat-steps` reach the pipeline; without them the firmware export, the cosine schedule and
    the quantization-aware fine-tune are the default."""
    import tinymirnet.quantize.pipeline as pipeline
    from tinymirnet.host.cli import main
    calls = []

    def fake_run_quantize(data, weights, **options):
        calls.append(options)
        raise BudgetError("stop here")
    monkeypatch.setattr(pipeline, "run_quantize", fake_run_quantize)
    assert main(["quantize", "--data", str(lol_root), "--no-firmware", "--out", str(tmp_path / "o"),
                 "--schedule", "constant"]) == 1
    assert calls[0]["firmware_dir"] is None and calls[0]["out_dir"] == tmp_path / "o"
    assert calls[0]["finetune_schedule"] == "constant"
    assert main(["quantize", "--data", str(lol_root)]) == 1  # in a checkout: the shipped folders
    assert calls[1]["firmware_dir"] == pipeline.FIRMWARE_MODEL_DIR and calls[1]["out_dir"] == pipeline.ARTIFACTS_DIR
    assert calls[1]["finetune_schedule"] == "cosine"
    assert calls[1]["qat_steps"] == 600 and calls[1]["qat_lr"] == 3e-4  # QAT on by default
    assert main(["quantize", "--data", str(lol_root), "--qat-steps", "0"]) == 1
    assert calls[2]["qat_steps"] == 0 and calls[2]["pruned_weights"] is None
    pruned = tmp_path / "p.weights.h5"
    pruned.write_bytes(b"")
    assert main(["quantize", "--data", str(lol_root), "--pruned", str(pruned)]) == 1
    assert calls[3]["pruned_weights"] == pruned
    assert main(["quantize", "--data", str(lol_root), "--pruned", str(tmp_path / "none.weights.h5")]) == 1
    assert len(calls) == 4  # a missing --pruned file stops before the pipeline, with one line


def test_export_from_a_folder_that_is_not_a_quantize_output_is_one_error_line(tmp_path, capsys):
    from tinymirnet.host.cli import main
    (tmp_path / "quantize_report.json").write_text("{not json")
    fw = tmp_path / "fw"
    assert main(["export", str(tmp_path), "--firmware-dir", str(fw)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "not the output of `tinymirnet quantize`" in err
    assert not fw.exists()


def test_distilled_dataset_targets_are_the_teachers_outputs():
    """--distill: the pruning fine-tune's targets become the unpruned model's outputs."""
    import tensorflow as tf
    import tf_keras as keras
    from tinymirnet.quantize.prune import distilled
    teacher = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(3, 1)])
    x = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensors((x, np.zeros_like(x)))
    (inputs, targets), = list(distilled(data, teacher).as_numpy_iterator())
    assert np.allclose(targets, teacher.predict(x, verbose=0), atol=1e-6) and np.array_equal(inputs, x)


def test_per_channel_int8_rounding_is_tflites_weight_grid():
    import tensorflow as tf
    from tinymirnet.quantize.qat import per_channel_int8
    kernel = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 4, 5)), tf.float32)
    q = per_channel_int8(kernel).numpy()
    scale = np.abs(kernel.numpy()).max(axis=(0, 1, 2)) / 127
    levels = q / scale
    assert np.allclose(levels, np.round(levels), atol=1e-3) and np.abs(levels).max() <= 127 + 1e-3
    assert 0 < np.abs(q - kernel.numpy()).max() <= scale.max() / 2 + 1e-6
    with tf.GradientTape() as tape:  # straight through: the rounding passes the gradient as is
        tape.watch(kernel)
        g = tape.gradient(tf.reduce_sum(per_channel_int8(kernel) * 3.0), kernel)
    assert np.allclose(g.numpy(), 3.0)


@pytest.mark.slow
@pytest.mark.parametrize("framed", [False, True], ids=["per-tile", "frame-context"])
def test_quantization_aware_finetune_keeps_the_zeros_and_leaves_the_input_model_alone(framed):
    """QAT fine-tunes a pruned network with int8 rounding in the forward pass: the result has
    the same zeros (the masks hold), other weights moved, and the network it started from is
    unchanged; the fake-quantized twin computes what the network computes, give or take the
    rounding."""
    import tensorflow as tf
    from tinymirnet.model.network import build_frame_context_trainer, weight_bank
    from tinymirnet.quantize.prune import PRUNABLE
    from tinymirnet.quantize.qat import FakeQuantBuilder, quantization_aware_finetune, _copy_weights
    cfg = MirnetConfig(channels=4, **({"thumbnail_width": 16, "thumbnail_height": 12} if framed else {}))
    model = build_mirnet(cfg)
    for layer in model.layers:  # a pruned network: half of every kernel zero
        if isinstance(layer, PRUNABLE):
            kernel, bias = layer.get_weights()
            kernel[..., ::2] = 0.0
            layer.set_weights([kernel, bias])
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 3)).astype(np.float32)
    thumbs = rng.random((8, 12, 16, 3)).astype(np.float32)
    inputs = (thumbs, x * 0.2) if framed else x * 0.2
    data = tf.data.Dataset.from_tensor_slices((inputs, x)).batch(4).repeat()
    tuned = quantization_aware_finetune(model, cfg, data, steps=6, crop=16, lr=1e-2, margin=2, log=lambda *_: None)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    moved = False
    for layer in tuned.layers:
        if isinstance(layer, PRUNABLE):
            kernel = layer.kernel.numpy()
            assert np.all(kernel[..., ::2] == 0)
            moved |= not np.allclose(kernel, model.get_layer(layer.name).kernel.numpy())
    assert moved
    # The twin, ranges set on one batch, against the plain network on the same batch.
    twin = build_mirnet(cfg, (16, 16, 3), builder=FakeQuantBuilder)
    plain, fake = model, twin
    if framed:
        plain = build_frame_context_trainer(cfg, model, 16)
        fake = build_frame_context_trainer(cfg, twin, 16, builder=FakeQuantBuilder)
    _copy_weights(weight_bank(model), {n: l for n, l in weight_bank(twin).items() if n in weight_bank(model)},
                  into_fake_quant=True)
    batch = (tf.constant(thumbs[:4]), tf.constant(x[:4] * 0.2)) if framed else tf.constant(x[:4] * 0.2)
    fake(batch, training=True)
    a, b = plain(batch, training=False).numpy(), fake(batch, training=False).numpy()
    assert 0 < np.abs(a - b).mean() < 0.02


def _spatial_attention_model():
    """conv -> [channel mean, channel max] -> conv: the DAU's spatial-attention pattern, with
    features whose negative tail reaches far below the channel mean's."""
    import tf_keras as keras
    import tensorflow as tf
    inp = keras.Input((8, 8, 3), batch_size=1)
    f = keras.layers.Conv2D(8, 1, kernel_initializer=keras.initializers.RandomNormal(0, 4, seed=1))(inp)
    mean = keras.layers.Lambda(lambda t: tf.reduce_mean(t, axis=-1, keepdims=True))(f)
    peak = keras.layers.Lambda(lambda t: tf.reduce_max(t, axis=-1, keepdims=True))(f)
    w = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(keras.layers.Concatenate()([mean, peak]))
    return keras.Model(inp, keras.layers.Multiply()([f, w])), f


def _output_range(flatbuffer, op):
    """The real range of the int8 output of the model's first `op` (a builtin operator name)."""
    from tensorflow.lite.python import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    sg = model.subgraphs[0]
    code = getattr(schema.BuiltinOperator, op)
    first = next(o for o in sg.operators if model.operatorCodes[o.opcodeIndex].builtinCode == code)
    t = sg.tensors[first.outputs[0]]
    s, z = float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])
    return (-128 - z) * s, (127 - z) * s


def test_widened_ranges_keep_the_features_that_the_concatenation_would_clip():
    """The converter gives a feature map tied to a concatenation through REDUCE_MAX the
    concatenation's range (its low end is the channel mean's): the features' negative tail is
    clipped. widen_tied_ranges gives the group the union: nothing clips, and the int8 output
    is closer to the float output on the real TFLM kernels."""
    import tf_keras as keras
    from tinymirnet.quantize.convert import convert_int8
    model, features = _spatial_attention_model()
    x = np.random.default_rng(0).random((32, 8, 8, 3)).astype(np.float32)
    f = keras.Model(model.input, features).predict(x, verbose=0)
    plain, widened = convert_int8(model, x, widen_ranges=False), convert_int8(model, x)
    # The features' range is their channel max's (REDUCE_MAX keeps its input's scale).
    assert _output_range(plain, "REDUCE_MAX")[0] > f.min() + 5  # clipped, as the converter comes
    lo, hi = _output_range(widened, "REDUCE_MAX")
    step = (hi - lo) / 255
    assert lo <= f.min() + step and hi >= f.max() - step
    errors = []
    for flatbuffer in (plain, widened):
        m = TflmModel(flatbuffer)
        q = m.input_quant
        out = [(m.invoke(np.clip(np.round(t / q.scale) + q.zero_point, -128, 127).astype(np.int8)[None])
                .astype(np.float32) - m.output_quant.zero_point) * m.output_quant.scale for t in x]
        errors.append(float(np.sqrt(np.mean((np.stack(out).reshape(-1, 8, 8, 8) - model.predict(x, verbose=0)) ** 2))))
    assert errors[1] < 0.5 * errors[0]


def test_two_step_conversion_equals_the_converter_when_nothing_is_widened(monkeypatch):
    """convert_int8 calibrates, widens, then quantizes with the converter's own call: with the
    widening a no-op, every tensor, quantization and weight buffer equals the converter's."""
    import tinymirnet.quantize.convert as convert
    from tensorflow.lite.python import schema_py_generated as schema
    model, _ = _spatial_attention_model()
    x = np.random.default_rng(0).random((8, 8, 8, 3)).astype(np.float32)
    reference = convert.convert_int8(model, x, widen_ranges=False)
    monkeypatch.setattr(convert, "widen_tied_ranges", lambda calibrated: calibrated)
    two_step = convert.convert_int8(model, x)
    a, b = (schema.ModelT.InitFromPackedBuf(m, 0) for m in (reference, two_step))
    assert len(a.subgraphs[0].operators) == len(b.subgraphs[0].operators)
    assert len(a.subgraphs[0].tensors) == len(b.subgraphs[0].tensors)
    for ta, tb in zip(a.subgraphs[0].tensors, b.subgraphs[0].tensors):
        assert ta.name == tb.name
        if ta.quantization is not None and ta.quantization.scale is not None:
            assert np.array_equal(ta.quantization.scale, tb.quantization.scale)
            assert np.array_equal(ta.quantization.zeroPoint, tb.quantization.zeroPoint)
        da, db = a.buffers[ta.buffer].data, b.buffers[tb.buffer].data
        assert (da is None) == (db is None) and (da is None or np.array_equal(da, db))


def test_stripped_names_leave_the_model_computing_the_same():
    """strip_tensor_names drops the intermediate tensors' names (a third of the flatbuffer)
    and nothing else: the inputs keep theirs, TFLM computes the same bytes."""
    from tinymirnet.quantize.convert import strip_tensor_names
    from tensorflow.lite.python import schema_py_generated as schema
    model, _ = _spatial_attention_model()
    x = np.random.default_rng(0).random((8, 8, 8, 3)).astype(np.float32)
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([t[None]] for t in x)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    named = conv.convert()
    stripped = strip_tensor_names(named)
    assert len(stripped) < len(named)
    sg = schema.ModelT.InitFromPackedBuf(stripped, 0).subgraphs[0]
    assert all((t.name is None) == (i not in set(sg.inputs) | set(sg.outputs)) for i, t in enumerate(sg.tensors))
    a, b = TflmModel(named), TflmModel(stripped)
    for t in np.random.default_rng(1).integers(-128, 128, (4, *a.input_shape), dtype=np.int8):
        assert np.array_equal(a.invoke(t), b.invoke(t))


def test_a_frame_context_candidate_is_measured_as_its_two_models():
    """The board design in the budget sweep: both int8 models (random weights), flash for both,
    the larger arena, the context model's MACs once per frame and the tile model's per tile."""
    from tinymirnet.model.network import MirnetConfig
    from tinymirnet.quantize.candidates import Candidate, measure_candidate
    c = Candidate(8, 1.0, 32, 8, "half_resolution", 2)
    row = measure_candidate(c, 160, 120)
    tile_fb, context_fb = row["_flatbuffers"]
    assert row["flatbuffer_bytes"] == len(tile_fb) + len(context_fb) and row["fits"]
    assert row["tiles_per_frame"] == 20 and row["macs_per_frame"] > 20 * row["macs_per_tile"]
    assert c.label() == "half-res C8 depth 2 tile 32+2x8"
    trained = MirnetConfig(design="half_resolution", channels=8, depth=2, exposure_target=120,
                           thumbnail_width=32, thumbnail_height=24)
    assert c.matches(trained) and not c.matches(MirnetConfig(channels=8))
