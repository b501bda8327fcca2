"""The Cortex-M4 cycle model (firmware/qemu/cycle_model.c, a QEMU plugin) on a program whose
every instruction's cost is known: ten turns of a loop holding one instruction of each kind the
model tells apart, between the two marker functions the probe calls around its frames."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("qemu-system-arm", "arm-none-eabi-gcc", "cc")),
    reason="needs qemu-system-arm, arm-none-eabi-gcc and a C compiler (.ci/run installs them)")

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
    from tinymirnet.host.device_report import build_cycle_model, symbol_address
    source, elf, log = tmp_path / "kinds.S", tmp_path / "kinds.elf", tmp_path / "plugin.log"
    source.write_text(PROGRAM)
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
                    "-nostdlib", "-nostartfiles", "-Wl,-Ttext=0x0,-e,0,--no-warn-rwx-segments", "-o", str(elf),
                    str(source)], check=True, capture_output=True)
    plugin = build_cycle_model()
    window = ",".join(f"{k}={symbol_address(elf, f'cycle_window_{k}'):#x}" for k in ("open", "close"))
    subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
                    "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-d", "plugin",
                    "-D", str(log), "-plugin", f"{plugin},{window}", "-kernel", str(elf)],
                   check=True, capture_output=True, timeout=60)
    line = next(l for l in log.read_text().splitlines() if l.startswith("TMCYCLES "))
    counted = json.loads(line[len("TMCYCLES "):])
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
