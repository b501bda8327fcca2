"""What makes an int8 tile model and its context model a tiny MIRNet, read from the graphs
themselves (the flatbuffers the board runs), so that an export that lost a part fails:

* three parallel streams: 3x3 convolutions at three resolutions, each half the one above;
* DAUs: on every stream a per-pixel spatial-attention multiply (a feature map times a one-channel
  map of the same size), a channel-attention multiply (times a context vector), and the concat
  of the two branches;
* SKFF: weighted sums, two feature maps each times a vector of weights from the context, added;
  the context model computes those weights with a softmax across streams.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .flatbuffer import tflite_schema


class NotAMirnet(ValueError):
    """The graph lacks a part of the tiny MIRNet; the message names it."""


@dataclass
class _Graph:
    ops: list[tuple[str, list[int], list[int]]]  # (op name, input tensor indices, output tensor indices)
    shapes: dict[int, tuple[int, ...]]
    inputs: list[int]
    outputs: list[int]
    producers: dict[int, int] = field(default_factory=dict)

    def __post_init__(self):
        self.producers = {t: k for k, (_, _, outs) in enumerate(self.ops) for t in outs}

    def from_input(self, tensor: int, input_index: int) -> bool:
        """Does `tensor` derive from graph input `input_index`?"""
        seen, todo = set(), [tensor]
        while todo:
            t = todo.pop()
            if t == self.inputs[input_index]:
                return True
            if t in seen or t not in self.producers:
                continue
            seen.add(t)
            todo.extend(i for i in self.ops[self.producers[t]][1] if i >= 0)
        return False


def _read(flatbuffer: bytes) -> _Graph:
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes]
    graph = model.subgraphs[0]
    shapes = {k: tuple(int(d) for d in t.shape) for k, t in enumerate(graph.tensors)}
    ops = [(codes[op.opcodeIndex], [int(i) for i in op.inputs], [int(o) for o in op.outputs]) for op in graph.operators]
    return _Graph(ops, shapes, [int(i) for i in graph.inputs], [int(o) for o in graph.outputs])


def _image_input(g: _Graph) -> int:
    """Which graph input is the image (the 4-D one with three channels and the largest side)."""
    return max(range(len(g.inputs)), key=lambda k: g.shapes[g.inputs[k]][1] if len(g.shapes[g.inputs[k]]) == 4 else 0)


def tile_model_parts(flatbuffer: bytes) -> dict:
    """The tiny MIRNet's parts found in an int8 frame-context tile model; raises NotAMirnet
    naming the first part missing."""
    g = _read(flatbuffer)
    if len(g.inputs) != 2:
        raise NotAMirnet("not a frame-context tile model: it needs two inputs (tile and context)")
    image = _image_input(g)
    context = 1 - image
    size = g.shapes[g.inputs[image]][1]
    streams = [size // 2, size // 4, size // 8]  # the top stream runs at half resolution

    conv3 = Counter()
    spatial, channel, concat = Counter(), Counter(), Counter()
    context_muls = {}
    for k, (name, ins, outs) in enumerate(g.ops):
        out = g.shapes[outs[0]]
        if name == "CONV_2D" and len(g.shapes[ins[1]]) == 4 and g.shapes[ins[1]][1:3] == (3, 3):
            conv3[out[1]] += 1
        elif name == "MUL" and len(ins) == 2:
            a, b = (g.shapes[i] for i in ins)
            if len(a) == 4 and len(b) == 4 and a[1:3] == b[1:3] and min(a[3], b[3]) == 1 < max(a[3], b[3]):
                spatial[out[1]] += 1
            elif len(a) == 4 and len(b) == 4 and a[3] == b[3] and min(a[1], b[1]) == 1 < max(a[1], b[1]):
                vector = ins[0] if a[1] == 1 else ins[1]
                if g.from_input(vector, context):
                    context_muls[outs[0]] = out[1]
        elif name == "CONCATENATION" and len(out) == 4 and out[1] > 1:
            concat[out[1]] += 1
    # A DAU's channel attention: a context-weighted map concatenated with the spatial branch;
    # SKFF: an ADD of two context-weighted feature maps.
    channel = Counter(context_muls[i] for name, ins, _ in g.ops if name == "CONCATENATION"
                      for i in ins if i in context_muls)
    skff = Counter(context_muls[ins[0]] for name, ins, _ in g.ops
                   if name == "ADD" and len(ins) == 2 and all(i in context_muls for i in ins))

    parts = {"input": size, "stream_resolutions": streams,
             "conv3x3": {s: conv3[s] for s in streams}, "spatial_attention": {s: spatial[s] for s in streams},
             "channel_attention": {s: channel[s] for s in streams}, "dau_concat": {s: concat[s] for s in streams},
             "skff": {s: skff[s] for s in streams}}
    for s in streams:
        if conv3[s] < 2:
            raise NotAMirnet(f"no stream at {s}x{s}: fewer than two 3x3 convolutions there (DAU)")
        if not spatial[s]:
            raise NotAMirnet(f"no per-pixel spatial-attention multiply on the {s}x{s} stream (DAU)")
        if not channel[s]:
            raise NotAMirnet(f"no channel-attention multiply by a context vector on the {s}x{s} stream (DAU)")
        if not concat[s]:
            raise NotAMirnet(f"no concat of the attention branches on the {s}x{s} stream (DAU)")
    if not skff[streams[1]]:
        raise NotAMirnet(f"no SKFF exchanging the streams at {streams[1]}x{streams[1]}")
    if not skff[streams[0]]:
        raise NotAMirnet(f"no final SKFF into the top stream at {streams[0]}x{streams[0]}")
    return parts


def context_model_parts(flatbuffer: bytes, tile_flatbuffer: bytes) -> dict:
    """The attention the context model computes for its tile model: the channel attention's
    sigmoid, SKFF's softmax across streams, and a context vector as long as the tile model's
    context input."""
    g, tile = _read(flatbuffer), _read(tile_flatbuffer)
    ops = Counter(name for name, _, _ in g.ops)
    if not ops["SOFTMAX"]:
        raise NotAMirnet("the context model computes no SKFF weights (no SOFTMAX)")
    if not ops["LOGISTIC"]:
        raise NotAMirnet("the context model computes no channel attention (no LOGISTIC)")
    produced = g.shapes[g.outputs[0]][-1]
    wanted = tile.shapes[tile.inputs[1 - _image_input(tile)]][-1]
    if produced != wanted:
        raise NotAMirnet(f"the context model makes {produced} attention values, the tile model reads {wanted}")
    return {"softmax": ops["SOFTMAX"], "logistic": ops["LOGISTIC"], "context_values": int(wanted)}


def check_mirnet(tile_flatbuffer: bytes, context_flatbuffer: bytes) -> dict:
    """Both models' parts (`tile_model_parts`, `context_model_parts`); raises NotAMirnet."""
    return {"tile": tile_model_parts(tile_flatbuffer), "context": context_model_parts(context_flatbuffer, tile_flatbuffer)}
