"""The firmware on the board's TFLM under QEMU (mps2-an386, Cortex-M4F): the project's own
firmware/src/tflm_model.cpp and tinymirnet::Device with Chirale_TensorFlowLite 2.0.0 built for
Cortex-M4F from ../shared/firmware-deps. Whole frames, both models, interpreters swapped as on
the board; outputs byte for byte equal to the host's int8 pipeline (the same TFLM built for
this machine)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tinymirnet.host.qemu_board import QemuBoard, ensure_board_elf, frame_blob

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-g++") is None,
    reason="needs qemu-system-arm and arm-none-eabi-g++ (.ci/run installs both)")


@pytest.fixture(scope="module")
def probe():
    from tinymirnet.host.device_report import build_cycle_model, run_probe
    return run_probe(ensure_board_elf("probe"), cycle_model=build_cycle_model())


def test_probe_runs_whole_frames_through_the_firmware(probe):
    from tinymirnet.model.tiling import load_tiling
    tiling = load_tiling()
    tiles = tiling.tiles_x * tiling.tiles_y
    assert len(probe["frames"]) >= 2
    for frame in probe["frames"]:
        assert frame["tiles"] == tiles
        assert frame["context_ticks"] > 0  # the context model ran once in the frame
        # Every tile's invoke is inside the frame's time, which adds the context model.
        assert frame["ticks"] > frame["tile_ticks"] + frame["context_ticks"] > 0
        assert frame["tile_min_ticks"] * tiles <= frame["tile_ticks"] <= frame["tile_max_ticks"] * tiles
    # Interpreter switches cost something: the first call after the other model ran is dearer.
    assert probe["tile_first_ticks"] > probe["tile_again_ticks"] > 0
    assert probe["context_first_ticks"] > probe["context_again_ticks"] > 0
    assert 0 < probe["arena_used_tile"] <= probe["arena_size"]
    assert 0 < probe["arena_used_context"] <= probe["arena_size"]
    assert {e["op"] for e in probe["tile_ops"]} >= {"CONV_2D", "ADD"}


def test_device_report_parses_the_probe_and_the_map(probe, tmp_path):
    from tinymirnet.host.device_report import build_report, markdown
    from tinymirnet.model.paths import QEMU_BUILD_DIR as BUILD_DIR
    ensure_board_elf("board")
    report = build_report(probe, (BUILD_DIR / "board.map").read_text())
    ins = report["instructions"]
    assert ins["per_frame"] == int(np.median([f["ticks"] * 40 for f in probe["frames"]]))
    assert sum(r["share"] for r in report["op_shares"]["tile_model"]) == pytest.approx(1, abs=1e-3)
    memory = report["memory_bytes"]
    from tinymirnet.model.paths import CONTEXT_INT8_NAME, DEFAULT_INT8_MODEL
    flatbuffers = DEFAULT_INT8_MODEL.stat().st_size + DEFAULT_INT8_MODEL.with_name(CONTEXT_INT8_NAME).stat().st_size
    assert flatbuffers <= memory["model flatbuffers (model_data.cc)"]["rodata"] < flatbuffers + 1_024
    assert memory["TFLM (Chirale_TensorFlowLite 2.0.0, CMSIS-NN)"]["text"] > 20_000
    assert "other" not in memory or sum(memory["other"].values()) < 2_000
    assert "Instructions are not cycles" in markdown(report)
    # The cycle model counted the very instructions the timer did, in the whole frames (the
    # window adds the loop around them), and charged at least one cycle to each but IT.
    cycles = report["cycle_estimate"]
    mix = cycles["instruction_mix_per_frame"]
    assert cycles["instructions_per_frame"] == pytest.approx(ins["per_frame"], rel=1e-3)
    assert sum(mix.values()) == pytest.approx(cycles["instructions_per_frame"], abs=len(mix))
    low, high = cycles["cycles_per_frame"]["low"], cycles["cycles_per_frame"]["high"]
    assert cycles["instructions_per_frame"] - mix["it"] <= low < high
    assert mix["load"] > 0 and mix["mul"] > 0 and cycles["taken_branches_per_frame"] > 0
    assert "Cycles: an estimate" in markdown(report)


def test_two_captures_on_the_qemu_board_equal_the_hosts_int8_pipeline():
    from tinymirnet.host.board_link import handshake_mismatches
    from tinymirnet.host.host_model import HostModel
    from tinymirnet.host.protocol import Connection
    from tinymirnet.model.samples import resize_to, sample_photo, synthesize_low_light
    host = HostModel.load()
    t = host.tiling
    frames = [synthesize_low_light(resize_to(sample_photo(name), t.frame_width, t.frame_height), seed=i)
              for i, name in enumerate(("chelsea", "astronaut"))]
    with QemuBoard(frames=frames) as board:
        with Connection.open(board.port, "qemu") as link:
            info = link.hello()
            assert handshake_mismatches(info, host) == []
            for _ in frames:  # the camera serves them in turn; the interpreters swap each frame
                result = link.capture()
                expected = host.int8_frame(result.raw_rgb888)
                assert np.array_equal(result.enhanced.image, expected)
                assert result.enhanced.done.tile_count == info.tile_count


def test_frame_blob_layout():
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    blob = frame_blob([frame, frame], board_speed=False)
    magic, count, ipk, hz = np.frombuffer(blob[:16], "<u4")
    assert (magic, count, ipk, hz) == (0x424E4D54, 2, 40_000, 64_000_000)
    assert np.array_equal(np.frombuffer(blob[16:], "<u2")[:12], frame.ravel())
    assert frame_blob([frame], board_speed=True)[8:12] == (2_500).to_bytes(4, "little")


def test_a_candidate_is_priced_in_instructions_on_the_board(tmp_path):
    """The budget sweep's --instructions: a one-model candidate exported with its own tiling,
    built into the probe and counted."""
    from dataclasses import replace
    from tinymirnet.host.device_report import price_on_the_board
    from tinymirnet.model.network import MirnetConfig
    from tinymirnet.model.tiling import load_tiling
    from tinymirnet.quantize.convert import random_weights_int8
    # (A tile's RGB must fit one v4 TILE payload, 8,192 B: at most 52 px a side.)
    tiling = replace(load_tiling(), tile=32, halo=4)
    row = price_on_the_board(random_weights_int8(MirnetConfig(channels=4), 40), tiling, tmp_path / "c4")
    assert row["instructions_per_frame"] > 20 * row["instructions_per_tile"] > 0  # 5 x 4 tiles
    assert 0 < row["arena_bytes_32bit"] < 131_072
    assert "CONV_2D" in row["tile_op_shares"]
