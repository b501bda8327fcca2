"""Link benchmark against the virtual board (`tinymirnet bench-link`).

What one QQVGA frame costs on the serial link and around it, measured at the host side by
wrapping the port (every byte read and written is counted and kept for decoding):

* payload efficiency of the tile traffic: payload bytes / bytes on the wire for the messages
  of an enhancement (TILEs + DONE), and the pixel bytes alone / wire bytes;
* virtual-link throughput: a raw frame read back with READ_FRAME (device -> host) and an
  upload (host -> device, one ACK per chunk), in bytes/s on the wire;
* time per frame for a CAPTURE (raw frame + every tile), split into
  inference (the device's invoke time, from TILE/DONE), transfer (the rest of the device's
  job: camera, link writes, polling) and host overhead (host wall time minus the device job:
  command round trip, decoding, stitching), with end-to-end / pure inference;
  and the same for an upload + RUN of an image (ENHANCE).

Medians over N frames (default 5) of one run; written as JSON and markdown, atomically.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

from tinymirnet.model.samples import resize_to, sample_photo, synthesize_low_light

from .board_link import check_handshake, open_device
from .host_model import HostModel
from .protocol import (FRAMING_BYTES, PIXEL_FORMAT_YUV422, Connection, FrameDecoder, MessageType, Tile,
                       rgb888_to_frame)


TARGET_RATIO = 1.2  # end-to-end / pure inference on the virtual board


class CountingPort:
    """A pyserial-like port that counts (and can record) what passes through it."""

    def __init__(self, port: Any):
        self.port = port
        self.bytes_read = 0
        self.bytes_written = 0
        self.recording: bytearray | None = None

    @property
    def name(self) -> str:
        return str(getattr(self.port, "name", None) or getattr(self.port, "port", None))

    @property
    def timeout(self):
        return self.port.timeout

    @timeout.setter
    def timeout(self, value) -> None:
        self.port.timeout = value

    @property
    def in_waiting(self) -> int:
        return self.port.in_waiting

    def read(self, size: int = 1) -> bytes:
        data = self.port.read(size)
        self.bytes_read += len(data)
        if self.recording is not None:
            self.recording += data
        return data

    def write(self, data: bytes) -> int:
        self.bytes_written += len(data)
        return self.port.write(data)

    def close(self) -> None:
        self.port.close()


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _tile_traffic(recorded: bytes) -> dict:
    frames = FrameDecoder().feed(recorded)
    stream = [f for f in frames if f.type in (MessageType.TILE, MessageType.DONE)]
    payload = sum(len(f.payload) for f in stream)
    wire = sum(len(f.payload) + FRAMING_BYTES for f in stream)
    pixels = sum(len(f.payload) - Tile._LAYOUT.size for f in stream if f.type == MessageType.TILE)
    tiles = [f for f in stream if f.type == MessageType.TILE]
    full = max(tiles, key=lambda f: len(f.payload))
    return {
        "messages": len(stream), "payload_bytes": payload, "wire_bytes": wire,
        "bytes_read_at_host": len(recorded),
        "payload_efficiency": round(payload / wire, 4),
        "pixel_efficiency": round(pixels / wire, 4),
        "full_tile_payload_efficiency": round(len(full.payload) / (len(full.payload)
                                                                   + FRAMING_BYTES), 4),
    }


def run_benchmark(frames: int = 5, port: str = "sim") -> dict:
    """Measures `frames` captures, uploads and frame reads against a virtual board (or a
    board on `port`: a serial device, auto, qemu)."""
    counters: list[CountingPort] = []

    def counted(serial_port):
        counters.append(CountingPort(serial_port))
        return counters[-1]

    with open_device(port, wrap=counted) as (link, board):
        info = link.hello()
        check_handshake(info, HostModel.load(), link.name)
        result = _measure(link, counters[0], info, frames)
    result["device"] = {"port": port, "firmware_version": info.firmware_version,
                        "model_sha256": info.model_sha256,
                        "frame": [info.frame_width, info.frame_height],
                        "tile": info.tile_size, "halo": info.halo, "tiles": info.tile_count,
                        "max_payload": info.max_payload}
    if board is not None and hasattr(board, "stats"):
        result["virtual_board"] = {"invokes": board.stats.invokes,
                                   "invoke_s": round(board.stats.invoke_s, 3),
                                   "link_write_s": round(board.stats.write_s, 4),
                                   "camera_s": round(board.stats.capture_s, 4)}
    return result


def _measure(link: Connection, counter: CountingPort, info, frames: int) -> dict:
    link.capture()  # warm-up (first invocations, page faults), not counted

    # Tile traffic of one enhancement (RUN of the captured frame), recorded at the host.
    counter.recording = bytearray()
    link.run()
    traffic = _tile_traffic(bytes(counter.recording))
    counter.recording = None

    captures, uploads, reads = [], [], []
    image = rgb888_to_frame(synthesize_low_light(
        resize_to(sample_photo("chelsea"), info.frame_width, info.frame_height)), PIXEL_FORMAT_YUV422)
    for _ in range(frames):
        before = counter.bytes_read + counter.bytes_written
        started = time.perf_counter()
        result = link.capture()
        wall = time.perf_counter() - started
        wire = counter.bytes_read + counter.bytes_written - before
        captures.append(_split(wall, result.enhanced, wire))

        before_w, before_r = counter.bytes_written, counter.bytes_read
        started = time.perf_counter()
        link.upload(image)
        upload_s = time.perf_counter() - started
        upload_wire = counter.bytes_written - before_w + counter.bytes_read - before_r
        started = time.perf_counter()
        enhanced = link.run()
        run_wall = time.perf_counter() - started
        split = _split(upload_s + run_wall, enhanced, None)
        split.update(upload_s=upload_s, upload_wire_bytes=upload_wire)
        uploads.append(split)

        before = counter.bytes_read
        started = time.perf_counter()
        link.read_frame()
        read_s = time.perf_counter() - started
        reads.append((read_s, counter.bytes_read - before))

    def med(rows, key):
        return _median([r[key] for r in rows])

    def summary(rows):
        out = {k: round(med(rows, k), 4) for k in
               ("end_to_end_s", "inference_s", "transfer_s", "host_overhead_s", "ratio")}
        out["ratio_target"] = TARGET_RATIO
        out["meets_target"] = out["ratio"] <= TARGET_RATIO
        return out

    capture = summary(captures)
    capture["wire_bytes"] = int(med(captures, "wire_bytes"))
    capture["frames_per_s"] = round(1.0 / capture["end_to_end_s"], 3)
    upload = summary(uploads)
    upload["upload_s"] = round(med(uploads, "upload_s"), 4)
    upload["upload_wire_bytes"] = int(med(uploads, "upload_wire_bytes"))
    frame_bytes = info.frame_bytes
    read_s = _median([r[0] for r in reads])
    read_wire = int(_median([r[1] for r in reads]))
    return {
        "frames": frames,
        "tile_traffic": traffic,
        "throughput": {
            "raw_frame_read": {"payload_bytes": frame_bytes, "wire_bytes_read": read_wire,
                               "seconds": round(read_s, 5),
                               "wire_bytes_per_s": round(read_wire / read_s),
                               "frame_bytes_per_s": round(frame_bytes / read_s)},
            "raw_frame_upload": {"payload_bytes": frame_bytes,
                                 "wire_bytes": upload["upload_wire_bytes"],
                                 "seconds": upload["upload_s"],
                                 "frame_bytes_per_s": round(frame_bytes / upload["upload_s"])},
        },
        "capture_frame": capture,
        "enhance_frame": upload,
        "per_frame": {"capture": captures, "enhance": uploads,
                      "read_frame_s": [round(r[0], 5) for r in reads]},
    }


def _split(wall_s: float, enhanced, wire_bytes: int | None) -> dict:
    done = enhanced.done
    inference_s = (done.inference_us if done else enhanced.device_inference_us) / 1e6
    job_s = done.elapsed_us / 1e6 if done else wall_s
    row = {"end_to_end_s": round(wall_s, 5), "inference_s": round(inference_s, 5),
           "transfer_s": round(max(0.0, job_s - inference_s), 5),
           "host_overhead_s": round(max(0.0, wall_s - job_s), 5),
           "ratio": round(wall_s / inference_s, 4) if inference_s else None}
    if wire_bytes is not None:
        row["wire_bytes"] = wire_bytes
    return row


def markdown(report: dict) -> str:
    t = report["tile_traffic"]
    th = report["throughput"]
    c, e = report["capture_frame"], report["enhance_frame"]
    d = report["device"]
    lines = [
        "# Link benchmark (virtual board)" if d["port"] == "sim" else "# Link benchmark",
        "",
        f"Measured by `tinymirnet bench-link` on {report['measured_at']} ({report['host']}), "
        f"against {d['firmware_version']} on `{d['port']}`: {d['frame'][0]}x{d['frame'][1]} "
        f"frames, {d['tiles']} tiles of {d['tile']} px (halo {d['halo']}), model "
        f"`{d['model_sha256'][:16]}…`. Medians over {report['frames']} frames of one run.",
        "",
        "The virtual board is the firmware core compiled for the host behind a pseudo-terminal; "
        "its model port runs the int8 model in the TFLM runtime on the host CPU, so the "
        "inference times are the host's, not the Cortex-M4's, and the pty is far faster than "
        "USB full speed. What carries over to the board is the protocol overhead (bytes) and the "
        "structure of the time budget.",
        "",
        "## Tile traffic",
        "",
        "| | value |",
        "|---|---:|",
        f"| TILE + DONE messages per frame | {t['messages']} |",
        f"| payload bytes / wire bytes | {t['payload_bytes']:,} / {t['wire_bytes']:,} = "
        f"**{t['payload_efficiency']:.3f}** |",
        f"| pixel bytes / wire bytes | {t['pixel_efficiency']:.3f} |",
        f"| one full tile: payload / wire | {t['full_tile_payload_efficiency']:.3f} |",
        "",
        "## Virtual-link throughput",
        "",
        "| transfer | frame bytes | wire bytes | time | throughput |",
        "|---|---:|---:|---:|---:|",
        f"| raw frame, device → host (READ_FRAME) | {th['raw_frame_read']['payload_bytes']:,} | "
        f"{th['raw_frame_read']['wire_bytes_read']:,} | "
        f"{th['raw_frame_read']['seconds'] * 1e3:.2f} ms | "
        f"{th['raw_frame_read']['wire_bytes_per_s'] / 1e6:.2f} MB/s |",
        f"| raw frame, host → device (upload, ACK per chunk) | "
        f"{th['raw_frame_upload']['payload_bytes']:,} | {th['raw_frame_upload']['wire_bytes']:,} | "
        f"{th['raw_frame_upload']['seconds'] * 1e3:.2f} ms | "
        f"{th['raw_frame_upload']['frame_bytes_per_s'] / 1e6:.2f} MB/s |",
        "",
        "## Time per frame",
        "",
        "transfer = the device's job time outside inference (camera, link writes, polling); "
        "host overhead = host wall time minus the device's job time (command round trip, "
        "decoding, stitching; for ENHANCE also the upload). Each column is the median over "
        "the frames on its own, so the columns need not add up exactly.",
        "",
        "| frame | end to end | inference | transfer | host overhead | end to end / inference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, row in (("CAPTURE (raw frame + tiles)", c), ("ENHANCE (upload + RUN)", e)):
        mark = "≤" if row["meets_target"] else ">"
        lines.append(f"| {label} | {row['end_to_end_s'] * 1e3:.1f} ms | "
                     f"{row['inference_s'] * 1e3:.1f} ms | {row['transfer_s'] * 1e3:.1f} ms | "
                     f"{row['host_overhead_s'] * 1e3:.1f} ms | **{row['ratio']:.3f}** "
                     f"({mark} {TARGET_RATIO}) |")
    lines += ["", f"Wire bytes of one capture: {c['wire_bytes']:,}. Regenerate this report with "
              "`tinymirnet bench-link` when the model, the tiling or the protocol changes.", ""]
    return "\n".join(lines)
