"""The budget sweep: network size x tiling candidates, each converted to int8 and loaded in TFLM
to measure what it costs on the Nano (parameters, flash, arena, MACs per tile and per frame).
Quality (int8 tiled PSNR on eval15) is filled in for the candidates that have trained weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tinymirnet.model.network import MirnetConfig, build_mirnet, conv_macs, count_params
from tinymirnet.model.tiling import tile_grid

from .budget import Measured, budget_violations
from .convert import convert_int8, random_weights_int8
from .tflm import measure_arena


@dataclass(frozen=True)
class Candidate:
    channels: int
    growth: float
    tile: int
    halo: int

    @property
    def model_config(self) -> MirnetConfig:
        return MirnetConfig(channels=self.channels, growth=self.growth)

    @property
    def input_size(self) -> int:
        return self.tile + 2 * self.halo

    def label(self) -> str:
        streams = "/".join(str(c) for c in self.model_config.stream_channels())
        return f"C{streams} tile {self.tile}+2x{self.halo}"


DEFAULT_CANDIDATES = [
    Candidate(8, 1.0, 20, 4),
    Candidate(8, 1.0, 24, 4),
    Candidate(8, 1.0, 16, 6),
    Candidate(8, 1.0, 12, 8),
    Candidate(8, 1.0, 28, 2),
    Candidate(6, 1.0, 20, 4),
    Candidate(6, 1.0, 28, 4),
    Candidate(10, 1.0, 20, 4),
    Candidate(12, 1.0, 20, 4),
    Candidate(8, 1.5, 20, 4),
    Candidate(8, 2.0, 20, 4),
]


def measure_candidate(c: Candidate, frame_w: int, frame_h: int, flatbuffer: bytes | None = None) -> dict:
    """Costs of one candidate, from its int8 `flatbuffer` (the trained weights converted with LoL
    calibration) or, for an untrained candidate, from random weights and synthetic calibration,
    which understates the flatbuffer: random layers share equal constants (PReLU slopes, biases)
    that the converter stores once, trained ones do not (for C8/8/8, 122,112 B random vs
    148,336 B trained)."""
    cfg = c.model_config
    if flatbuffer is None:
        flatbuffer = random_weights_int8(cfg, c.input_size)
    fixed = build_mirnet(cfg, input_shape=(c.input_size, c.input_size, 3), batch_size=1)
    arena = measure_arena(flatbuffer)
    tiles = len(tile_grid(frame_w, frame_h, c.tile))
    macs_tile = conv_macs(fixed)
    m = Measured(len(flatbuffer), arena)
    return {**asdict(c), "label": c.label(), "streams": cfg.stream_channels(), "input": c.input_size,
            "params": count_params(fixed), "flatbuffer_bytes": m.flatbuffer_bytes, "arena_bytes": arena,
            "macs_per_tile": macs_tile, "tiles_per_frame": tiles, "macs_per_frame": macs_tile * tiles,
            "budget_problems": budget_violations(m), "fits": not budget_violations(m)}


def int8_tiled_psnr(c: Candidate, flatbuffer: bytes, data_dir, *, exposure_target: int) -> dict:
    """Quality of a trained candidate: its int8 model run tile by tile on TFLM over eval15,
    scored by the same evaluation as `tinymirnet eval`."""
    from tinymirnet.model.evaluate import evaluate
    from .tflm import TflmModel, int8_method
    method = int8_method(TflmModel(flatbuffer), c.tile, c.halo, exposure_target=exposure_target)
    result = evaluate(data_dir, {"int8_tiled": method}, log=lambda *_: None)
    return {"int8_tiled_psnr": result["int8_tiled"]["psnr"], "psnr_images": result["meta"]["images"]}


def _measure_in_child(args):
    candidate, frame_w, frame_h, weights, data_dir = args
    import faulthandler
    faulthandler.enable()
    from tinymirnet.model import import_tensorflow_quietly
    import_tensorflow_quietly()  # a fresh (spawned) process: TensorFlow's start-up lines again
    if not (weights and data_dir):
        return {**measure_candidate(candidate, frame_w, frame_h), "measured_with": "random weights"}
    from tinymirnet.model.inference import load_model
    from .convert import fixed_shape_model, representative_tiles
    model, cfg = load_model(weights)
    # One conversion (trained weights, LoL calibration) serves both the costs and the PSNR.
    flatbuffer = convert_int8(fixed_shape_model(model, candidate.model_config, candidate.input_size),
                              representative_tiles(data_dir, candidate.input_size,
                                                   exposure_target=cfg.exposure_target))
    row = measure_candidate(candidate, frame_w, frame_h, flatbuffer)
    row["measured_with"] = "trained weights"
    if row["fits"]:
        row.update(int8_tiled_psnr(candidate, flatbuffer, data_dir, exposure_target=cfg.exposure_target))
    return row


CHILD_ATTEMPTS = 3


class CandidateCrashed(RuntimeError):
    pass


def _run_child(args) -> tuple[dict, int]:
    """Runs one candidate in a fresh spawned process; a child killed by a signal is retried.
    (The `tflite_micro` runtime has been seen to abort() at random, rarely, in a process that
    also ran the TFLite converter; a rerun of the same candidate succeeds.)"""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    ctx = mp.get_context("spawn")
    for attempt in range(1, CHILD_ATTEMPTS + 1):
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                return pool.submit(_measure_in_child, args).result(), attempt
        except BrokenProcessPool:
            continue
    raise CandidateCrashed(f"{args[0].label()}: the measuring process died {CHILD_ATTEMPTS} times in a row")


def measure_candidates(candidates, frame_w: int, frame_h: int, weights=(), data_dir=None,
                       log=print) -> list[dict]:
    """Measures each candidate in a fresh child process (a converter and a TFLM interpreter per
    candidate, nothing left over between them). A candidate whose architecture matches one of
    the trained `weights` files and that meets the budgets also gets its int8 tiled PSNR on
    eval15 (data_dir)."""
    from tinymirnet.model.inference import config_path_for
    trained = {MirnetConfig.load(config_path_for(w)): w for w in weights}
    rows = []
    for c in candidates:
        own = trained.get(c.model_config)
        row, attempts = _run_child((c, frame_w, frame_h, own, data_dir))
        row.setdefault("int8_tiled_psnr", None)
        row["weights"] = str(own) if own else None
        row["attempts"] = attempts
        log(f"  {row['label']:<24} params {row['params']:>6,}  flash {row['flatbuffer_bytes']:>7,} B  "
            f"arena {row['arena_bytes']:>7,} B  {row['macs_per_frame'] / 1e6:>6.0f} M-MAC/frame  "
            f"{'fits' if row['fits'] else 'over budget'}"
            + (f"  int8 tiled {row['int8_tiled_psnr']:.2f} dB" if row["int8_tiled_psnr"] else "")
            + (f"  (child retried, attempt {attempts})" if attempts > 1 else ""))
        rows.append(row)
    return rows


def budget_markdown(rows: list[dict], chosen: dict | None) -> str:
    lines = ["# Budget sweep: network size x tiling on the Nano 33 BLE Sense", "",
             "Each candidate converted to int8 and loaded in the TFLM runtime on the host. Budgets: "
             "arena <= 131,072 B (128 KiB), flatbuffer <= 300,000 B. PSNR: int8 tiled on eval15 for "
             "candidates with trained weights (float weights converted without pruning); "
             "'-' = not trained. Costs of untrained candidates come from random weights, which "
             "understates the flatbuffer (about 26 KB for C8/8/8: random layers share equal "
             "constants); trained candidates are measured with their weights and LoL calibration.", "",
             "M instr/frame: instructions per QQVGA frame counted on the emulated Cortex-M4 with the "
             "board's TFLM (`tinymirnet budget --instructions`; '-' = not counted); instructions are "
             "not cycles.", "",
             "| candidate | params | flatbuffer B | arena B | M-MAC/tile | tiles/frame | M-MAC/frame | M instr/frame | measured with | fits | int8 tiled PSNR |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = f"{r['int8_tiled_psnr']:.2f}" if r.get("int8_tiled_psnr") else "-"
        ins = f"{r['instructions_per_frame'] / 1e6:,.0f}" if r.get("instructions_per_frame") else "-"
        lines.append(f"| {r['label']} | {r['params']:,} | {r['flatbuffer_bytes']:,} | {r['arena_bytes']:,} | "
                     f"{r['macs_per_tile'] / 1e6:.2f} | {r['tiles_per_frame']} | {r['macs_per_frame'] / 1e6:.0f} | {ins} | "
                     f"{r.get('measured_with', '-')} | {'yes' if r['fits'] else 'no: ' + '; '.join(r['budget_problems'])} | {q} |")
    if chosen:
        lines += ["", f"Chosen: **{chosen['label']}**: the best int8 tiled PSNR within the budgets, where "
                  f"candidates within {PSNR_TIE_DB} dB of the best count as equal and the cheapest on the "
                  "board wins among them (instructions per frame where counted, else MACs per frame)."]
    return "\n".join(lines) + "\n"


PSNR_TIE_DB = 0.1


def choose(rows: list[dict], tie_db: float = PSNR_TIE_DB) -> dict | None:
    """The candidate with the best int8 tiled PSNR among those within the budgets; candidates
    within `tie_db` of the best count as equal, and of those the cheapest on the board wins: the
    fewest instructions per frame where the sweep counted them on the emulated Cortex-M4
    (`--instructions`), else the fewest MACs per frame."""
    scored = [r for r in rows if r["fits"] and r.get("int8_tiled_psnr")]
    if not scored:
        return None
    best = max(r["int8_tiled_psnr"] for r in scored)
    return min((r for r in scored if r["int8_tiled_psnr"] >= best - tie_db), key=board_cost)


def board_cost(row: dict) -> float:
    """What a candidate costs the board per frame: instructions when counted, else MACs."""
    return row.get("instructions_per_frame") or row["macs_per_frame"]
