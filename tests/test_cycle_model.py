"""The Cortex-M4 cycle model (firmware/qemu/cycle_model.c, a QEMU plugin) on a program whose
every instruction's cost is known: ten turns of a loop holding one instruction of each kind the
model tells apart, between the two marker functions the probe calls around its frames."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("qemu-system-arm", "arm-none-eabi-gcc", "arm-none-eabi-objdump", "cc")),
    reason="needs qemu-system-arm, the arm-none-eabi toolchain and a C compiler (.ci/run installs them)")

# Each turn, with its cycles low / high (Cortex-M4 TRM table 3-1 and the FPU chapter).
PROGRAM = r"""
    .syntax unified
    .cpu cortex-m4
    .fpu fpv4-sp-d16
    .thumb
    .text
    .word 0x20008000                @ initial stack pointer
    .word reset + 1                 @ reset vector
    .thumb_func
reset:
    ldr r0, =0xE000ED88             @ CPACR: the FPU on
    ldr r1, [r0]
    orr r1, r1, #0x00F00000
    str r1, [r0]
    dsb
    isb
    ldr r2, =0x20000000
    movs r4, #10
    bl cycle_window_open
loop:
    ldr r1, [r2]                    @ load, first of its block   2 / 2
    ldr r3, [r2, #4]                @ load after a load          1 / 2
    str r1, [r2, #8]                @ store after a load         1 / 2
    adds r1, r1, r3                 @ alu                        1 / 1
    mla r5, r1, r3, r5              @ mla                        2 / 2
    muls r5, r1, r5                 @ mul                        1 / 1
    sdiv r6, r5, r4                 @ divide                     2 / 12
    push {r4, r5}                   @ store multiple, 2 words    3 / 3
    pop {r4, r5}                    @ load multiple, 2 words     3 / 3
    vldr s0, [r2]                   @ fp load                    2 / 2
    vmla.f32 s1, s0, s0             @ fp multiply-accumulate     3 / 3
    vadd.f32 s2, s1, s0             @ fp simple                  1 / 1
    vdiv.f32 s3, s2, s1             @ fp divide                  14 / 14
    cmp r4, #5                      @ alu                        1 / 1
    it gt                           @ it                         0 / 1
    addgt r1, r1, #1                @ alu                        1 / 1
    subs r4, r4, #1                 @ alu                        1 / 1
    bne loop                        @ branch                     1 / 1, + 1 / 3 when taken
    bl cycle_window_close
    movs r0, #0x18                  @ semihosting SYS_EXIT
    ldr r1, =0x20026                @ ADP_Stopped_ApplicationExit
    bkpt 0xab
    .thumb_func
    .global cycle_window_open
cycle_window_open:
    bx lr
    .thumb_func
    .global cycle_window_close
cycle_window_close:
    bx lr
    .ltorg
"""


def test_the_cycle_model_charges_each_kind_of_instruction_its_cortex_m4_cycles(tmp_path):
    from tinymirnet.host.device_report import build_cycle_model, run_on_qemu
    source, elf = tmp_path / "kinds.S", tmp_path / "kinds.elf"
    source.write_text(PROGRAM)
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
                    "-nostdlib", "-nostartfiles", "-Wl,-Ttext=0x0,-e,0,--no-warn-rwx-segments", "-o", str(elf),
                    str(source)], check=True, capture_output=True)
    returncode, output, counted = run_on_qemu(elf, 60, build_cycle_model())
    assert returncode == 0, output
    turns = 10
    # The window: cycle_window_open's `bx lr`, ten turns of 18 instructions, `bl cycle_window_close`.
    assert counted["windows"] == 1
    assert counted["instructions"] == 2 + 18 * turns
    assert counted["kinds"] == {
        "alu": 4 * turns, "it": turns, "mul": turns, "mla": turns, "divide": turns, "load": 2 * turns,
        "store": turns, "load_multiple": turns, "store_multiple": turns, "branch": turns + 2,
        "fp_load_store": turns, "fp_load_store_multiple": 0, "fp_move_two": 0, "fp_simple": turns,
        "fp_mac": turns, "fp_divide": turns}
    # Taken: the return from cycle_window_open and `bne loop` on all turns but the last.
    assert counted["taken_branches"] == 1 + (turns - 1)
    low_turn, high_turn = 40, 53  # the sums of the two columns above
    assert counted["cycles_low"] == turns * low_turn + 2 + 10 * 1
    assert counted["cycles_high"] == turns * high_turn + 2 + 10 * 3


CONDITIONS = "eq|ne|cs|cc|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|hs|lo"


def kind_of_mnemonic(mnemonic: str, operands: str) -> str:
    """The model's kind of an instruction, from binutils' mnemonic (an independent decoder)."""
    base = mnemonic.split(".")[0]
    if re.fullmatch(r"it[te]{0,3}", base):
        return "it"
    if base.startswith("v"):
        if base in ("vldr", "vstr"):
            return "fp_load_store"
        if base in ("vpush", "vpop") or base.startswith(("vldm", "vstm")):
            return "fp_load_store_multiple"
        if base in ("vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms", "vfnma", "vfnms"):
            return "fp_mac"
        if base in ("vdiv", "vsqrt"):
            return "fp_divide"
        return "fp_move_two" if base == "vmov" and operands.count(",") == 2 else "fp_simple"
    if re.fullmatch(rf"(b|bl|bx|blx|cbz|cbnz)({CONDITIONS})?", base):
        return "branch"
    # An integer mnemonic as written, else without a condition suffix (inside an IT block):
    # "mls" is MLS, "ldrbeq" is LDRB.
    return _integer_kind(base) or _integer_kind(re.sub(rf"({CONDITIONS})$", "", base)) or "alu"


def _integer_kind(op: str) -> str | None:
    if op in ("tbb", "tbh"):
        return "load"
    if op in ("push", "stm", "stmia", "stmdb", "stmea", "stmfd") or op.startswith("strd"):
        return "store_multiple"
    if op in ("pop", "ldm", "ldmia", "ldmdb", "ldmfd") or op.startswith("ldrd"):
        return "load_multiple"
    if op.startswith("ldr"):
        return "load"
    if op.startswith("str"):
        return "store"
    if op in ("sdiv", "udiv"):
        return "divide"
    if op in ("mla", "mls"):
        return "mla"
    if re.match(r"(mul|smul|umul|smla|umla|smus|smua|smls|smmul|smmla|smmls|umaal)", op):
        return "mul"
    return None


def test_the_decoder_agrees_with_binutils_on_every_instruction_of_the_probe():
    """All of the probe's code (the firmware, the board's TFLM, the C runtime): the plugin's
    decoder and arm-none-eabi-objdump give every instruction the same kind."""
    from tinymirnet.host.qemu_board import ARM_TOOLS, ensure_board_elf
    from tinymirnet.model.paths import QEMU_BUILD_DIR, QEMU_DIR
    from tinymirnet.quantize.native_build import run_make
    run_make(QEMU_DIR, ("cycle-model-decoder",), tools=ARM_TOOLS)
    decoder = QEMU_BUILD_DIR / "cycle_model_decoder"
    listing = subprocess.run(["arm-none-eabi-objdump", "-d", str(ensure_board_elf("probe"))], check=True,
                             capture_output=True, text=True).stdout
    line = re.compile(r"^\s*[0-9a-f]+:\s+([0-9a-f]{4})(?: ([0-9a-f]{4}))?\s+\t([a-z][\w.]*)\s*(.*)$")
    rows = [m.groups() for m in map(line.match, listing.splitlines()) if m]
    assert len(rows) > 20_000
    kinds = subprocess.run([str(decoder)], input="".join(f"{4 if b else 2} {a} {b or '0'}\n" for a, b, _, _ in rows),
                           check=True, capture_output=True, text=True).stdout.split()
    assert len(kinds) == len(rows)
    disagree = [(kind, kind_of_mnemonic(mn, ops), mn, ops) for kind, (_, _, mn, ops) in zip(kinds, rows)
                if kind != kind_of_mnemonic(mn, ops)]
    assert not disagree, disagree[:10]
    assert {"load", "store", "mul", "branch", "load_multiple", "it", "fp_simple"} <= set(kinds)
