"""The simulator library: the firmware core (firmware/lib/tinymirnet_core) built for this machine
as libtinymirnet_sim.so (`make -C firmware/tests sim`, done on demand when it is missing or older
than its sources), and its C API (firmware/sim/sim_api.h) in ctypes."""
from __future__ import annotations

import ctypes
import shutil
import tempfile
from pathlib import Path

from tinymirnet.model.paths import FIRMWARE_DIR, SIM_LIBRARY
from tinymirnet.quantize.native_build import ensure_built


class VirtualBoardError(RuntimeError):
    """The virtual board cannot start (no checkout, build failure, model mismatch, ...)."""


READ_FN = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8),
                            ctypes.c_size_t)
WRITE_FN = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8),
                             ctypes.c_size_t)
STATUS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
CAPTURE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint16),
                               ctypes.c_size_t)
INVOKE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int8),
                              ctypes.POINTER(ctypes.c_int8), ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_int8), ctypes.c_size_t)
INVOKE_CONTEXT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int8),
                                      ctypes.c_size_t, ctypes.POINTER(ctypes.c_int8), ctypes.c_size_t)
SIZE_FN = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p)
CLOCK_FN = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)


class SimPorts(ctypes.Structure):
    _fields_ = [("user", ctypes.c_void_p), ("link_read", READ_FN), ("link_write", WRITE_FN),
                ("camera_begin", STATUS_FN), ("camera_capture", CAPTURE_FN),
                ("model_begin", STATUS_FN), ("model_invoke", INVOKE_FN),
                ("model_invoke_context", INVOKE_CONTEXT_FN),
                ("model_arena_used_bytes", SIZE_FN), ("clock_micros", CLOCK_FN)]


class SimConfig(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in (
        "protocol_version", "frame_width", "frame_height", "tile_size", "halo",
        "model_input_size", "tile_count", "max_payload", "frame_gap_timeout_us",
        "frame_buffer_bytes", "tile_io_bytes", "protocol_buffer_bytes", "device_object_bytes",
        "exposure_target", "frame_context", "thumbnail_width", "thumbnail_height", "context_values",
        "frame_context_bytes")]


def _sim_inputs() -> list[Path]:
    """Every file the simulator library is built from (sources, headers, the Makefile)."""
    dirs = [FIRMWARE_DIR / "lib" / "tinymirnet_core", FIRMWARE_DIR / "lib" / "tinymirnet_model",
            FIRMWARE_DIR / "sim"]
    files = [p for d in dirs if d.is_dir() for p in d.iterdir()
             if p.suffix in (".cc", ".h", ".cpp", ".hpp")]
    return files + [FIRMWARE_DIR / "tests" / "Makefile"]


def ensure_sim_library(path: Path = SIM_LIBRARY) -> Path:
    """The simulator library, built with `make -C firmware/tests sim` if it is missing or
    older than any of its sources or headers."""
    return ensure_built(path, FIRMWARE_DIR / "tests", "sim", _sim_inputs())


def load_sim_library(path: Path | None = None) -> ctypes.CDLL:
    """A private copy of the simulator library: the core keeps one static device per loaded
    library, so each board loads its own copy (the copy is deleted once loaded)."""
    source = ensure_sim_library() if path is None else Path(path)
    tmp_dir = tempfile.mkdtemp(prefix="tinymirnet-sim-")
    try:
        copy = Path(tmp_dir) / source.name
        shutil.copyfile(source, copy)
        lib = ctypes.CDLL(str(copy))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    lib.tmn_sim_create.argtypes = [ctypes.POINTER(SimPorts), ctypes.c_char_p]
    lib.tmn_sim_create.restype = ctypes.c_int
    lib.tmn_sim_poll.restype = ctypes.c_int
    lib.tmn_sim_get_config.argtypes = [ctypes.POINTER(SimConfig)]
    lib.tmn_thumbnail_input.argtypes = [ctypes.POINTER(ctypes.c_uint16), ctypes.c_uint32, ctypes.c_uint32,
                                        ctypes.POINTER(ctypes.c_int8)]
    lib.tmn_context_requantization_table.argtypes = [ctypes.POINTER(ctypes.c_int8)]
    return lib


def sim_config(lib: ctypes.CDLL) -> dict[str, int]:
    config = SimConfig()
    lib.tmn_sim_get_config(ctypes.byref(config))
    return {name: int(getattr(config, name)) for name, _ in SimConfig._fields_}
