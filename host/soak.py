"""A day of use in one command: `tinymirnet soak` captures frames back to back while faults hit
the board and its cable, and checks that every frame still arrives bit for bit as the host's
TFLM computes it, that the host comes back after each fault without help, and that neither side
slowly leaks.

Faults (seeded: the same seed gives the same plan and the same cable errors):

* ``link``: a bad cable for the whole run (host/link_faults.py FaultyLink, both directions:
  corrupted, dropped and duplicated bytes, repeated and delayed chunks);
* ``reset``: the reset button pressed in the middle of a frame (QEMU's system reset);
* ``unplug``: the USB cable pulled in the middle of a frame and put back a second later: the
  port vanishes, the board loses power, a new port appears;
* ``stall``: a model invoke that never returns; the board's watchdog resets it
  (firmware/qemu/board_main.cc, the CMSDK watchdog of mps2-an386 with the sketch's timeout).

The host notices a reset by the session token it gave the board in HELLO (INFO echoes it until
the board boots again), opens the port again if it vanished, repeats the handshake and the frame.
Only the QEMU board has buttons the host can press: on a serial port or the sim board, the soak
injects link faults (pull the cable by hand to test the rest).
"""
from __future__ import annotations

import random
import resource
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .board_link import CommandError, check_handshake, connect, open_device
from .host_model import HostModel
from .link_faults import Faults, FaultyLink
from .protocol import PortOpenError, ProtocolError

FAULT_KINDS = ("link", "reset", "unplug", "stall")
BUTTON_KINDS = ("reset", "unplug", "stall")  # the QEMU board's only
# A cable worse than a good USB one: about one frame in two has a byte or a chunk hit (a frame
# is ~100 kB in some thousands of reads from the board, ~300 bytes in ~15 writes to it).
BAD_CABLE = dict(tx=Faults(corrupt=2e-4, drop=2e-4, duplicate=2e-4, repeat=0.002, delay=0.005, max_delay=0.003),
                 rx=Faults(corrupt=1e-6, drop=1e-6, duplicate=1e-6, repeat=1e-5, delay=2e-5, max_delay=0.003))
BUTTON_RATE = 0.03  # each button fault hits about 3 frames in 100
WARM_UP_FRAMES = 10  # no button fault before this frame: the memory marks are read here
UNPLUG_S = 1.0
RECOVERY_S = 90.0  # a stalled board comes back after its watchdog (16 s of board time) and a boot
MAX_ATTEMPTS = 6
STREAM_TIMEOUT_S = 5.0  # a tile takes under 1 s on the board: a silent stream means a fault
PORT_LOST = (OSError, PortOpenError)  # pyserial's SerialException is an OSError
RECOVERABLE = (ProtocolError, *PORT_LOST)
REPAIRS = ("retransmissions", "naks", "timeouts", "stale_frames", "repaired_tiles", "repaired_frame_chunks")


class SoakError(CommandError):
    """The soak cannot go on (the board did not come back)."""


def parse_faults(text: str, port: str) -> tuple[str, ...]:
    """--faults: 'all' (every kind the port can take) or a comma list of FAULT_KINDS."""
    kinds = (FAULT_KINDS if port == "qemu" else ("link",)) if text == "all" else tuple(
        k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise CommandError(f"--faults: unknown kind {unknown[0]!r} (kinds: {', '.join(FAULT_KINDS)}, or all)")
    buttons = [k for k in kinds if k in BUTTON_KINDS]
    if buttons and port != "qemu":
        raise CommandError(f"--faults {buttons[0]} needs --port qemu: the host can press only the QEMU "
                           f"board's buttons (give --faults link, or pull the cable by hand)")
    return kinds


def fault_plan(frames: int, kinds: tuple[str, ...], seed: int) -> dict[int, str]:
    """Frame index -> button fault. Each kind hits about BUTTON_RATE of the frames after the
    warm-up, and at least one frame when the run is long enough."""
    rng = random.Random(seed)
    buttons = [k for k in kinds if k in BUTTON_KINDS]
    free = list(range(min(WARM_UP_FRAMES + 1, frames), frames - 1))
    plan: dict[int, str] = {}
    for index in free:
        for kind in buttons:
            if rng.random() < BUTTON_RATE and index not in plan:
                plan[index] = kind
    for kind in buttons:
        if kind not in plan.values():
            left = [i for i in free if i not in plan]
            if left:
                plan[rng.choice(left)] = kind
    return dict(sorted(plan.items()))


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; else the high-water from getrusage)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class FrameRecord:
    index: int
    wall_s: float
    attempts: int
    fault: str | None  # the button fault planned for it
    link_faults: int  # cable faults injected while it ran
    wrong_tiles: int
    reset_noticed: bool
    repairs: dict  # what the link did for it: retransmissions, timeouts, repaired tiles, ...

    @property
    def hit(self) -> bool:
        return self.fault is not None or self.link_faults > 0 or self.attempts > 1


@dataclass
class Soak:
    port: str
    kinds: tuple[str, ...]
    seed: int = 0
    board_speed: bool = False
    records: list[FrameRecord] = field(default_factory=list)
    memory_marks: list[dict] = field(default_factory=list)
    rss: dict = field(default_factory=dict)
    resets_noticed: int = 0
    hangs: int = 0
    repairs: dict = field(default_factory=lambda: dict.fromkeys(REPAIRS, 0))  # of links closed so far

    def run(self, frames: int, progress=None) -> dict:
        self.host = HostModel.load()
        self.token = random.Random(self.seed).randrange(1, 2 ** 32)
        self.plan = fault_plan(frames, self.kinds, self.seed)
        self.cable: FaultyLink | None = None
        rss_frame = min(50, max(1, frames // 2))
        started = time.monotonic()
        with open_device(self.port, stream_timeout=STREAM_TIMEOUT_S, board_speed=self.board_speed,
                         wrap=self._wrap) as (link, board):
            self.link, self.board = link, board
            self._handshake(link.hello(self.token))
            for index in range(frames):
                self.records.append(self._frame(index))
                delivered = len(self.records)
                if delivered == min(WARM_UP_FRAMES, frames) or self.records[-1].reset_noticed:
                    self._read_memory_marks(index)
                if delivered == rss_frame:
                    self.rss = {"at_frame": delivered, "start_bytes": rss_bytes()}
                if progress:
                    progress(self.records[-1])
            self._read_memory_marks(frames - 1)
            self._close_link()
        self.rss.update(end_bytes=rss_bytes(), end_frame=frames)
        return self.report(frames, time.monotonic() - started)

    # One frame ------------------------------------------------------------------------------

    def _frame(self, index: int) -> FrameRecord:
        fault = self.plan.get(index)
        cable_before = self._cable_faults()
        repairs_before = self._repairs_so_far()
        started = time.monotonic()
        attempts, noticed = 0, False
        if fault == "stall":
            self.board.request_stall()
        while True:
            attempts += 1
            on_tile = self._button(fault, index) if attempts == 1 and fault in ("reset", "unplug") else None
            try:
                result = self.link.capture(on_tile=on_tile)
                break
            except RECOVERABLE as e:
                if attempts >= MAX_ATTEMPTS:
                    self.hangs += 1
                    raise SoakError(f"frame {index}: not delivered after {attempts} attempts ({e})") from None
                noticed |= self._recover(e)
        wall = time.monotonic() - started
        expected = self.host.int8_frame(result.raw_rgb888)
        wrong = sum(1 for tile in result.enhanced.tiles if not np.array_equal(
            result.enhanced.image[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width],
            expected[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width]))
        repairs = {k: v - repairs_before[k] for k, v in self._repairs_so_far().items() if v != repairs_before[k]}
        return FrameRecord(index, wall, attempts, fault, self._cable_faults() - cable_before, wrong, noticed,
                           repairs)

    def _button(self, fault: str, index: int):
        """A tile callback that presses the button when a chosen tile arrives: mid-frame."""
        at_tile = random.Random(self.seed * 100_003 + index).randrange(max(1, self.host.tiling.tiles_x
                                                                             * self.host.tiling.tiles_y - 1))
        seen = [0]

        def on_tile(tile) -> None:
            seen[0] += 1
            if seen[0] == at_tile + 1:
                if fault == "reset":
                    self.board.reset()
                else:  # the cable comes out while the host reads: it finds the port gone
                    threading.Thread(target=self.board.unplug, args=(UNPLUG_S,), daemon=True).start()
        return on_tile

    # Coming back ----------------------------------------------------------------------------

    def _recover(self, error: Exception) -> bool:
        """Until RECOVERY_S: the port opened again if it vanished, HELLO, the handshake. True
        when the board had reset (it forgot the session token)."""
        deadline = time.monotonic() + RECOVERY_S
        reopen = isinstance(error, PORT_LOST)
        last = error
        while time.monotonic() < deadline:
            try:
                if reopen:
                    self._close_link()
                    self.link = connect(self.port, self.board, wrap=self._wrap, stream_timeout=STREAM_TIMEOUT_S)
                    reopen = False
                info = self.link.hello()
            except RECOVERABLE as e:
                last, reopen = e, reopen or isinstance(e, PORT_LOST)
                time.sleep(0.5)
                continue
            reset = info.session_token != self.token
            if reset:
                self.resets_noticed += 1
                info = self.link.hello(self.token)
            self._handshake(info)
            return reset
        self.hangs += 1
        raise SoakError(f"the board on {self.port} did not answer within {RECOVERY_S:.0f} s of a fault ({last})")

    def _repairs_so_far(self) -> dict:
        return {name: self.repairs[name] + getattr(self.link.stats, name) for name in REPAIRS}

    def _close_link(self) -> None:
        for name in REPAIRS:
            self.repairs[name] += getattr(self.link.stats, name)
        self.link.stats = type(self.link.stats)()
        self.link.close()

    def _handshake(self, info) -> None:
        check_handshake(info, self.host, self.link.name)
        self.info = info

    def _wrap(self, port):
        if "link" not in self.kinds:
            return port
        rng = random.Random(self.seed)
        counts = (self.cable.tx_counts, self.cable.rx_counts) if self.cable else None
        self.cable = FaultyLink(port, seed=rng.randrange(2 ** 31) + len(self.records), **BAD_CABLE)
        if counts:  # a new cable after an unplug: the counts go on
            self.cable.tx_counts, self.cable.rx_counts = counts
        return self.cable

    def _cable_faults(self) -> int:
        return self.cable.tx_counts.total + self.cable.rx_counts.total if self.cable else 0

    def _read_memory_marks(self, index: int) -> None:
        info = self.link.hello(self.token)
        self.memory_marks.append({"after_frame": index, "stack_high_water": info.stack_high_water,
                                  "heap_high_water": info.heap_high_water,
                                  "arena_used_bytes": info.arena_used_bytes, "uptime_ms": info.uptime_ms})

    # The report -----------------------------------------------------------------------------

    def report(self, frames: int, elapsed_s: float) -> dict:
        walls = [r.wall_s for r in self.records]
        slow = 1.5 * _summary(walls)["median"]
        calm = [r.wall_s for r in self.records if not r.hit]
        faults = {kind: sum(1 for r in self.records if r.fault == kind) for kind in self.kinds if kind != "link"}
        recovered = {kind: sum(1 for r in self.records if r.fault == kind and r.reset_noticed)
                     for kind in faults}
        if "link" in self.kinds:
            faults["link"] = sum(1 for r in self.records if r.link_faults)
            recovered["link"] = sum(1 for r in self.records if r.link_faults and not r.wrong_tiles)
        keys = ("stack_high_water", "heap_high_water", "arena_used_bytes")
        first = self.memory_marks[0]
        grown = {k: max(m[k] for m in self.memory_marks) - first[k] for k in keys}
        growth = (self.rss["end_bytes"] - self.rss["start_bytes"]) / self.rss["start_bytes"] if self.rss else None
        return {
            "frames": len(self.records), "frames_asked": frames, "port": self.port,
            "board_speed": self.board_speed, "seed": self.seed, "fault_kinds": list(self.kinds),
            "wrong_tiles": sum(r.wrong_tiles for r in self.records), "hangs": self.hangs,
            "faults": faults, "recovered": recovered, "resets_noticed": self.resets_noticed,
            "retries": sum(r.attempts - 1 for r in self.records),
            "wall_s": _summary(walls), "wall_s_no_fault": _summary(calm), "elapsed_s": round(elapsed_s, 1),
            "host_rss": {**self.rss, "growth_pct": None if growth is None else round(100 * growth, 2)},
            "device_memory": {"marks": self.memory_marks, "grown_after_warm_up": grown,
                              "constant": not any(grown.values())},
            "cable": ({"host_to_device": vars(self.cable.tx_counts), "device_to_host": vars(self.cable.rx_counts)}
                      if self.cable else None),
            "link_repairs": dict(self.repairs),
            "fault_plan": {str(k): v for k, v in self.plan.items()},
            # every frame a fault hit or that took over 1.5 x the median: what happened to it
            "frames_of_note": [{"frame": r.index, "wall_s": round(r.wall_s, 3), "attempts": r.attempts,
                                "fault": r.fault, "cable_faults": r.link_faults, "link": r.repairs,
                                "reset_noticed": r.reset_noticed, "wrong_tiles": r.wrong_tiles}
                               for r in self.records if r.hit or r.wall_s > slow],
            "firmware_version": self.info.firmware_version,
        }


def _summary(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p99": None, "max": None, "count": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(np.ceil(0.99 * len(ordered))) - 1)]
    return {"median": round(statistics.median(ordered), 3), "p99": round(p99, 3),
            "max": round(ordered[-1], 3), "count": len(ordered)}


def targets(report: dict) -> dict[str, bool]:
    """Issue 36's targets, each met or not, from the report's own figures."""
    calm = report["wall_s_no_fault"]
    growth = report["host_rss"]["growth_pct"]
    return {
        "no wrong tiles": report["wrong_tiles"] == 0,
        "no hangs": report["hangs"] == 0 and report["frames"] == report["frames_asked"],
        "every fault recovered": all(report["recovered"].get(k, 0) == n for k, n in report["faults"].items()),
        "host RSS growth <= 5 %": growth is not None and growth <= 5.0,
        "device high-water marks never above the warm-up's": report["device_memory"]["constant"],
        "p99 <= 2 x median (frames no fault hit)": calm["count"] > 0 and calm["p99"] <= 2 * calm["median"],
    }


def markdown(report: dict) -> str:
    w, c = report["wall_s"], report["wall_s_no_fault"]
    rss = report["host_rss"]
    marks = report["device_memory"]["marks"]
    lines = [f"# Soak: {report['frames']} of {report['frames_asked']} frames on `--port {report['port']}`"
             + (" at board speed" if report["board_speed"] else ""), "",
             f"Regenerate: `{report['command']}`" if report.get("command") else "", "",
             f"Firmware: {report['firmware_version']}; seed {report['seed']}; faults: "
             f"{', '.join(report['fault_kinds']) or 'none'}; {report['elapsed_s']:.0f} s in all.", "",
             "| fault | frames hit | recovered |", "|---|---:|---:|"]
    lines += [f"| {k} | {n} | {report['recovered'].get(k, 0)} |" for k, n in report["faults"].items()]
    lines += ["", f"Wrong tiles (device != host TFLM): **{report['wrong_tiles']}**; hangs: {report['hangs']}; "
              f"retries: {report['retries']}; resets the host noticed: {report['resets_noticed']}.", "",
              "| frame wall time (s) | median | p99 | max | frames |", "|---|---:|---:|---:|---:|",
              f"| all frames | {w['median']} | {w['p99']} | {w['max']} | {w['count']} |",
              f"| frames no fault hit | {c['median']} | {c['p99']} | {c['max']} | {c['count']} |", "",
              f"Host RSS: {rss.get('start_bytes', 0) / 2**20:.1f} MiB at frame {rss.get('at_frame')}, "
              f"{rss['end_bytes'] / 2**20:.1f} MiB at frame {rss['end_frame']} ({rss['growth_pct']:+.2f} %).", "",
              "| device marks after frame | stack B | heap B | arena used B | uptime ms |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {m['after_frame']} | {m['stack_high_water']} | {m['heap_high_water']} | {m['arena_used_bytes']} | "
              f"{m['uptime_ms']} |" for m in marks]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in targets(report).items()]
    return "\n".join(lines) + "\n"
