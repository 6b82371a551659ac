"""The fitted state a model directory's ``manifest.json`` records, written and read in one place.

``AAEDetector.fit`` and ``AAEDetector.load`` both end in a :class:`FittedState`, ``save`` writes
:meth:`FittedState.to_dict`, and ``load`` and ``aaedetect info`` check a manifest with the same
parser. No torch here: ``info`` reads manifests without it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .config import NetConfig, Options
from .errors import AAEDetectError, ModelFormatError
from .preprocess import TabularPreprocessor
from .scoring import Calibration


@dataclass
class TrainResult:
    """What happened in training: rows, epochs, the best epoch, recoveries from divergence."""

    rows: int = 0
    validation_rows: int = 0
    max_epochs: int = 0
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    recoveries: int = 0
    seconds: float = 0.0
    #: Per-epoch metrics; kept in memory, not (yet) in the manifest.
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "history"}
        out["seconds"] = round(self.seconds, 3)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainResult":
        """From ``to_dict``'s output; other keys (the device, versions) are left to the manifest."""
        if not isinstance(data, dict):
            raise TypeError("training is not a table")
        result = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name != "history"})
        counts = (result.rows, result.validation_rows, result.max_epochs, result.epochs_run,
                  result.best_epoch, result.recoveries)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise ValueError(f"training counts {counts} are not non-negative integers")
        return result


@dataclass(frozen=True)
class FittedState:
    """Everything a fitted detector holds besides its weights."""

    options: Options
    seed: int
    input_columns: tuple[str, ...]
    preprocessor: TabularPreprocessor
    network: NetConfig
    calibration: Calibration
    threshold: float
    training: TrainResult
    #: False when ``fit`` had an array (columns named ``x0, x1, ...`` by position).
    named_columns: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The manifest's entries for this state (the manifest adds format, versions, files)."""
        return {"options": self.options.to_dict(), "seed": self.seed,
                "input_columns": list(self.input_columns), "preprocessing": self.preprocessor.to_dict(),
                "network": self.network.to_dict(), "calibration": self.calibration.to_dict(),
                "threshold": self.threshold, "training": self.training.to_dict(),
                "named_columns": self.named_columns}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], where: str) -> "FittedState":
        """The state recorded in ``manifest``; :class:`ModelFormatError` naming ``where`` and the
        first malformed entry otherwise."""
        values, problems = _parse(manifest)
        if problems:
            raise ModelFormatError(f"{where}: malformed manifest ({problems[0]})")
        return cls(**values)


def manifest_problems(manifest: dict[str, Any]) -> list[str]:
    """What would stop the manifest's state from loading, one message per entry."""
    return [f"manifest.json: {problem}" for problem in _parse(manifest)[1]]


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise ValueError(f"seed {value!r} is not an integer in [0, 2**32)")
    return value


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not math.isfinite(float(value)):
        raise ValueError(f"threshold {value!r} is not a finite number")
    return float(value)


def _columns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise TypeError("input_columns is not a list of names")
    return tuple(value)


#: (manifest key, parser, FittedState field).
_ENTRIES = (
    ("options", Options.from_dict, "options"),
    ("seed", _seed, "seed"),
    ("input_columns", _columns, "input_columns"),
    ("preprocessing", TabularPreprocessor.from_dict, "preprocessor"),
    ("network", NetConfig.from_dict, "network"),
    ("calibration", Calibration.from_dict, "calibration"),
    ("threshold", _threshold, "threshold"),
    ("training", TrainResult.from_dict, "training"),
)


def _parse(manifest: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    values, problems = {}, []
    for key, parse, name in _ENTRIES:
        try:
            values[name] = parse(manifest[key])
        except (KeyError, TypeError, ValueError, AttributeError, AAEDetectError) as exc:
            problems.append(f"{key!r} is missing or malformed ({type(exc).__name__}: {exc})")
    if "calibration" in values and "preprocessor" in values:
        try:
            values["calibration"].check_columns(len(values["preprocessor"].columns))
        except ValueError as exc:
            problems.append(f"'calibration' does not match the columns ({exc})")
    named = manifest.get("named_columns", True)  # absent from the models of earlier releases
    if not isinstance(named, bool):
        problems.append(f"'named_columns' is malformed ({named!r} is not true or false)")
    values["named_columns"] = named
    return values, problems
