/*
 * A Cortex-M4 cycle model for QEMU, as a TCG plugin: the device report's estimate of what the
 * instructions it counts cost in cycles (host/device_report.py, `--cycles`).
 *
 * QEMU counts instructions, not cycles. A Cortex-M4 spends one cycle on most instructions and
 * more on loads, stores, load/store-multiple, taken branches, MLA/MLS, divides and some FPU
 * operations. This plugin decodes every Thumb-2 instruction once, when QEMU translates it, and
 * charges each executed instruction the cycles of the Cortex-M4 Technical Reference Manual
 * (ARM DDI 0439, table 3-1 "Cortex-M4 instruction set summary" and the FPU chapter):
 *
 *   data processing, MUL, SMULL/UMULL/SMLAL/UMLAL, DSP multiplies   1
 *   MLA, MLS                                                        2
 *   SDIV, UDIV                                                      2 to 12 (operand-dependent)
 *   LDR*, STR* (single)                                             2, or 1 when it follows another
 *                                                                   single load/store ("neighbouring
 *                                                                   load and store single instructions
 *                                                                   can pipeline their address and
 *                                                                   data phases")
 *   LDM, STM, PUSH, POP, LDRD, STRD (N registers)                   1 + N
 *   branches, and any instruction that writes the PC                1, + P when taken
 *   IT                                                              0 (folded) to 1
 *   VLDR, VSTR 2; VLDM, VSTM, VPUSH, VPOP 1 + N; VMOV two registers 2
 *   VADD, VSUB, VMUL, VNMUL, VCVT, VABS, VNEG, VCMP, VMOV           1
 *   VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS              3
 *   VDIV, VSQRT                                                     14
 *
 * P, the pipeline refill after a taken branch, is 1 to 3 cycles. A branch is taken when the next
 * translation block to run does not start where the branch's block falls through (QEMU ends a
 * block at every branch).
 *
 * Two totals bracket the cost: "low" (P = 1, pipelined neighbouring loads/stores at 1 cycle, IT
 * folded, divides at 2) and "high" (P = 3, every single load/store 2 cycles, IT 1, divides 12).
 * Neither counts wait states: the model assumes code and data answer in zero wait states (the
 * nRF52840's flash behind its instruction cache, its RAM), and a dependent load stalls nothing.
 *
 * Only instructions between two marker functions are counted (their addresses are the plugin's
 * arguments open=0x... and close=0x...; the probe calls them around its whole frames). At exit
 * the plugin prints one line: TMCYCLES {json}.
 *
 * Build: cc -shared -fPIC -O2 -o cycle_model.so cycle_model.c (no QEMU headers needed: the few
 * declarations of QEMU's plugin API, version 1, are in qemu_plugin_api.h).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum Kind {
  kAlu,
  kIt,
  kMul,
  kMla,
  kDivide,
  kLoad,        /* single load */
  kStore,       /* single store */
  kLoadMulti,   /* LDM, POP, LDRD: 1 + N */
  kStoreMulti,  /* STM, PUSH, STRD: 1 + N */
  kBranch,      /* B, BL, BX, BLX, CBZ, CBNZ, TBB, TBH, ADD/MOV to PC */
  kFpLoadStore, /* VLDR, VSTR */
  kFpMulti,     /* VLDM, VSTM, VPUSH, VPOP: 1 + N words */
  kFpMove2,     /* VMOV of two core registers */
  kFpSimple,
  kFpMac,
  kFpDivide,
  kKinds
};

static const char* const kKindNames[kKinds] = {
    "alu", "it", "mul", "mla", "divide", "load", "store", "load_multiple", "store_multiple",
    "branch", "fp_load_store", "fp_load_store_multiple", "fp_move_two", "fp_simple", "fp_mac",
    "fp_divide"};

typedef struct {
  enum Kind kind;
  int words;         /* registers moved by a multiple load/store */
  bool writes_pc;    /* a load or a data-processing instruction that branches */
} Decoded;

static int popcount16(unsigned v) { return __builtin_popcount(v & 0xFFFFu); }

static Decoded decode16(uint16_t hw) {
  Decoded d = {kAlu, 0, false};
  if ((hw >> 11) == 0x09) { d.kind = kLoad; return d; }                      /* LDR literal */
  if ((hw >> 12) == 0x5) { d.kind = ((hw >> 9) & 7) < 3 ? kStore : kLoad; return d; }
  if ((hw >> 13) == 0x3 || (hw >> 12) == 0x8 || (hw >> 12) == 0x9) {         /* imm offset, SP */
    d.kind = (hw & 0x0800) ? kLoad : kStore;
    return d;
  }
  if ((hw >> 9) == 0x5A) { d.kind = kStoreMulti; d.words = popcount16(hw & 0x1FF); return d; } /* PUSH */
  if ((hw >> 9) == 0x5E) {                                                    /* POP */
    d.kind = kLoadMulti;
    d.words = popcount16(hw & 0x1FF);
    d.writes_pc = (hw & 0x100) != 0;
    return d;
  }
  if ((hw >> 12) == 0xC) { d.kind = (hw & 0x0800) ? kLoadMulti : kStoreMulti; d.words = popcount16(hw & 0xFF); return d; }
  if ((hw >> 12) == 0xD) {
    const unsigned cond = (hw >> 8) & 0xF;
    if (cond < 0xE) d.kind = kBranch;                                        /* B<cond> */
    return d;                                                                 /* UDF, SVC */
  }
  if ((hw >> 11) == 0x1C) { d.kind = kBranch; return d; }                    /* B */
  if ((hw & 0xF500) == 0xB100) { d.kind = kBranch; return d; }               /* CBZ, CBNZ */
  if ((hw >> 7) == 0x8E || (hw >> 7) == 0x8F) { d.kind = kBranch; return d; } /* BX, BLX */
  if ((hw >> 10) == 0x11) {                                                   /* ADD, MOV (high) */
    const unsigned op = (hw >> 8) & 3;
    const unsigned rd = (((hw >> 7) & 1) << 3) | (hw & 7);
    if ((op == 0 || op == 2) && rd == 15) d.kind = kBranch;
    return d;
  }
  if ((hw >> 8) == 0xBF) { d.kind = (hw & 0xF) ? kIt : kAlu; return d; }     /* IT, hints */
  if ((hw >> 6) == 0x10D) { d.kind = kMul; return d; }                       /* MULS */
  return d;
}

static Decoded decode_fp(uint16_t hw1, uint16_t hw2) {
  Decoded d = {kAlu, 0, false};
  const unsigned coproc = (hw2 >> 8) & 0xF;
  if (coproc != 10 && coproc != 11) return d;
  if (((hw1 >> 9) & 7) == 6) {                     /* extension register load/store, 64-bit moves */
    const unsigned op = (hw1 >> 4) & 0x1F;
    if ((op & 0x1E) == 0x04) { d.kind = kFpMove2; return d; }                /* VMOV 2 core regs */
    if ((op & 0x12) == 0x10) { d.kind = kFpLoadStore; return d; }            /* VLDR, VSTR */
    d.kind = kFpMulti;                                                         /* VLDM, VSTM, VPUSH, VPOP */
    d.words = hw2 & 0xFF;
    return d;
  }
  if (((hw1 >> 8) & 0xF) == 0xE) {
    if (hw2 & 0x10) { d.kind = kFpSimple; return d; }                        /* VMOV core<->FP, VMRS */
    switch (hw1 & 0xB0) {
      case 0x00: case 0x10: case 0x90: case 0xA0: d.kind = kFpMac; return d;  /* VMLA..VFNMS */
      case 0x80: d.kind = kFpDivide; return d;                                /* VDIV */
      case 0xB0:
        d.kind = ((hw1 & 0xF) == 1 && ((hw2 >> 6) & 3) == 3) ? kFpDivide : kFpSimple;  /* VSQRT */
        return d;
      default: d.kind = kFpSimple; return d;                                   /* VMUL, VADD, ... */
    }
  }
  return d;
}

static Decoded decode32(uint16_t hw1, uint16_t hw2) {
  Decoded d = {kAlu, 0, false};
  const unsigned op1 = (hw1 >> 11) & 3;
  if (op1 == 1) {
    if ((hw1 >> 9) == 0x74) {
      if (!(hw1 & 0x40)) {                                                    /* LDM, STM */
        d.kind = (hw1 & 0x10) ? kLoadMulti : kStoreMulti;
        d.words = popcount16(hw2);
        d.writes_pc = (hw1 & 0x10) && (hw2 & 0x8000);
        return d;
      }
      if ((hw1 & 0xFFF0) == 0xE8D0 && ((hw2 >> 5) & 0x7FF) == 0x780) {       /* TBB, TBH */
        d.kind = kLoad;
        d.writes_pc = true;
        return d;
      }
      if (((hw1 >> 7) & 3) == 0 && !(hw1 & 0x20)) {                          /* LDREX, STREX */
        d.kind = (hw1 & 0x10) ? kLoad : kStore;
        return d;
      }
      d.kind = (hw1 & 0x10) ? kLoadMulti : kStoreMulti;                       /* LDRD, STRD, ... */
      d.words = 2;
      return d;
    }
    if ((hw1 >> 10) == 0x3B) return decode_fp(hw1, hw2);
    return d;                                                                  /* data processing */
  }
  if (op1 == 2) {
    if (!(hw2 & 0x8000)) return d;                                            /* data processing */
    const unsigned op = (hw2 >> 12) & 7;
    if ((op & 5) == 1 || (op & 5) == 5) { d.kind = kBranch; return d; }       /* B.W, BL */
    if ((op & 5) == 0 && ((hw1 >> 7) & 7) != 7) { d.kind = kBranch; return d; } /* B<cond>.W */
    return d;                                                                  /* MSR, MRS, hints */
  }
  /* op1 == 3 */
  if ((hw1 >> 9) == 0x7C) {                                                   /* load/store single */
    if (!(hw1 & 0x10)) { d.kind = kStore; return d; }
    if ((hw2 >> 12) == 15) {
      if (((hw1 >> 5) & 3) == 2) { d.kind = kLoad; d.writes_pc = true; }     /* LDR PC */
      return d;                                                                /* PLD, PLI */
    }
    d.kind = kLoad;
    return d;
  }
  if ((hw1 >> 7) == 0x1F6) {                                                  /* multiply, MAC */
    const unsigned op = (hw1 >> 4) & 7, op2 = (hw2 >> 4) & 3, ra = hw2 >> 12;
    d.kind = (op == 0 && ((op2 == 0 && ra != 15) || op2 == 1)) ? kMla : kMul;
    return d;
  }
  if ((hw1 >> 7) == 0x1F7) {                                                  /* long multiply, divide */
    const unsigned op = (hw1 >> 4) & 7, op2 = (hw2 >> 4) & 0xF;
    d.kind = ((op == 1 || op == 3) && op2 == 0xF) ? kDivide : kMul;
    return d;
  }
  if ((hw1 >> 10) == 0x3F) return decode_fp(hw1, hw2);
  return d;
}

#ifdef CYCLE_MODEL_DECODER_MAIN
/* The decoder alone, for the tests (tests/test_cycle_model.py): reads lines "SIZE HW1 HW2" (hex
 * halfwords, SIZE 2 or 4) and prints each instruction's kind. */
int main(void) {
  int size;
  unsigned hw1, hw2;
  while (scanf("%d %x %x", &size, &hw1, &hw2) == 3) {
    const Decoded d = size == 4 ? decode32((uint16_t)hw1, (uint16_t)hw2) : decode16((uint16_t)hw1);
    printf("%s\n", kKindNames[d.kind]);
  }
  return 0;
}
#else

/* One translated block: what its instructions cost when it runs. */
typedef struct {
  uint64_t start, fallthrough;
  uint64_t kinds[kKinds];
  uint64_t instructions;
  uint64_t low, high;       /* cycles, without the taken-branch penalty */
  bool ends_in_branch;
} Block;

static uint64_t g_open, g_close;
static bool g_counting;
static bool g_previous_valid;
static const Block* g_previous;
static uint64_t g_kinds[kKinds], g_instructions, g_low, g_high, g_taken, g_windows;

enum { kRefillLow = 1, kRefillHigh = 3 };

static void block_exec(unsigned int vcpu_index, void* userdata) {
  (void)vcpu_index;
  const Block* b = userdata;
  if (b->start == g_open && !g_counting) {
    g_counting = true;
    g_previous_valid = false;
    ++g_windows;
  } else if (b->start == g_close) {
    g_counting = false;
  }
  if (!g_counting) return;
  if (g_previous_valid && g_previous->ends_in_branch && g_previous->fallthrough != b->start) {
    ++g_taken;
    g_low += kRefillLow;
    g_high += kRefillHigh;
  }
  for (int k = 0; k < kKinds; ++k) g_kinds[k] += b->kinds[k];
  g_instructions += b->instructions;
  g_low += b->low;
  g_high += b->high;
  g_previous = b;
  g_previous_valid = true;
}

static void block_translated(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
  (void)id;
  const size_t n = qemu_plugin_tb_n_insns(tb);
  if (n == 0) return;
  Block* b = calloc(1, sizeof(Block));  /* lives as long as QEMU may run the block */
  if (!b) return;
  b->start = qemu_plugin_tb_vaddr(tb);
  bool previous_single = false;
  for (size_t i = 0; i < n; ++i) {
    const struct qemu_plugin_insn* insn = qemu_plugin_tb_get_insn(tb, i);
    const size_t size = qemu_plugin_insn_size(insn);
    const uint8_t* bytes = qemu_plugin_insn_data(insn);
    const uint16_t hw1 = (uint16_t)(bytes[0] | (bytes[1] << 8));
    const Decoded d = size >= 4 ? decode32(hw1, (uint16_t)(bytes[2] | (bytes[3] << 8))) : decode16(hw1);
    unsigned low = 1, high = 1;
    switch (d.kind) {
      case kIt: low = 0; break;
      case kMla: low = high = 2; break;
      case kDivide: low = 2; high = 12; break;
      case kLoad: case kStore: low = previous_single ? 1 : 2; high = 2; break;
      case kLoadMulti: case kStoreMulti: case kFpMulti: low = high = 1 + (unsigned)d.words; break;
      case kFpLoadStore: case kFpMove2: low = high = 2; break;
      case kFpMac: low = high = 3; break;
      case kFpDivide: low = high = 14; break;
      default: break;
    }
    previous_single = d.kind == kLoad || d.kind == kStore;
    ++b->kinds[d.kind];
    b->low += low;
    b->high += high;
    ++b->instructions;
    if (i == n - 1) {
      b->fallthrough = qemu_plugin_insn_vaddr(insn) + size;
      b->ends_in_branch = d.kind == kBranch || d.writes_pc;
    }
  }
  qemu_plugin_register_vcpu_tb_exec_cb(tb, block_exec, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void at_exit(qemu_plugin_id_t id, void* userdata) {
  (void)id;
  (void)userdata;
  char line[2048];
  int used = snprintf(line, sizeof line,
                      "TMCYCLES {\"windows\":%" PRIu64 ",\"instructions\":%" PRIu64 ",\"taken_branches\":%" PRIu64
                      ",\"cycles_low\":%" PRIu64 ",\"cycles_high\":%" PRIu64 ",\"kinds\":{",
                      g_windows, g_instructions, g_taken, g_low, g_high);
  for (int k = 0; k < kKinds && used < (int)sizeof line; ++k) {
    used += snprintf(line + used, sizeof line - (size_t)used, "%s\"%s\":%" PRIu64, k ? "," : "", kKindNames[k],
                     g_kinds[k]);
  }
  if (used < (int)sizeof line) snprintf(line + used, sizeof line - (size_t)used, "}}\n");
  qemu_plugin_outs(line);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc, char** argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "open=", 5) == 0) g_open = strtoull(argv[i] + 5, NULL, 0) & ~1ull;
    else if (strncmp(argv[i], "close=", 6) == 0) g_close = strtoull(argv[i] + 6, NULL, 0) & ~1ull;
  }
  if (!g_open || !g_close) {
    fprintf(stderr, "cycle_model: give open=ADDRESS,close=ADDRESS (the probe's marker functions)\n");
    return -1;
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, block_translated);
  qemu_plugin_register_atexit_cb(id, at_exit, NULL);
  return 0;
}

#endif  /* CYCLE_MODEL_DECODER_MAIN */
