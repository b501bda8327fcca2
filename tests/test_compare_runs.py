import csv
import json
import shutil

import pytest

from tinymirnet.host.cli import main
from tinymirnet.model.compare_runs import RunError, compare_runs, read_run


def fake_run(folder, schedule, val_psnrs, epochs=None, seed=0):
    """A run directory as `tinymirnet train` leaves it (config.json + log.csv)."""
    folder.mkdir(parents=True)
    cfg = {"schedule": schedule, "lr": 2e-3, "epochs": epochs or len(val_psnrs), "batch": 8,
           "crop": 128, "seed": seed, "model": {"channels": 4}, "warmup_epochs": 3,
           "min_lr": 1e-5, "plateau_patience": 5, "plateau_factor": 0.5}
    (folder / "config.json").write_text(json.dumps(cfg))
    with (folder / "log.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "lr", "train_loss", "train_psnr", "val_loss", "val_psnr", "seconds"])
        for e, v in enumerate(val_psnrs, 1):
            w.writerow([e, 1e-3, 0.1, v - 1, 0.1, v, 30])
    return folder


def test_verdict_uses_best_validation_psnr_and_names_the_difference(tmp_path):
    a = fake_run(tmp_path / "cos", "cosine", [15.0, 18.0, 19.5, 19.0])
    b = fake_run(tmp_path / "plat", "plateau", [16.0, 18.5, 18.9, 19.2])
    out = compare_runs([a, b], tmp_path / "cmp" / "report.json", log=lambda *_: None)
    assert out["differ_in"] == ["schedule"]
    assert out["verdict"].startswith("cos (cosine) is better by 0.30 dB")
    assert read_run(a)["best_epoch"] == 3 and read_run(b)["train_minutes"] == 2.0
    for suffix in (".json", ".md", ".png"):
        assert (tmp_path / "cmp" / f"report{suffix}").is_file()
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "| cos | cosine |" in md and "19.50 (3)" in md


def test_close_runs_are_a_tie_and_unfinished_runs_are_provisional(tmp_path):
    a = fake_run(tmp_path / "a", "cosine", [19.0, 19.50])
    b = fake_run(tmp_path / "b", "plateau", [19.48, 19.1], epochs=10, seed=1)
    out = compare_runs([a, b], tmp_path / "r.json", log=lambda *_: None)
    assert out["differ_in"] == ["schedule", "epochs_planned", "seed"]
    assert out["verdict"].startswith("provisional, b not finished: tie")


def test_not_a_run_is_a_one_line_error(tmp_path, capsys):
    a = fake_run(tmp_path / "a", "cosine", [19.0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="not a training run"):
        compare_runs([a, tmp_path / "empty"], tmp_path / "r.json")
    assert main(["compare-runs", str(a), str(tmp_path / "empty"), "--report", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "empty" in err[0]
    assert not (tmp_path / "r.json").exists()


def test_benchmark_scores_each_best_weights_on_eval15(tmp_path, lol_root, small_float_weights):
    runs = []
    for name, vals in (("a", [10.0, 11.0]), ("b", [10.5, 10.7])):
        run = fake_run(tmp_path / name, "cosine" if name == "a" else "plateau", vals)
        shutil.copy(small_float_weights, run / "best.weights.h5")
        shutil.copy(small_float_weights.with_name(small_float_weights.name.split(".")[0] + ".json"),
                    run / "best.json")
        runs.append(run)
    out = compare_runs(runs, tmp_path / "r.json", data=lol_root, log=lambda *_: None)
    bench = out["benchmark"]
    assert bench["split"] == "eval15" and bench["images"] == 3
    # the same weights on the same images score the same
    assert bench["runs"]["a"]["psnr"] == bench["runs"]["b"]["psnr"]
    assert len(bench["runs"]["a"]["images"]) == 3


def test_plot_axis_of_a_non_negative_series_stops_at_zero():
    from tinymirnet.model.plots import _nice_range
    lo, hi = _nice_range([1e-5, 2e-3])
    assert lo == 0.0 and hi > 2e-3
    lo, hi = _nice_range([-1.0, 1.0])
    assert lo < -1.0
