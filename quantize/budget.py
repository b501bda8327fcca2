"""The Nano 33 BLE Sense budgets and the RAM table.

Budgets (host figures, measured with the real TFLM kernels):
  * TFLM arena <= 128 KiB,
  * flatbuffer <= 300 KB (it lives in flash next to Mbed OS and the sketch),
  * everything in RAM (arena + camera frame + tile I/O + protocol buffers + the Mbed OS /
    Arduino baseline) <= 256 KB.
"""
from __future__ import annotations

from dataclasses import dataclass

ARENA_BUDGET = 128 * 1024
FLATBUFFER_BUDGET = 300_000
RAM_BYTES = 256 * 1024
# Headroom added to the measured arena in the firmware: CMSIS-NN kernels ask for scratch
# buffers the reference kernels do not, and the board's TFLM version may differ a little.
ARENA_MARGIN = 4 * 1024
# Static RAM of Mbed OS + the Arduino core + USB CDC + stacks for an empty sketch on the Nano
# 33 BLE. Figure used: 60 KiB, the project's working estimate; it is not measured here (the
# nordicnrf52 platform cannot be downloaded on this machine): replace it with the .bss+.data
# of the first real build (`pio run -v` prints "RAM: used ...").
MBED_BASELINE_BYTES = 60 * 1024


class BudgetError(Exception):
    """A budget is broken; the message names the budget and both figures."""


@dataclass(frozen=True)
class Measured:
    flatbuffer_bytes: int
    arena_bytes: int


def budget_violations(m: Measured) -> list[str]:
    problems = []
    if m.arena_bytes > ARENA_BUDGET:
        problems.append(f"TFLM arena budget broken: {m.arena_bytes:,} B needed > {ARENA_BUDGET:,} B (128 KiB)")
    if m.flatbuffer_bytes > FLATBUFFER_BUDGET:
        problems.append(f"flatbuffer budget broken: {m.flatbuffer_bytes:,} B > {FLATBUFFER_BUDGET:,} B (300 KB)")
    return problems


def check_budgets(m: Measured) -> None:
    problems = budget_violations(m)
    if problems:
        raise BudgetError("; ".join(problems))


# Protocol v4 (firmware/PROTOCOL.md): 14 bytes of framing, a 14-byte TILE header, the device's
# payload limit of max(one tile, 2048 bytes), and no payload longer than 8192 bytes.
FRAMING_BYTES = 14
TILE_HEADER_BYTES = 14
MIN_MAX_PAYLOAD = 2048
MAX_PAYLOAD_LIMIT = 8192


def tile_payload_violations(tile: int) -> list[str]:
    """A tile's RGB travels in one TILE message: it must fit the protocol's payload limit."""
    payload = TILE_HEADER_BYTES + tile * tile * 3
    if payload > MAX_PAYLOAD_LIMIT:
        return [f"a {tile} px tile's TILE payload is {payload:,} B > the protocol's {MAX_PAYLOAD_LIMIT:,} B"]
    return []


def firmware_buffers(frame_w: int, frame_h: int, tile: int, model_input: int,
                     thumbnail: tuple[int, int] | None = None, context_values: int = 0) -> dict[str, int]:
    """Static buffers of the firmware core's Device besides the arena, with the same formulas
    as firmware/lib/tinymirnet_core/tinymirnet/device.h (a test compiles both and compares): the camera
    frame (2 bytes per pixel, YUV422 or RGB565), the int8 model input and output tiles, one receive payload and one transmit
    frame, and the frame's input table with its exposure gain folded in (256 B); for a
    frame-context network also the int8 thumbnail and the context vector."""
    max_payload = max(TILE_HEADER_BYTES + tile * tile * 3, MIN_MAX_PAYLOAD)
    rows = {
        "camera frame (YUV422)": frame_w * frame_h * 2,
        "tile I/O (int8 input + output)": 2 * model_input * model_input * 3,
        "protocol buffers (rx payload + tx frame)": max_payload + FRAMING_BYTES + max_payload,
        "exposed input table (per frame)": 256,
    }
    if thumbnail:
        rows["frame context (int8 thumbnail + context vector)"] = thumbnail[0] * thumbnail[1] * 3 + context_values
    return rows


def ram_table(arena_bytes: int, buffers: dict[str, int]) -> dict:
    rows = {"TFLM arena (measured + margin)": arena_bytes + ARENA_MARGIN, **buffers,
            "Mbed OS + Arduino baseline (estimate)": MBED_BASELINE_BYTES}
    total = sum(rows.values())
    if total > RAM_BYTES:
        raise BudgetError(f"RAM budget broken: {total:,} B needed > {RAM_BYTES:,} B (256 KB)")
    return {"rows": rows, "total": total, "ram": RAM_BYTES, "headroom": RAM_BYTES - total}
