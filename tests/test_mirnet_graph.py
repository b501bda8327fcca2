"""The shipped int8 tile and context models are a tiny MIRNet: three streams, DAUs with per-pixel
spatial attention, SKFF weights in use (quantize/mirnet_graph.py). A graph that loses a part
fails the check, and with it `tinymirnet quantize`."""
from __future__ import annotations

from pathlib import Path

import pytest

from tinymirnet.model.network_config import MirnetConfig
from tinymirnet.model.paths import ARTIFACTS_DIR as ARTIFACTS
from tinymirnet.quantize.mirnet_graph import NotAMirnet, check_mirnet


def read_pair(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "tiny_mirnet_int8.tflite").read_bytes(), (folder / "tiny_mirnet_context_int8.tflite").read_bytes()


def test_the_shipped_models_are_a_tiny_mirnet():
    from tinymirnet.model.tiling import load_tiling
    parts = check_mirnet(*read_pair(ARTIFACTS))
    size = load_tiling().model_input
    tile = parts["tile"]
    assert tile["input"] == size and tile["stream_resolutions"] == [size // 2, size // 4, size // 8]
    rounds = MirnetConfig.load(ARTIFACTS / "tiny_mirnet_pruned.json").mrb_rounds
    assert rounds >= 1
    for s in tile["stream_resolutions"]:
        # A DAU on every stream in every round, each with both attentions and their concat.
        assert tile["spatial_attention"][s] == tile["channel_attention"][s] == tile["dau_concat"][s] == rounds
    # The exchange (bottom into middle) and the final fusion (middle into top), once per round.
    assert tile["skff"][size // 4] == rounds and tile["skff"][size // 2] == rounds
    # Per round: two SKFF softmaxes; three channel attentions (a sigmoid each).
    assert parts["context"]["softmax"] == 2 * rounds and parts["context"]["logistic"] == 3 * rounds


def test_the_half_resolution_alternative_is_not():
    with pytest.raises(NotAMirnet, match="spatial-attention"):
        check_mirnet(*read_pair(ARTIFACTS / "half_resolution"))


def converted_without(monkeypatch, method: str, replacement):
    """A random-weight int8 pair of the board's tiny MIRNet with one block replaced."""
    from tinymirnet.model.network import Builder, MirnetConfig
    from tinymirnet.quantize.convert import random_weights_frame_context_int8
    monkeypatch.setattr(Builder, method, replacement)
    cfg = MirnetConfig(design="mrb_half_resolution", channels=4, thumbnail_width=16, thumbnail_height=8)
    return random_weights_frame_context_int8(cfg, 32)


def test_a_graph_without_spatial_attention_fails(monkeypatch):
    pair = converted_without(monkeypatch, "light_spatial_attention", lambda self, x, name: x)
    with pytest.raises(NotAMirnet, match="spatial-attention multiply on the 16x16 stream"):
        check_mirnet(*pair)


def test_a_graph_without_skff_fails(monkeypatch):
    from tinymirnet.model import network

    def plain_sum(self, streams, name):
        return self.layers.Add(name=f"{name}_plain")(streams)
    # The context then holds the channel attention alone.
    monkeypatch.setattr(network, "context_parts", lambda cfg: cfg.stream_channels() * cfg.mrb_rounds)
    pair = converted_without(monkeypatch, "selective_kernel_fusion", plain_sum)
    with pytest.raises(NotAMirnet, match="SKFF"):
        check_mirnet(*pair)


def test_a_graph_without_the_bottom_stream_fails(monkeypatch):
    from tinymirnet.model.network import Builder
    down = Builder.light_downsample

    def no_second_down(self, x, out_channels, name):  # the bottom "stream" stays at the middle's size
        return self.conv(x, out_channels, 1, f"{name}_proj") if name == "mrb_down2" else down(self, x, out_channels, name)

    def up_or_same(self, x, out_channels, name):
        return self.conv(x, out_channels, 1, f"{name}_proj") if "up_bot" in name else up(self, x, out_channels, name)
    up = Builder.light_upsample
    monkeypatch.setattr(Builder, "light_upsample", up_or_same)
    pair = converted_without(monkeypatch, "light_downsample", no_second_down)
    with pytest.raises(NotAMirnet, match="no stream at 4x4"):
        check_mirnet(*pair)
