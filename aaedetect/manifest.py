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


#: The keys of each epoch's record, in order: ``TrainResult.history`` and the manifest's
#: ``training.history`` (a list with one record per completed epoch). A contract: reports read it.
#: ``epoch`` (int, from 1); the means over the epoch's steps of ``recon_loss`` (the generator's
#: reconstruction loss), ``generator_loss`` (its regularizer term: the BCE of fooling the
#: discriminator, or the MMD with ``regularizer="mmd"``) and ``discriminator_loss``;
#: ``discriminator_accuracy`` (the share of the discriminator's decisions in its steps that were
#: right: prior samples with logit > 0, codes with logit < 0); ``validation_loss`` (the held-out
#: rows' reconstruction loss after the epoch). Numbers have 6 significant digits, and are None
#: (null) where a value was not finite.
HISTORY_KEYS = ("epoch", "recon_loss", "generator_loss", "discriminator_loss", "discriminator_accuracy",
                "validation_loss")
#: Significant digits kept of each number in the history.
HISTORY_DIGITS = 6


def epoch_record(epoch: int, **metrics: float | None) -> dict[str, Any]:
    """One epoch's history record: ``metrics`` are the other :data:`HISTORY_KEYS`, rounded to
    :data:`HISTORY_DIGITS` significant digits (None where not finite)."""
    if set(metrics) != set(HISTORY_KEYS[1:]):
        raise TypeError(f"an epoch record takes {', '.join(HISTORY_KEYS[1:])}; got {', '.join(metrics)}")
    return {"epoch": int(epoch), **{k: _rounded(metrics[k]) for k in HISTORY_KEYS[1:]}}


def _rounded(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{HISTORY_DIGITS}g}")


def parse_history(value: Any, max_epochs: int) -> list[dict[str, Any]]:
    """The history read from a (untrusted) manifest: a list of at most ``max_epochs`` records with
    exactly :data:`HISTORY_KEYS`, epochs increasing within 1..max_epochs, numbers finite or None,
    the discriminator's accuracy within [0, 1]. TypeError or ValueError naming the first problem."""
    if not isinstance(value, list):
        raise TypeError(f"history is a {type(value).__name__}, not a list")
    if len(value) > max_epochs:
        raise ValueError(f"history has {len(value)} records, more than max_epochs ({max_epochs})")
    records, last = [], 0
    for i, record in enumerate(value):
        if not isinstance(record, dict):
            raise TypeError(f"history[{i}] is a {type(record).__name__}, not a table")
        if set(record) != set(HISTORY_KEYS):
            raise ValueError(f"history[{i}] has the keys {sorted(record)}; expected exactly "
                             f"{', '.join(HISTORY_KEYS)}")
        epoch = record["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not last < epoch <= max_epochs:
            raise ValueError(f"history[{i}]: epoch {epoch!r} is not an integer in {last + 1}..{max_epochs} "
                             f"(epochs increase, up to max_epochs)")
        parsed: dict[str, Any] = {"epoch": epoch}
        for key in HISTORY_KEYS[1:]:
            number = record[key]
            if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))
                                       or not math.isfinite(number)):
                raise ValueError(f"history[{i}] (epoch {epoch}): {key} {number!r} is not a finite number or null")
            parsed[key] = None if number is None else float(number)
        accuracy = parsed["discriminator_accuracy"]
        if accuracy is not None and not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"history[{i}] (epoch {epoch}): discriminator_accuracy {accuracy!r} is not in [0, 1]")
        records.append(parsed)
        last = epoch
    return records


@dataclass
class TrainResult:
    """What happened in training: rows, epochs, the best epoch, recoveries from divergence, and
    the per-epoch :attr:`history`."""

    rows: int = 0
    validation_rows: int = 0
    max_epochs: int = 0
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    recoveries: int = 0
    seconds: float = 0.0
    #: One record per completed epoch, in order (see :data:`HISTORY_KEYS`). Epochs that diverged
    #: and were rolled back have none: their numbers are missing (``recoveries`` counts them).
    #: Empty for models written before aaedetect recorded it (their manifests have no history).
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "history"}
        out["seconds"] = round(self.seconds, 3)
        out["history"] = [{k: record[k] for k in HISTORY_KEYS} for record in self.history]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainResult":
        """From ``to_dict``'s output; other keys (the device, versions) are left to the manifest.
        A manifest without ``history`` (written before it was recorded) gives an empty one."""
        if not isinstance(data, dict):
            raise TypeError("training is not a table")
        result = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name != "history"})
        counts = (result.rows, result.validation_rows, result.max_epochs, result.epochs_run,
                  result.best_epoch, result.recoveries)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise ValueError(f"training counts {counts} are not non-negative integers")
        result.history = parse_history(data.get("history", []), result.max_epochs)
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
