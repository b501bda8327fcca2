"""The budget sweep: network size x tiling candidates, each converted to int8 and loaded in TFLM
to measure what it costs on the Nano (parameters, flash, arena, MACs per tile and per frame).
Quality (int8 tiled PSNR on the LoL validation split, never eval15: the sweep chooses with it)
is filled in for the candidates that have trained weights.

Three families: the tiny MIRNet the board runs ("mrb_half_resolution": the MRB at half
resolution with MIRNet-v2's light blocks), the alternative without streams ("half_resolution"),
both frame-context pairs (the context model once per frame on the thumbnail, the tile model on
every tile), and the textbook tiny MIRNet run per tile ("mrb", one model, attention pooled over
the tile) for comparison.
"""
from __future__ import annotations

import faulthandler
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass

from tinymirnet.model import import_tensorflow_quietly
from tinymirnet.model.data import find_pairs, resolve_split, split_train_val
from tinymirnet.model.network import MirnetConfig, build_context_model, build_mirnet, build_tile_model
from tinymirnet.model.network_cost import conv_macs, count_params
from tinymirnet.model.tiling import tile_grid

from .budget import Measured, budget_violations, tile_payload_violations
from .convert import convert_int8, random_weights_frame_context_int8, random_weights_int8
from .tflm import TflmModel, int8_frame_context_method, int8_method, measure_arena


THUMBNAIL = (32, 24)  # the board design's frame context


@dataclass(frozen=True)
class Candidate:
    channels: int
    growth: float
    tile: int
    halo: int
    design: str = "mrb"
    depth: int = 2  # "half_resolution": attention-scaled convolutions; "mrb_half_resolution": MRB rounds

    @property
    def model_config(self) -> MirnetConfig:
        if self.design == "mrb":
            return MirnetConfig(channels=self.channels, growth=self.growth)
        if self.design == "mrb_half_resolution":
            return MirnetConfig(design=self.design, channels=self.channels, growth=self.growth,
                                mrb_rounds=self.depth, thumbnail_width=THUMBNAIL[0], thumbnail_height=THUMBNAIL[1])
        return MirnetConfig(design=self.design, channels=self.channels, depth=self.depth,
                            thumbnail_width=THUMBNAIL[0], thumbnail_height=THUMBNAIL[1])

    @property
    def input_size(self) -> int:
        return self.tile + 2 * self.halo

    def label(self) -> str:
        streams = "/".join(str(c) for c in self.model_config.stream_channels())
        if self.design == "mrb":
            return f"C{streams} tile {self.tile}+2x{self.halo}"
        if self.design == "mrb_half_resolution":
            return f"MIRNet half-res C{streams} x{self.depth} tile {self.tile}+2x{self.halo}"
        return f"half-res C{self.channels} depth {self.depth} tile {self.tile}+2x{self.halo}"

    def matches(self, cfg: MirnetConfig) -> bool:
        """Trained weights of `cfg` are this candidate's (whatever their exposure target)."""
        mine = self.model_config
        keys = ("design", "channels", "growth", "depth", "mrb_rounds", "half_widths", "dau_widths", "num_rrg",
                "num_mrb")
        return all(getattr(mine, k) == getattr(cfg, k) for k in keys) and mine.frame_context == cfg.frame_context


DEFAULT_CANDIDATES = [
    # The tiny MIRNet the board runs: three streams at 1/2, 1/4 and 1/8 of the frame's resolution,
    # `depth` rounds of DAUs and progressive SKFF. Its reach is larger than any halo a 40 px tile
    # affords (the bottom stream's 3x3 convolutions see 8 px each): the halo is a cost-seam trade.
    Candidate(8, 1.0, 40, 4, "mrb_half_resolution", 2),
    Candidate(8, 1.0, 40, 8, "mrb_half_resolution", 2),
    Candidate(8, 1.0, 40, 4, "mrb_half_resolution", 1),
    Candidate(8, 1.0, 40, 8, "mrb_half_resolution", 1),
    Candidate(8, 1.5, 40, 4, "mrb_half_resolution", 2),
    Candidate(6, 1.0, 40, 4, "mrb_half_resolution", 2),
    Candidate(12, 1.0, 40, 4, "mrb_half_resolution", 1),
    Candidate(10, 1.0, 40, 4, "mrb_half_resolution", 2),
    # The half-resolution network's 16 channels in the top stream, each stream below half as wide.
    Candidate(16, 0.5, 40, 4, "mrb_half_resolution", 1),
    Candidate(16, 0.75, 40, 4, "mrb_half_resolution", 1),
    # The board design: the halo is the network's reach (8 px at depth 2, 6 at depth 1, 10 at 3).
    # Tiles of 60 px would cost less still, but their RGB does not fit one TILE payload.
    Candidate(16, 1.0, 40, 8, "half_resolution", 2),
    Candidate(16, 1.0, 32, 8, "half_resolution", 2),
    Candidate(16, 1.0, 60, 8, "half_resolution", 2),
    Candidate(12, 1.0, 40, 8, "half_resolution", 2),
    Candidate(20, 1.0, 40, 8, "half_resolution", 2),
    Candidate(24, 1.0, 40, 6, "half_resolution", 1),
    Candidate(16, 1.0, 40, 10, "half_resolution", 3),
    Candidate(16, 1.0, 24, 8, "half_resolution", 2),
    Candidate(16, 1.0, 20, 8, "half_resolution", 2),
    # The tiny MIRNet with attention per tile, for comparison (its wider and re-tiled variants
    # are in the sweep of commit f583098: none fitted under 2,100 M instructions per frame).
    Candidate(8, 1.0, 20, 4),
    Candidate(6, 1.0, 20, 4),
]


def measure_candidate(c: Candidate, frame_w: int, frame_h: int, flatbuffer: bytes | None = None) -> dict:
    """Costs of one candidate, from its int8 `flatbuffer` (the trained weights converted with LoL
    calibration) or, for an untrained candidate, from random weights and synthetic calibration,
    which understates the flatbuffer: random layers share equal constants (PReLU slopes, biases)
    that the converter stores once, trained ones do not (for C8/8/8, 122,112 B random vs
    148,336 B trained)."""
    cfg = c.model_config
    fixed = build_mirnet(cfg, input_shape=(c.input_size, c.input_size, 3), batch_size=1)
    macs_once = 0
    context_flatbuffer = b""
    if cfg.frame_context:
        if flatbuffer is None:
            flatbuffer, context_flatbuffer = random_weights_frame_context_int8(cfg, c.input_size)
        else:
            flatbuffer, context_flatbuffer = flatbuffer
        macs_tile = conv_macs(build_tile_model(cfg, fixed, (c.input_size, c.input_size, 3), batch_size=1))
        macs_once = conv_macs(build_context_model(cfg, fixed, batch_size=1))
        arena = max(measure_arena(flatbuffer), measure_arena(context_flatbuffer))
    else:
        if flatbuffer is None:
            flatbuffer = random_weights_int8(cfg, c.input_size)
        macs_tile = conv_macs(fixed)
        arena = measure_arena(flatbuffer)
    tiles = len(tile_grid(frame_w, frame_h, c.tile))
    m = Measured(len(flatbuffer) + len(context_flatbuffer), arena)
    problems = budget_violations(m) + tile_payload_violations(c.tile)
    return {**asdict(c), "label": c.label(), "streams": cfg.stream_channels(), "input": c.input_size,
            "params": count_params(fixed), "flatbuffer_bytes": m.flatbuffer_bytes, "arena_bytes": arena,
            "macs_per_tile": macs_tile, "tiles_per_frame": tiles, "macs_per_frame": macs_tile * tiles + macs_once,
            "budget_problems": problems, "fits": not problems,
            "_flatbuffers": (flatbuffer, context_flatbuffer or None)}


def int8_tiled_psnr(c: Candidate, flatbuffers, data_dir, *, exposure_target: int) -> dict:
    """Quality of a trained candidate: its int8 model(s) run tile by tile on TFLM over the LoL
    validation split (the training pairs' held-out 10 %: the sweep chooses with this figure,
    so never on eval15), scored by the same evaluation as `tinymirnet eval`."""
    from tinymirnet.model.evaluate import evaluate
    tile_fb, context_fb = flatbuffers
    if context_fb:
        method = int8_frame_context_method(TflmModel(context_fb), TflmModel(tile_fb), c.tile, c.halo, THUMBNAIL,
                                           exposure_target=exposure_target)
    else:
        method = int8_method(TflmModel(tile_fb), c.tile, c.halo, exposure_target=exposure_target)
    _, val = split_train_val(find_pairs(resolve_split(data_dir, "train")))
    result = evaluate(data_dir, {"int8_tiled": method}, log=lambda *_: None, pairs=val)
    return {"int8_tiled_psnr": result["int8_tiled"]["psnr"], "psnr_images": result["meta"]["images"],
            "psnr_split": "LoL validation"}


def _measure_in_child(args):
    candidate, frame_w, frame_h, weights, data_dir = args
    faulthandler.enable()
    import_tensorflow_quietly()  # a fresh (spawned) process: TensorFlow's start-up lines again
    if not (weights and data_dir):
        return {**measure_candidate(candidate, frame_w, frame_h), "measured_with": "random weights"}
    from tinymirnet.model.inference import load_model

    from .convert import fixed_frame_context_models, fixed_shape_model, representative_tiles
    model, cfg = load_model(weights)
    size = candidate.input_size
    # One conversion (trained weights, LoL calibration) serves both the costs and the PSNR.
    if cfg.frame_context:
        tiles, thumbs = representative_tiles(data_dir, size, exposure_target=cfg.exposure_target,
                                             thumbnail_size=(cfg.thumbnail_width, cfg.thumbnail_height))
        context_model, tile_model = fixed_frame_context_models(model, cfg, size)
        flatbuffers = (convert_int8(tile_model, (tiles, context_model.predict(thumbs, verbose=0))),
                       convert_int8(context_model, thumbs))
    else:
        flatbuffers = (convert_int8(fixed_shape_model(model, cfg, size),
                                    representative_tiles(data_dir, size, exposure_target=cfg.exposure_target)), None)
    row = measure_candidate(candidate, frame_w, frame_h, flatbuffers if cfg.frame_context else flatbuffers[0])
    row["measured_with"] = "trained weights"
    if row["fits"]:
        row.update(int8_tiled_psnr(candidate, flatbuffers, data_dir, exposure_target=cfg.exposure_target))
    return row


CHILD_ATTEMPTS = 3


class CandidateCrashed(RuntimeError):
    pass


def _run_child(args) -> tuple[dict, int]:
    """Runs one candidate in a fresh spawned process; a child killed by a signal is retried.
    (The `tflite_micro` runtime has been seen to abort() at random, rarely, in a process that
    also ran the TFLite converter; a rerun of the same candidate succeeds.)"""
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
    the LoL validation split under data_dir."""
    from tinymirnet.model.inference import config_path_for
    trained = [(MirnetConfig.load(config_path_for(w)), w) for w in weights]
    rows = []
    for c in candidates:
        own = next((w for cfg, w in trained if c.matches(cfg)), None)
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


def markdown(rows: list[dict], chosen: dict | None) -> str:
    lines = ["# Budget sweep: network size x tiling on the Nano 33 BLE Sense", "",
             "Each candidate converted to int8 and loaded in the TFLM runtime on the host (a frame-context "
             "candidate: both models; flatbuffer = both, arena = the larger). Budgets: "
             "arena <= 131,072 B (128 KiB), flatbuffer <= 300,000 B. PSNR: int8 tiled on the LoL "
             "validation split (never eval15: the sweep chooses with it) for "
             "candidates with trained weights (float weights converted without pruning); "
             "'-' = not trained. Costs of untrained candidates come from random weights, which "
             "understates the flatbuffer (about 26 KB for C8/8/8: random layers share equal "
             "constants); trained candidates are measured with their weights and LoL calibration.", "",
             "M instr/frame: instructions per QQVGA frame counted on the emulated Cortex-M4 with the "
             "board's TFLM (`tinymirnet budget --instructions`; '-' = not counted); instructions are "
             "not cycles.", "",
             "| candidate | params | flatbuffer B | arena B | M-MAC/tile | tiles/frame | M-MAC/frame | M instr/frame | measured with | fits | int8 tiled PSNR (val) |",
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
