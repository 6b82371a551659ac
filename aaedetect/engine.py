"""Pick the scoring engine for a model directory: onnxruntime (default, no torch) or torch."""

from __future__ import annotations

import os

from .config import ENGINES
from .errors import OptionError
from .scoring import FrameScorer


def load_scorer(model_dir: str | os.PathLike, *, engine: str = "onnx", device: str = "auto",
                batch_rows: int | None = None) -> FrameScorer:
    """A table scorer for ``model_dir``.

    ``engine="onnx"``: :class:`aaedetect.runtime.OnnxScorer`, onnxruntime only (torch is never
    imported). ``engine="torch"``: the fitted :class:`aaedetect.AAEDetector`.
    """
    if engine == "onnx":
        from .runtime import OnnxScorer

        return OnnxScorer(model_dir, device=device, batch_rows=batch_rows)
    if engine == "torch":
        from .detector import load

        return load(model_dir, device=device)
    raise OptionError(f"engine {engine!r}: must be one of {', '.join(ENGINES)}")
