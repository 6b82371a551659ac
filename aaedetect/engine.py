"""Pick the scoring engine for a model directory."""

from __future__ import annotations

import os

from .scoring import FrameScorer


def load_scorer(model_dir: str | os.PathLike, *, engine: str = "torch", device: str = "auto") -> FrameScorer:
    """A table scorer for ``model_dir``: the torch model (``engine="torch"``)."""
    from .detector import load

    return load(model_dir, device=device)
