"""Reading a TFLite flatbuffer: its schema, the roles of its inputs, its operators, and the
check that no activation's quantization range collapsed (TFLM would abort on it)."""
from __future__ import annotations

from tinymirnet.model import import_tensorflow_quietly


def tflite_schema():
    """TFLite's flatbuffer schema (tensorflow.lite.python.schema_py_generated), TensorFlow imported
    quietly (commands that never run TensorFlow still read flatbuffers with it)."""
    import_tensorflow_quietly()
    from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def input_roles(flatbuffer: bytes) -> tuple[int, int | None]:
    """(index of the image input, index of the context input or None): a model has one image
    input (a tile or a thumbnail, H x W > 1) and, for a frame-context tile model, a 1x1xN
    context vector."""
    schema = tflite_schema()
    sg = schema.ModelT.InitFromPackedBuf(flatbuffer, 0).subgraphs[0]
    shapes = [tuple(sg.tensors[i].shape) for i in sg.inputs]
    images = [k for k, shp in enumerate(shapes) if len(shp) == 4 and shp[1] * shp[2] > 1]
    vectors = [k for k, shp in enumerate(shapes) if len(shp) == 4 and shp[1] * shp[2] == 1]
    if len(images) != 1 or len(vectors) > 1 or len(images) + len(vectors) != len(shapes):
        raise ValueError(f"model inputs {shapes}: expected one image and at most one 1x1xN context")
    return images[0], (vectors[0] if vectors else None)


def op_names(flatbuffer: bytes) -> list[str]:
    """The builtin operators the model uses, sorted, as TFLite names them (CONV_2D, ...)."""
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = set()
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        ops.add(names[builtin])
    return sorted(ops)


# ----- pixels <-> int8, exactly as the firmware's lookup tables do it -----


# Smallest activation scale taken as real: a tensor whose calibration values were all equal (a
# ReLU dead on every calibration tile, typical of random weights) gets a scale near 1e-8, and
# TFLM's and TFLite's kernels abort() the whole process while preparing the op that reads it.
DEGENERATE_SCALE = 1e-6


def degenerate_tensors(flatbuffer: bytes) -> list[str]:
    """Names of the int8 activation tensors whose quantization range collapsed to a point."""
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    int8 = schema.TensorType.INT8
    bad = []
    for sg in model.subgraphs:
        for i, t in enumerate(sg.tensors):
            q = t.quantization
            if t.type != int8 or q is None or q.scale is None or len(q.scale) != 1:
                continue  # per-channel weights are not activations
            if model.buffers[t.buffer].data is None and float(q.scale[0]) < DEGENERATE_SCALE:
                name = t.name.decode() if isinstance(t.name, bytes) else t.name
                writer = next((k for k, op in enumerate(sg.operators) if i in op.outputs), None)
                bad.append(name or f"tensor {i} (output of op {writer})")
    return bad


def check_not_degenerate(flatbuffer: bytes) -> None:
    bad = degenerate_tensors(flatbuffer)
    if bad:
        raise ValueError(f"int8 model has {len(bad)} activation tensor(s) with a collapsed range "
                         f"(constant on every calibration tile), e.g. {bad[0]!r}: TFLM would abort "
                         "on it; calibrate with more varied tiles")
