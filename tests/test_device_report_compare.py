"""`tinymirnet device-report --compare`: this network beside earlier device reports, each named
by its file, with the instructions and the tile model's per-op shares before and after."""
import json

import pytest

from tinymirnet.host.device_report import DeviceReportError, comparison, comparison_lines


def fake_report(per_frame: int, per_tile: int, ops: dict) -> dict:
    return {"instructions": {"per_frame": per_frame, "per_tile_invoke": per_tile}, "tiles_per_frame": 12,
            "op_shares": {"tile_model": [{"op": k, "share": v} for k, v in ops.items()]}}


def test_the_comparison_names_each_report_by_its_file_and_divides_by_it(tmp_path):
    before = tmp_path / "device_report_half_resolution.json"
    before.write_text(json.dumps(fake_report(200_000_000, 16_000_000, {"CONV_2D": 0.8, "MUL": 0.2})))
    now = fake_report(250_000_000, 20_000_000, {"CONV_2D": 0.6, "ADD": 0.4})
    now["compared_with"] = comparison(now, [before])
    assert now["compared_with"][0]["network"] == "half_resolution"
    text = "\n".join(comparison_lines(now))
    assert "| half_resolution (" in text and "| 200.0 | 16.00 | 12 | 1.25 |" in text
    assert "* half_resolution: CONV_2D 80.0 %, MUL 20.0 %" in text and "* this network: CONV_2D 60.0 %, ADD 40.0 %" in text


def test_a_file_that_is_not_a_device_report_is_one_clear_error(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text("{}")
    with pytest.raises(DeviceReportError, match="--compare .*notes.json: not a device report"):
        comparison(fake_report(1, 1, {}), [bad])
