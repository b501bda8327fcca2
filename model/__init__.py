"""tinymirnet.model: the tiny MIRNet network, LoL data, training and evaluation.

Importing this package selects Keras 2 (`tf_keras`), which tensorflow-model-optimization
needs for pruning: TF_USE_LEGACY_KERAS must be set before tensorflow is first imported.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
