"""`tinymirnet compare-runs`: training runs side by side (e.g. the two learning-rate schedules
trained with everything else equal), written as JSON + markdown + a PNG of validation PSNR and
learning rate per epoch.

The verdict uses the validation PSNR of each run's best epoch: the figure training selects
on. With `--data` the best weights of every run are also scored full-frame on the benchmark
split (eval15) in one pass over the same images; that figure is reported, never used to pick.
"""
from __future__ import annotations

import json
from pathlib import Path

from .data import resolve_split
from .files import write_report
from .plots import plot_curves
from .train import _read_log


TIE_DB = 0.05  # best-validation differences below this are called a tie


class RunError(ValueError):
    pass


def read_run(run_dir: Path) -> dict:
    """The summary of one run directory of `tinymirnet train`."""
    run_dir = Path(run_dir)
    config_path, log_path = run_dir / "config.json", run_dir / "log.csv"
    if not config_path.is_file() or not log_path.is_file():
        raise RunError(f"{run_dir}: not a training run (needs config.json and log.csv)")
    cfg = json.loads(config_path.read_text())
    rows = _read_log(log_path)
    if not rows:
        raise RunError(f"{log_path}: no finished epoch")
    best = max(rows, key=lambda r: r["val_psnr"])
    return {
        "name": run_dir.name,
        "path": str(run_dir),
        "schedule": cfg.get("schedule"),
        "lr": cfg.get("lr"),
        "schedule_settings": {k: cfg.get(k) for k in ("warmup_epochs", "min_lr", "plateau_patience",
                                                      "plateau_factor")},
        "epochs_planned": cfg.get("epochs"),
        "epochs_done": int(rows[-1]["epoch"]),
        "batch": cfg.get("batch"), "crop": cfg.get("crop"), "seed": cfg.get("seed"),
        "model": cfg.get("model"),
        "best_epoch": int(best["epoch"]),
        "best_val_psnr": best["val_psnr"],
        "last_val_psnr": rows[-1]["val_psnr"],
        "final_lr": rows[-1]["lr"],
        "train_minutes": sum(r["seconds"] for r in rows) / 60.0,
        "per_epoch": {"epoch": [int(r["epoch"]) for r in rows], "lr": [r["lr"] for r in rows],
                      "val_psnr": [r["val_psnr"] for r in rows],
                      "train_loss": [r["train_loss"] for r in rows]},
    }


def differences(runs: list[dict]) -> list[str]:
    """The training settings in which the runs differ (a fair comparison differs in one)."""
    keys = ["schedule", "lr", "epochs_planned", "batch", "crop", "seed", "model"]
    return [k for k in keys if len({json.dumps(r[k], sort_keys=True) for r in runs}) > 1]


def verdict(runs: list[dict]) -> str:
    unfinished = [r["name"] for r in runs if r["epochs_done"] < (r["epochs_planned"] or 0)]
    text = _ranking(runs)
    return f"provisional, {', '.join(unfinished)} not finished: {text}" if unfinished else text


def _ranking(runs: list[dict]) -> str:
    ranked = sorted(runs, key=lambda r: r["best_val_psnr"], reverse=True)
    top, second = ranked[0], ranked[1]
    gap = top["best_val_psnr"] - second["best_val_psnr"]
    if gap < TIE_DB:
        return (f"tie: best validation PSNR {top['best_val_psnr']:.2f} ({top['name']}) vs "
                f"{second['best_val_psnr']:.2f} ({second['name']}), within {TIE_DB} dB")
    return (f"{top['name']} ({top['schedule']}) is better by {gap:.2f} dB best validation PSNR "
            f"({top['best_val_psnr']:.2f} vs {second['best_val_psnr']:.2f} for {second['name']})")


def markdown(report: dict) -> str:
    runs = report["runs"]
    bench = report.get("benchmark")
    head = ["run", "schedule", "lr", "epochs", "best val PSNR (epoch)", "last val PSNR", "final lr",
            "train min"]
    if bench:
        head += [f"{bench['split']} PSNR", f"{bench['split']} SSIM"]
    lines = ["# Training runs compared", "",
             f"Runs differ in: {', '.join(report['differ_in']) or 'nothing'}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [r["name"], str(r["schedule"]), f"{r['lr']:g}", f"{r['epochs_done']}/{r['epochs_planned']}",
                 f"{r['best_val_psnr']:.2f} ({r['best_epoch']})", f"{r['last_val_psnr']:.2f}",
                 f"{r['final_lr']:.2e}", f"{r['train_minutes']:.0f}"]
        if bench:
            b = bench["runs"][r["name"]]
            cells += [f"{b['psnr']:.2f}", f"{b['ssim']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Verdict (on validation PSNR, the selection figure): {report['verdict']}."]
    if bench:
        lines += ["", f"Benchmark: full-frame float PSNR/SSIM of each run's best weights on "
                      f"{bench['images']} {bench['split']} images, scored in one pass; reported, not "
                      f"used to choose."]
    lines += ["", "Validation PSNR and learning rate per epoch: `" + Path(report["plot"]).name + "`.", ""]
    return "\n".join(lines)


def compare_runs(run_dirs: list[Path], report: Path, data: Path | None = None, log=print) -> dict:
    if len(run_dirs) < 2:
        raise RunError("compare-runs needs at least two run directories")
    runs = [read_run(d) for d in run_dirs]
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise RunError(f"run directories must have different names: {', '.join(names)}")
    report = Path(report)
    out = {"runs": runs, "differ_in": differences(runs), "verdict": verdict(runs),
           "plot": str(report.with_suffix(".png"))}
    if data is not None:
        out["benchmark"] = _benchmark(runs, data, log)
    epochs = sorted({e for r in runs for e in r["per_epoch"]["epoch"]})

    def series(r, key):
        by_epoch = dict(zip(r["per_epoch"]["epoch"], r["per_epoch"][key]))
        return [by_epoch.get(e) for e in epochs]

    plot_curves(report.with_suffix(".png"), epochs, {
        "validation PSNR (dB)": {r["name"]: series(r, "val_psnr") for r in runs},
        "learning rate": {r["name"]: series(r, "lr") for r in runs},
    })
    write_report(report, out, markdown(out))
    log(markdown(out))
    return out


def _benchmark(runs: list[dict], data: Path, log) -> dict:
    from .evaluate import evaluate
    from .inference import FloatEnhancer
    methods = {}
    for r in runs:
        weights = Path(r["path"]) / "best.weights.h5"
        enhancer = FloatEnhancer.load(weights, Path(r["path"]) / "best.json")
        methods[r["name"]] = enhancer.enhance
    result = evaluate(data, methods, log=log)
    split = resolve_split(data, "eval")
    return {"split": split.name, "images": result["meta"]["images"],
            "runs": {n: {"psnr": result[n]["psnr"], "ssim": result[n]["ssim"],
                         "images": result[n]["images"]} for n in methods}}
