"""`tinymirnet soak` (host/soak.py): the fault plan, the fault kinds a port can take, and the
short soak on the QEMU board: 50 frames with a bad cable, a reset and an unplug mid-frame and a
stalled model that the watchdog resets, every frame delivered bit for bit, nothing leaking."""
from __future__ import annotations

import json
import shutil

import pytest

from tinymirnet.host.board_link import CommandError
from tinymirnet.host.cli import main
from tinymirnet.host.soak import BUTTON_KINDS, FAULT_KINDS, WARM_UP_FRAMES, fault_plan, parse_faults


def test_the_fault_plan_is_seeded_and_hits_every_button_kind_after_the_warm_up():
    plan = fault_plan(50, FAULT_KINDS, seed=3)
    assert plan == fault_plan(50, FAULT_KINDS, seed=3) and plan != fault_plan(50, FAULT_KINDS, seed=4)
    assert set(plan.values()) == set(BUTTON_KINDS)
    assert min(plan) > WARM_UP_FRAMES - 1 and max(plan) < 49
    assert fault_plan(50, ("link",), seed=3) == {}


def test_only_the_qemu_board_takes_button_faults():
    assert parse_faults("all", "qemu") == FAULT_KINDS
    assert parse_faults("all", "/dev/ttyACM0") == ("link",)
    assert parse_faults("link,stall", "qemu") == ("link", "stall")
    with pytest.raises(CommandError, match="needs --port qemu"):
        parse_faults("reset", "sim")
    with pytest.raises(CommandError, match="unknown kind 'brownout'"):
        parse_faults("link,brownout", "qemu")


def test_a_bad_fault_kind_is_one_error_line(capsys):
    assert main(["soak", "--port", "sim", "--frames", "2", "--faults", "unplug"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: --faults unplug needs --port qemu"), err


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
def test_fifty_frames_on_the_qemu_board_with_every_fault(tmp_path, capsys):
    report_path = tmp_path / "soak.json"
    code = main(["soak", "--port", "qemu", "--frames", "50", "--seed", "1", "--report", str(report_path)])
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert code == 0, out
    assert report["frames"] == 50 and report["wrong_tiles"] == 0 and report["hangs"] == 0
    assert set(report["faults"]) == set(FAULT_KINDS) and all(n >= 1 for n in report["faults"].values())
    assert report["recovered"] == report["faults"]
    assert report["resets_noticed"] == sum(report["faults"][k] for k in BUTTON_KINDS)
    assert report["host_rss"]["growth_pct"] <= 5.0
    assert report["device_memory"]["constant"], report["device_memory"]
    assert report["device_memory"]["marks"][0]["stack_high_water"] > 0  # the painted stack is measured
    assert (tmp_path / "soak.md").read_text().startswith("# Soak: 50 of 50 frames")


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
def test_capture_with_the_cable_pulled_mid_frame_is_one_error_line_and_no_output(tmp_path, capsys,
                                                                                 small_float_weights):
    """`capture` on a board whose USB cable is pulled in the middle of the frame (the port
    vanishes, the board loses power): one `error:` line, exit 1, and no output folder."""
    import threading
    import time

    from tinymirnet.host.qemu_board import QemuBoard
    with QemuBoard(board_speed=True) as board:  # 3.8 s a frame: the pull lands inside it
        pull = threading.Timer(1.5, board.unplug, args=(1.0,))
        pull.start()
        started = time.monotonic()
        code = main(["capture", "--port", board.port, "--out", str(tmp_path / "cap"),
                     "--weights", str(small_float_weights)])
        pull.join()
        took = time.monotonic() - started
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(err) == 1 and "lost the serial port" in err[0], err
    assert not (tmp_path / "cap").exists()
    assert took < 30  # bounded: the host does not wait for a port that is gone
