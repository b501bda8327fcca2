"""The device report: what one frame costs the board, counted on the emulated Cortex-M4.

``tinymirnet device-report`` builds ``probe.elf`` and ``board.elf`` with ``firmware/qemu``'s
Makefile into ``firmware/build/qemu`` (the firmware's core, ``firmware/src/tflm_model.cpp`` and
the board's TFLM, Chirale_TensorFlowLite 2.0.0 with CMSIS-NN, for Cortex-M4F), runs the probe under ``qemu-system-arm -M mps2-an386 -icount shift=0``
(one instruction = 1 ns of virtual time, so the 25 MHz timer ticks every 40 instructions), and
writes JSON and markdown: instructions per context invoke, per tile, per interpreter switch, per
frame (two whole frames through ``tinymirnet::Device``, CAPTURE to DONE), per-op shares from
TFLM's profiler, the arena each model uses on the 32-bit target, the stack high-water mark, and
text/rodata/data/bss by component from the board image's linker map (everything but Mbed OS,
which the virtual board replaces with a few hundred bytes of its own).

Instructions are not cycles: a Cortex-M4 takes more than one cycle for loads, taken branches
and multiplies, so the times at 64 MHz at one instruction per cycle are lower bounds. The
report's cycle estimate comes from a model, not a measurement: ``firmware/qemu/cycle_model.c``,
a QEMU plugin, charges every instruction the probe executes in its whole frames the cycles the
Cortex-M4 Technical Reference Manual gives it, as a low and a high bound (its docstring).
"""
from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from tinymirnet.model.files import report_path as relative_path
from tinymirnet.model.files import write_report
from tinymirnet.model.paths import FIRMWARE_MODEL_DIR, QEMU_BUILD_DIR, QEMU_DIR, REPO_ROOT
from tinymirnet.quantize.export import (ContextExport, ExportError, ExportInfo, export_info_from_artifacts,
                                        write_firmware_files)
from tinymirnet.quantize.flatbuffer import op_names
from tinymirnet.quantize.native_build import run_make
from tinymirnet.quantize.tflm import TflmModel, arena_after_one_run

from .qemu_board import ARM_TOOLS, ensure_board_elf


INSTRUCTIONS_PER_TICK = 40  # -icount shift=0: 1 ns per instruction, 40 ns per 25 MHz tick
BOARD_HZ = 64_000_000
COMPONENTS = (  # (name, pattern on the input file of a section in the linker map)
    ("TFLM (Chirale_TensorFlowLite 2.0.0, CMSIS-NN)", re.compile(r"libtflm\.a")),
    ("model flatbuffers (model_data.cc)", re.compile(r"model/model_data\.o")),
    ("TFLM glue (firmware/src/tflm_model.cpp)", re.compile(r"src/tflm_model\.o")),
    ("firmware core (tinymirnet_core)", re.compile(r"/core/\w+\.o")),
    ("C/C++ runtime (newlib-nano, libgcc, libstdc++)", re.compile(r"/lib(c_nano|gcc|m|nosys|stdc\+\+_nano)\.a|crt")),
    ("virtual board main: Device (frame and tile buffers), ports, platform", re.compile(r"(board_main|mps2_an386|startup)\.o")),
)
_SECTION = re.compile(r"^ (\.(?:text|rodata|data|bss)[^\s]*)\s*(?:\n\s+)?(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\S+)",
                      re.MULTILINE)


class DeviceReportError(RuntimeError):
    pass


def run_probe(elf: Path, timeout: float = 900, cycle_model: Path | None = None) -> dict:
    """The probe's TMREPORT line, parsed; with `cycle_model` (the plugin's .so) also the cycle
    model's TMCYCLES line, as "cycle_model"."""
    returncode, output, cycles = run_on_qemu(elf, timeout, cycle_model)
    line = next((l for l in output.splitlines() if l.startswith("TMREPORT ")), None)
    if returncode != 0 or line is None:
        hint = (" (a QEMU built without plugin support cannot run the cycle model: add --no-cycle-model)"
                if cycle_model is not None and "plugin" in output.lower() else "")
        raise DeviceReportError(f"the probe failed on QEMU (exit {returncode}): {output.strip()[-600:]}{hint}")
    probe = json.loads(line[len("TMREPORT "):])
    if cycle_model is not None:
        probe["cycle_model"] = cycles
    return probe


def run_on_qemu(elf: Path, timeout: float, cycle_model: Path | None = None) -> tuple[int, str, dict | None]:
    """`elf` on QEMU's mps2-an386 (-icount shift=0, semihosting): its exit status and output and,
    with `cycle_model`, the counts the plugin printed (its TMCYCLES line) between the ELF's
    cycle_window_open and cycle_window_close."""
    command = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
               "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "plugin.log"
        if cycle_model is not None:
            window = ",".join(f"{key}={symbol_address(elf, f'cycle_window_{key}'):#x}" for key in ("open", "close"))
            command[1:1] = ["-d", "plugin", "-D", str(log), "-plugin", f"{cycle_model},{window}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        output = result.stdout + result.stderr
        if cycle_model is None or result.returncode != 0:
            return result.returncode, output, None
        text = log.read_text() if log.is_file() else ""
    line = next((l for l in text.splitlines() if l.startswith("TMCYCLES ")), None)
    if line is None:
        raise DeviceReportError(f"the cycle model ({cycle_model}) printed no TMCYCLES line: {text.strip()[-300:]}")
    return result.returncode, output, json.loads(line[len("TMCYCLES "):])


def symbol_address(elf: Path, name: str) -> int:
    """The address of a function in an ARM ELF (its Thumb bit cleared), from arm-none-eabi-nm."""
    result = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16) & ~1
    raise DeviceReportError(f"{elf} has no symbol {name} (rebuild it: make -C firmware/qemu probe)")


def build_cycle_model() -> Path:
    """firmware/build/qemu/cycle_model.so, the QEMU plugin, built for this machine."""
    if shutil.which("cc") is None:
        raise DeviceReportError("the cycle model is a QEMU plugin built with this machine's C compiler: "
                                "install one (apt-get install gcc), or add --no-cycle-model")
    run_make(QEMU_DIR, ("cycle-model",), tools=ARM_TOOLS)
    return QEMU_BUILD_DIR / "cycle_model.so"


def memory_by_component(map_text: str) -> dict[str, dict[str, int]]:
    """text/rodata/data/bss bytes of each component, from a GNU ld map's input sections."""
    table: dict[str, dict[str, int]] = {}
    start = map_text.find("Linker script and memory map")
    for section, address, size, path in _SECTION.findall(map_text[start:]):
        if int(address, 16) == 0 and section in (".text", ".data", ".bss"):
            continue  # empty placeholders of each object
        kind = section.split(".")[1]
        kind = "rodata" if kind == "rodata" else kind
        name = next((n for n, pattern in COMPONENTS if pattern.search(path)), "other")
        row = table.setdefault(name, {"text": 0, "rodata": 0, "data": 0, "bss": 0})
        row[kind] += int(size, 16)
    return table


def _instructions(ticks: int) -> int:
    return ticks * INSTRUCTIONS_PER_TICK


def _op_shares(entries: list[dict]) -> list[dict]:
    total = sum(e["ticks"] for e in entries) or 1
    rows = [{"op": e["op"], "calls": e["calls"], "instructions": _instructions(e["ticks"]),
             "share": round(e["ticks"] / total, 4)} for e in entries]
    return sorted(rows, key=lambda r: -r["instructions"])


def _tool_version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "unknown"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def build_report(probe: dict, map_text: str, model_dir: Path = FIRMWARE_MODEL_DIR) -> dict:
    frames = probe["frames"]
    frame_instr = [_instructions(f["ticks"]) for f in frames]
    switch = {"context_model": _instructions(probe["context_first_ticks"] - probe["context_again_ticks"]),
              "tile_model": _instructions(probe["tile_first_ticks"] - probe["tile_again_ticks"])}
    memory = memory_by_component(map_text)
    settings = model_dir / "tinymirnet" / "model_settings.h"
    shas = re.findall(r'k(?:Context)?ModelSha256\[\] =\s*"([0-9a-f]{64})"', settings.read_text()) if settings.is_file() else []
    per_frame = int(statistics.median(frame_instr))
    return {
        "what": "instructions the firmware executes on an emulated Cortex-M4F (QEMU mps2-an386, -icount shift=0), "
                "board TFLM Chirale_TensorFlowLite 2.0.0 with CMSIS-NN, firmware/src/tflm_model.cpp; "
                "instructions are not cycles (a real Cortex-M4 needs more cycles)",
        "tflm": "Chirale_TensorFlowLite 2.0.0 (../shared/firmware-deps), built by firmware/tflm for Cortex-M4F -O2",
        "machine": "qemu-system-arm -M mps2-an386 (Cortex-M4F), -icount shift=0",
        "tools": {"compiler": _tool_version(["arm-none-eabi-g++", "--version"]),
                  "qemu": _tool_version(["qemu-system-arm", "--version"])},
        "git_commit": _git_commit(),
        "model_sha256": shas,  # as model_settings.h lists them (context model first)
        "frame_context": probe["frame_context"],
        "tiles_per_frame": probe["tile_count"],
        "instructions": {
            "per_frame": per_frame,
            "per_frame_each": frame_instr,
            "per_context_invoke": _instructions(probe["context_again_ticks"]),
            "per_tile_invoke": _instructions(probe["tile_again_ticks"]),
            "per_tile_in_frames": {"min": _instructions(min(f["tile_min_ticks"] for f in frames)),
                                   "max": _instructions(max(f["tile_max_ticks"] for f in frames))},
            "per_interpreter_switch": switch,
            "switches_per_frame": 2 if probe["frame_context"] else 0,
            "model_begin": _instructions(probe["begin_ticks"]),
        },
        "seconds_at_64_mhz_one_instruction_per_cycle": {"per_frame": round(per_frame / BOARD_HZ, 2),
                                                        "per_tile": round(_instructions(probe["tile_again_ticks"]) / BOARD_HZ, 3)},
        "bytes_sent_per_frame": frames[0]["bytes_sent"],
        "op_shares": {"tile_model": _op_shares(probe["tile_ops"]), "context_model": _op_shares(probe["context_ops"])},
        "arena_bytes_32bit": {"tile_model": probe["arena_used_tile"], "context_model": probe["arena_used_context"],
                              "arena_size": probe["arena_size"]},
        "stack": {"reserved": probe["stack_reserved"], "high_water": probe["stack_reserved"] - probe["stack_unused"]},
        "memory_bytes": memory,
        "memory_totals": {k: sum(r[k] for r in memory.values()) for k in ("text", "rodata", "data", "bss")},
        **({"cycle_estimate": cycle_estimate(probe["cycle_model"], len(frames))} if "cycle_model" in probe else {}),
    }


def cycle_estimate(model: dict, frames: int) -> dict:
    """Per frame: the cycle model's low and high bounds (firmware/qemu/cycle_model.c) and the
    instruction mix they come from, over the probe's `frames` whole frames."""
    per = lambda n: n // frames  # noqa: E731
    low, high, ins = per(model["cycles_low"]), per(model["cycles_high"]), per(model["instructions"])
    return {
        "what": "a model, not a measurement: every instruction of the whole frames charged its Cortex-M4 "
                "cycles (ARM DDI 0439, table 3-1 and the FPU chapter); low: taken-branch refill 1 cycle, "
                "neighbouring single loads/stores pipelined (1 cycle), IT folded, divides 2 cycles; high: "
                "refill 3 cycles, every single load/store 2, IT 1, divides 12; both with zero wait states",
        "model": "firmware/qemu/cycle_model.c",
        "cycles_per_frame": {"low": low, "high": high},
        "seconds_per_frame_at_64_mhz": {"low": round(low / BOARD_HZ, 2), "high": round(high / BOARD_HZ, 2)},
        "cycles_per_instruction": {"low": round(low / ins, 3), "high": round(high / ins, 3)},
        "instructions_per_frame": ins,  # counted by the plugin: the timer's count, checked by the tests
        "taken_branches_per_frame": per(model["taken_branches"]),
        "instruction_mix_per_frame": {kind: per(n) for kind, n in model["kinds"].items()},
    }


def markdown(report: dict) -> str:
    ins = report["instructions"]
    m = lambda n: f"{n / 1e6:,.1f} M"  # noqa: E731
    lines = [
        "# Device report: one frame on the board's TFLM",
        "",
        f"Measured on {report['machine']} with {report['tflm']}, through the firmware's own "
        f"`firmware/src/tflm_model.cpp` and `tinymirnet::Device` (commit {report['git_commit'][:12]}). "
        f"Regenerate: `{report.get('command', 'tinymirnet device-report')}`.",
        "",
        "**Instructions are not cycles**: a Cortex-M4 spends more than one cycle on loads, taken branches "
        "and multiplies, so the times at 64 MHz and one instruction per cycle below are lower bounds, not "
        "predictions" + (" (a cycle model's estimate is at the end)." if report.get("cycle_estimate") else "."),
        "",
        "| what | instructions | at 64 MHz, 1 instruction/cycle |",
        "|---|---|---|",
        f"| one QQVGA frame (CAPTURE to DONE, {report['tiles_per_frame']} tiles) | {m(ins['per_frame'])} | "
        f"{ins['per_frame'] / BOARD_HZ:.2f} s |",
        f"| context model invoke | {m(ins['per_context_invoke'])} | {ins['per_context_invoke'] / BOARD_HZ * 1e3:.0f} ms |",
        f"| tile model invoke | {m(ins['per_tile_invoke'])} | {ins['per_tile_invoke'] / BOARD_HZ * 1e3:.0f} ms |",
        f"| interpreter switch to the context model | {m(ins['per_interpreter_switch']['context_model'])} | |",
        f"| interpreter switch to the tile model | {m(ins['per_interpreter_switch']['tile_model'])} | |",
        f"| model start (both interpreters once) | {m(ins['model_begin'])} | |",
        "",
        f"Switches per frame: {ins['switches_per_frame']}. Bytes sent per frame: {report['bytes_sent_per_frame']:,}.",
        "",
        "## Where the instructions go (TFLM profiler, one invoke each)",
        "",
    ]
    for model, rows in report["op_shares"].items():
        lines += [f"**{model.replace('_', ' ')}**: " + ", ".join(
            f"{r['op']} {100 * r['share']:.1f} %" for r in rows if r["share"] >= 0.005), ""]
    arena = report["arena_bytes_32bit"]
    lines += [
        "## Memory (32-bit target)",
        "",
        f"Tensor arena used: tile model {arena['tile_model']:,} B, context model {arena['context_model']:,} B "
        f"(arena {arena['arena_size']:,} B). Stack high-water {report['stack']['high_water']:,} B of "
        f"{report['stack']['reserved']:,} B reserved (the probe's run).",
        "",
        "| component | text | rodata | data | bss |",
        "|---|---|---|---|---|",
    ]
    for name, row in sorted(report["memory_bytes"].items(), key=lambda kv: -(kv[1]["text"] + kv[1]["rodata"])):
        lines.append(f"| {name} | {row['text']:,} | {row['rodata']:,} | {row['data']:,} | {row['bss']:,} |")
    t = report["memory_totals"]
    lines += [f"| **total (no Mbed OS)** | {t['text']:,} | {t['rodata']:,} | {t['data']:,} | {t['bss']:,} |", ""]
    lines += comparison_lines(report)
    if c := report.get("cycle_estimate"):
        cyc, sec = c["cycles_per_frame"], c["seconds_per_frame_at_64_mhz"]
        mix = c["instruction_mix_per_frame"]
        top = sorted(mix.items(), key=lambda kv: -kv[1])
        lines += [
            "## Cycles: an estimate from a model, not a measurement",
            "",
            f"`{c['model']}`, a QEMU plugin, charges every instruction of the whole frames the cycles the Cortex-M4 "
            "Technical Reference Manual gives it: **"
            f"{m(cyc['low'])} to {m(cyc['high'])} cycles per frame, {sec['low']:.1f} to {sec['high']:.1f} s at "
            f"64 MHz** ({c['cycles_per_instruction']['low']:.2f} to {c['cycles_per_instruction']['high']:.2f} "
            "cycles per instruction). Low: a taken branch refills the pipeline in 1 cycle, neighbouring "
            "single loads and stores pipeline to 1 cycle each, IT folds, divides take 2 cycles; high: "
            "3 cycles, 2 per load or store, IT 1, divides 12. Both assume zero wait states (the "
            "nRF52840's flash behind its cache, its RAM), so a real board should not be faster than the "
            "low bound.",
            "",
            f"Instruction mix per frame ({m(c['instructions_per_frame'])} instructions, "
            f"{m(c['taken_branches_per_frame'])} taken branches): "
            + ", ".join(f"{kind.replace('_', ' ')} {100 * n / c['instructions_per_frame']:.1f} %"
                        for kind, n in top if n >= 0.001 * c["instructions_per_frame"]) + ".",
            "",
        ]
    return "\n".join(lines)


def build_for_artifacts(artifacts: Path, build_dir: Path) -> Path:
    """Probe and board images for another quantized network (a `tinymirnet quantize --out DIR`
    folder): its firmware files are exported into build_dir, the shipped ones stay untouched.
    This is how a candidate network is priced in instructions before it is shipped."""
    try:
        info = export_info_from_artifacts(artifacts)
    except ExportError as e:
        raise DeviceReportError(str(e)) from None
    write_firmware_files(info, build_dir / "model")
    _build_firmware(build_dir, ("board", "probe"))
    return build_dir


def _build_firmware(build_dir: Path, targets: tuple[str, ...]) -> None:
    """The QEMU images with the model files in build_dir/model, built into build_dir."""
    run_make(QEMU_DIR, targets, {"MODEL_DIR": build_dir / "model", "BUILD": build_dir}, tools=ARM_TOOLS)


def price_on_the_board(flatbuffer: bytes, tiling, build_dir: Path, context_flatbuffer: bytes | None = None) -> dict:
    """Instructions one frame of this network costs on the emulated Cortex-M4: the flatbuffer
    (with `context_flatbuffer`, a frame-context tile model and its context model) exported with
    `tiling` into build_dir, the probe built with it and run under QEMU. The budget sweep uses
    it to rank candidates by what the board pays, not by MACs."""
    model = TflmModel(flatbuffer)
    if (model.context_index is None) != (context_flatbuffer is None):
        raise DeviceReportError("a frame-context tile model is priced with its context model, a one-model "
                                "network without one")
    arena = arena_after_one_run(model)
    context = None
    if context_flatbuffer is not None:
        ctx = TflmModel(context_flatbuffer)
        _, h, w, _ = ctx.input_shape
        context = ContextExport(context_flatbuffer, (int(w), int(h)), int(model.context_shape[-1]),
                                ctx.input_quant, ctx.output_quant, model.context_quant, model.image_index,
                                model.context_index, op_names(context_flatbuffer))
        arena = max(arena, arena_after_one_run(ctx))
    info = ExportInfo(flatbuffer, tiling, model.input_quant, model.output_quant, arena, op_names(flatbuffer), context)
    write_firmware_files(info, build_dir / "model")
    _build_firmware(build_dir, ("probe",))
    probe = run_probe(build_dir / "probe.elf")
    frames = [_instructions(f["ticks"]) for f in probe["frames"]]
    return {"instructions_per_frame": int(statistics.median(frames)),
            "instructions_per_tile": _instructions(probe["tile_again_ticks"]),
            "arena_bytes_32bit": max(probe["arena_used_tile"], probe.get("arena_used_context") or 0),
            "tile_op_shares": {r["op"]: r["share"] for r in _op_shares(probe["tile_ops"])}}


def comparison(report: dict, others: list[Path]) -> list[dict]:
    """This network beside earlier device reports (the networks it replaced, its unpruned self),
    each named by its file: instructions per frame and per tile invoke, the tile model's per-op
    shares."""
    rows = []
    for path in others:
        try:
            other = json.loads(Path(path).read_text())
            ins = other["instructions"]
            # Named by its file: device_report_half_resolution.json -> "half_resolution".
            name = Path(path).stem.removeprefix("device_report").lstrip("_") or "shipped"
            rows.append({"report": relative_path(path), "network": name,
                         "per_frame": ins["per_frame"], "per_tile_invoke": ins["per_tile_invoke"],
                         "tiles_per_frame": other["tiles_per_frame"],
                         "tile_op_shares": other["op_shares"]["tile_model"]})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DeviceReportError(f"--compare {path}: not a device report ({e})") from None
    return rows


def comparison_lines(report: dict) -> list[str]:
    rows = report.get("compared_with")
    if not rows:
        return []
    ins = report["instructions"]
    lines = ["## Before and after", "",
             "| network (report) | M instructions per frame | M per tile invoke | tiles | this network / that one |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['network']} (`{r['report']}`) | {r['per_frame'] / 1e6:,.1f} | "
                     f"{r['per_tile_invoke'] / 1e6:,.2f} | {r['tiles_per_frame']} | "
                     f"{ins['per_frame'] / r['per_frame']:.2f} |")
    lines.append(f"| **this network** | **{ins['per_frame'] / 1e6:,.1f}** | {ins['per_tile_invoke'] / 1e6:,.2f} | "
                 f"{report['tiles_per_frame']} | 1.00 |")
    lines += ["", "Tile model, per-op shares (TFLM profiler):", ""]
    for r in rows:
        lines.append(f"* {r['network']}: " + ", ".join(f"{o['op']} {100 * o['share']:.1f} %"
                                                      for o in r["tile_op_shares"] if o["share"] >= 0.005))
    lines.append("* this network: " + ", ".join(f"{o['op']} {100 * o['share']:.1f} %"
                                                for o in report["op_shares"]["tile_model"] if o["share"] >= 0.005))
    return lines + [""]


def device_report(report_path: Path, artifacts: Path | None = None, cycle_model: bool = True,
                  compare: list[Path] = ()) -> dict:
    if artifacts is None:
        probe_elf, board_map = ensure_board_elf("probe"), QEMU_BUILD_DIR / "board.map"
        ensure_board_elf("board")
    else:
        build_dir = build_for_artifacts(Path(artifacts), QEMU_BUILD_DIR / "candidates" / Path(artifacts).resolve().name)
        probe_elf, board_map = build_dir / "probe.elf", build_dir / "board.map"
    model_dir = FIRMWARE_MODEL_DIR if artifacts is None else board_map.parent / "model"
    plugin = build_cycle_model() if cycle_model else None
    report = build_report(run_probe(probe_elf, cycle_model=plugin), board_map.read_text(), model_dir)
    report["network"] = relative_path(artifacts) if artifacts else "shipped (firmware/lib/tinymirnet_model)"
    if compare:
        report["compared_with"] = comparison(report, list(compare))
    report["command"] = ("tinymirnet device-report" + (f" --artifacts {relative_path(artifacts)}" if artifacts else "")
                         + f" --report {relative_path(report_path)}"
                         + "".join(f" {'--compare ' if k == 0 else ''}{relative_path(c)}" for k, c in enumerate(compare))
                         + ("" if cycle_model else " --no-cycle-model"))
    write_report(report_path, report, markdown(report))
    return report
