"""aaedetect: anomaly detection for tables with an Adversarial Autoencoder.

``from aaedetect import AAEDetector, load`` imports torch on first use only, so that
``import aaedetect.runtime`` (ONNX scoring) stays free of torch.
"""

from ._version import __version__
from .errors import (AAEDetectError, DataError, ModelFormatError, OptionError, PathError,
                     SmallTableWarning, TrainingError)

__all__ = ["AAEDetector", "load", "labelled_scorer", "__version__", "AAEDetectError", "DataError",
           "ModelFormatError", "OptionError", "PathError", "SmallTableWarning", "TrainingError"]


def __getattr__(name):
    if name in ("AAEDetector", "load", "labelled_scorer", "NotFittedError"):
        from . import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'aaedetect' has no attribute {name!r}")
