"""tinymirnet.model: the tiny MIRNet network, LoL data, training and evaluation.

Importing this package selects Keras 2 (`tf_keras`), which tensorflow-model-optimization
needs for pruning: TF_USE_LEGACY_KERAS must be set before tensorflow is first imported.
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and starts its runtime with the process's stderr (file descriptor 2)
    pointed at /dev/null. TensorFlow's start-up lines (oneDNN, "Could not find cuda drivers",
    an E0000 "failed call to cuInit" on a machine without a GPU) are written by C++ logging
    before TF_CPP_MIN_LOG_LEVEL is read, so the variable alone does not silence them. Python
    exceptions still propagate; only C-level text during the import is dropped."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
        tf.config.list_physical_devices()  # the CUDA probe happens here, not at import
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
