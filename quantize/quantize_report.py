"""The quantize report (quantize_report.json and its markdown twin in a quantize folder): what
`tinymirnet quantize` measured, and what `tinymirnet export` later did with the folder."""
from __future__ import annotations

import json
from pathlib import Path

from tinymirnet.model.files import write_report


def record_export(folder: Path, files: list[str]) -> None:
    """`tinymirnet export` wrote the firmware files from this quantize folder: its report says so."""
    path = Path(folder) / "quantize_report.json"
    report = json.loads(path.read_text())
    report["export"]["files"] = files
    report["export"]["firmware"] = "exported (tinymirnet export)"
    write_report(path, report, markdown(report))


def frame_context_lines(r: dict) -> list[str]:
    """The markdown of a frame-context network's two models (none for a textbook network)."""
    fc = r.get("frame_context")
    if not fc:
        return []
    w, h = fc["thumbnail"]
    return [
        "## Frame context (two models)", "",
        f"Every attention weight ({fc['context_values']} values) is computed once per frame by the "
        f"context model on a {w}x{h} thumbnail of the whole frame, then fed to the tile model.",
        "",
        "| model | flatbuffer (B) | TFLM arena (B) | bit-exact vs reference kernels |", "|---|---:|---:|---|",
        f"| context model ({w}x{h}) | {fc['context_flatbuffer_bytes']:,} | {fc['context_arena_bytes']:,} | "
        f"{fc['context_reference_check']['bit_exact']} |",
        f"| tile model | {fc['tile_model_flatbuffer_bytes']:,} | {fc['tile_model_arena_bytes']:,} | "
        f"{r['tflm']['reference_check']['bit_exact']} |", "",
        f"Budgets: {fc['budget_basis']}: flash {fc['context_flatbuffer_bytes'] + fc['tile_model_flatbuffer_bytes']:,} B "
        f"of 300,000 B, arena {max(fc['context_arena_bytes'], fc['tile_model_arena_bytes']):,} B of 131,072 B. "
        f"The context model adds {fc['context_macs_per_frame']:,} MACs per frame; its ops: "
        f"{', '.join(fc['context_model_ops'])}. The RAM table below counts the int8 thumbnail and the "
        f"context vector the device keeps ({w * h * 3 + fc['context_values']:,} B).",
        f"Firmware: {r['export'].get('firmware', 'exported')}.", "",
    ]


def reference_kernels(check: dict) -> str:
    """Which TFLite kernels a TFLM check compared with (ReferenceModel.resolver)."""
    if check.get("reference_kernels", "BUILTIN_REF") == "BUILTIN_REF":
        return "the reference kernels; on models with MEAN Chirale 2.0.0 truncates where they round"
    return ("the builtin kernels without delegates: the reference resolver has no int8 DEPTH_TO_SPACE; "
            "their optimized int8 arithmetic rounds differently from TFLM's in the last bits")


def markdown(r: dict) -> str:
    s, q, c, ram = r["sizes"], r["quality"], r["compute"], r["ram"]
    lines = [
        "# tiny MIRNet for the Nano 33 BLE Sense: quantization report", "",
        f"Model: {r['model'].get('design', 'mrb')} design, {r['model']['channels']} base channels, growth {r['model']['growth']}, "
        f"{r['params']:,} parameters; tile {r['tiling']['tile']} + halo {r['tiling']['halo']} "
        f"(input {r['tiling']['tile'] + 2 * r['tiling']['halo']}²), frame "
        f"{r['tiling']['frame_width']}x{r['tiling']['frame_height']}. sha256 `{r['export']['sha256']}`.", "",
        "## Quality on eval15 (15 pairs, PSNR in dB on [0,1], max 1)", "",
        "| model | PSNR | SSIM | GT-mean PSNR (diagnostic) |", "|---|---|---|---|",
        *[f"| {k} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['psnr_gt_mean']:.2f} |"
          for k, v in q.items() if isinstance(v, dict)],
        "", f"int8 tiled minus float tiled: {q['int8_minus_float_tiled_db']:+.2f} dB.",
        "GT-mean PSNR scales each output to the ground truth's mean grey level before scoring "
        "(as LLFlow and Retinexformer report it): it reads the ground truth, so it is not a "
        "result, but the gap between the two PSNR columns is what a wrong guess of the scene's "
        "normal-light brightness costs.", "",
        "## Pruning", "",
        *([f"Not pruned in this run: the pruned, fine-tuned weights of an earlier run ({pw['path']}) were "
           f"converted for this tiling; the records below are that run's, and the row "
           f"tiny_mirnet_pruned_tiled is those weights in float.", ""]
          if (pw := r.get("pruned_weights")) else []),
        *([f"Structured: the {sp['fraction_removed']:.0%} of filters with the smallest L1 norm removed from "
           f"the stride-2 convolution and every block: widths {sp.get('widths_before')} -> "
           f"{sp.get('widths_after')}; {sp['params_before']:,} -> {sp['params_after']:,} parameters."]
          if (sp := r.get("structured_pruning")) else
          [f"Conv-weight sparsity reached: {r['sparsity']['overall']:.1%} of {r['sparsity']['conv_weights']:,} weights."]),
        *([f"Fine-tuned while pruning: {f['steps']:,} steps of {f['batch']} {f['crop']}² crops, "
           f"rate {f['lr']:g} ({f.get('schedule', 'constant')}), {f['loss']} loss "
           f"(border {f['loss_margin']} px left out), towards the {f.get('target', 'ground truth')}."]
          if (f := r.get("pruning_finetune")) else []),
        f"Flatbuffer {s['flatbuffer_bytes']:,} B pruned vs {s['dense_flatbuffer_bytes']:,} B dense; "
        f"gzip {s['flatbuffer_gzip_bytes']:,} B pruned vs {s['dense_flatbuffer_gzip_bytes']:,} B dense.",
        f"{s['note'][0].upper()}{s['note'][1:]}.", "",
        *([f"Quantization-aware fine-tune of the pruned network before conversion (quantize/qat.py): "
           f"{f['steps']:,} steps of {f['batch']} {f['crop']}² crops, rate {f['lr']:g} ({f['schedule']}), "
           f"{f['loss']} loss towards the {f.get('target', 'ground truth')}, per-channel int8 kernels and 8-bit "
           f"activations in the forward pass, zeros "
           f"kept; the int8 model is converted from these weights (row "
           f"{'tiny_mirnet_pruned_tiled' if r.get('pruned_weights') else 'tiny_mirnet_pruned_qat_tiled'}).", ""]
          if (f := r.get("qat_finetune")) else []),
        "## TFLM (host, real kernels)", "",
        f"Computed by {r['tflm'].get('library', 'the tflite_micro runtime')}; the arena below is this "
        "64-bit machine's (the 32-bit board needs less: docs/reports/device/device_report.md).", "",
        f"Arena {r['tflm']['arena_bytes']:,} B (budget 131,072 B); flatbuffer {s['flatbuffer_bytes']:,} B (budget 300,000 B"
        + (", shared with the context model below)." if r.get("frame_context") else ")."),
        f"Ops: {', '.join(r['tflm']['ops'])}.",
        *([f"Conversion: {r['conversion']['note']}."] if r.get("conversion", {}).get("widen_tied_ranges") else []),
        f"TFLM vs TFLite's kernels ({reference_kernels(r['tflm']['reference_check'])}) on "
        f"{r['tflm']['reference_check']['tiles']} eval15 tiles: "
        f"{r['tflm']['reference_check']['values_differing']} values differ (bit exact: {r['tflm']['reference_check']['bit_exact']}, "
        f"{r['tflm']['reference_check'].get('tflm', 'tflite_micro runtime')})"
        + (f"; the board's TFLM differs in {b['values_differing']} values, at most {b['max_abs_diff']} LSB."
           if (b := r['tflm'].get('board_tflm_vs_reference')) else "."), "",
        *frame_context_lines(r),
        "## RAM on the Nano (256 KB)", "", "| item | bytes |", "|---|---|",
        *[f"| {k} | {v:,} |" for k, v in ram["rows"].items()],
        f"| **total** | **{ram['total']:,}** |", f"| headroom | {ram['headroom']:,} |", "",
        "## Compute", "",
        f"{c['macs_per_tile']:,} MACs per tile, {c['tiles_per_frame']} tiles, {c['macs_per_frame']:,} MACs per frame.",
        f"Projected device time per frame: **{c['projected_seconds_per_frame']:.1f} s** — a projection: {c['projection_basis']}.",
        "",
    ]
    return "\n".join(lines)
