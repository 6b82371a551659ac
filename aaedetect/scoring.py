"""Score calibration, thresholds and the output table (numpy and pandas only, never torch).

Both engines (torch and onnxruntime) produce the graph's outputs; this module fits the calibration
that the graph applies (:class:`Calibration`, which also owns the formula that combines the
parts) and turns the outputs into the table users see.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from .config import PART_CAP
from .errors import DataError
from .preprocess import InputReport, TabularPreprocessor

SCORE_COLUMNS = ("anomaly_score", "recon_score", "latent_score", "neighbor_score", "is_anomaly")
#: The score parts that calibration turns into robust z-scores.
CALIBRATED_PARTS = ("recon", "latent", "neighbor_x", "neighbor_h")
#: Floor for a calibration scale (in log units): keeps a near-constant part from blowing up.
MIN_LOG_SCALE = 0.01
#: Floor for the neighbour distances' scale, in log units (one unit is then at least a 5% change
#: of distance). The spread is taken over held-out rows at a distance from every training row,
#: so exact copies do not shrink it; this floor is for tables where nearly every row is a copy.
#: On the benchmark tables the spread is 0.13 to 1.95, so the floor never binds there.
MIN_NEIGHBOR_LOG_SCALE = 0.05
#: Smallest offset added before taking the log of a score part.
CALIBRATION_EPS = 1e-6
#: The offset is this share of the part's median on held-out normal rows.
LOG_OFFSET_SHARE = 0.1
#: Smallest offset for the neighbour distances (in standardized feature units): rows closer than
#: this are the same row, and rounding in the distance must not move the score.
NEIGHBOR_MIN_OFFSET = 1e-3


def robust_location_scale(values: np.ndarray, floor: float = MIN_LOG_SCALE) -> tuple[float, float]:
    """Median and a robust standard deviation (IQR / 1.349), floored at ``floor``."""
    values = np.asarray(values, dtype=np.float64)
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q50), float(max((q75 - q25) / 1.349, floor))


@dataclass(frozen=True)
class PartCalibration:
    """``z = (t(raw) - center) / scale`` with ``t(raw) = log(raw + offset)`` when ``log``, else
    ``raw``: a robust z-score of one score part on held-out normal rows."""

    center: float = 0.0
    scale: float = 1.0
    log: bool = False
    offset: float = 0.0

    @classmethod
    def fit(cls, raw: np.ndarray, log: bool) -> "PartCalibration":
        """Fit on the raw part of held-out normal rows. Positive, skewed parts are taken in log
        space, where they are close to symmetric; the offset (a tenth of the median) keeps
        differences among near-zero values (noise, and float32 rounding) from being magnified."""
        values = np.asarray(raw, dtype=np.float64)
        offset = 0.0
        if log:
            offset = max(LOG_OFFSET_SHARE * float(np.median(values)), CALIBRATION_EPS)
            values = np.log(values + offset)
        center, scale = robust_location_scale(values)
        return cls(center, scale, log, offset)

    @classmethod
    def fit_distances(cls, raw: np.ndarray) -> "PartCalibration":
        """Fit on neighbour distances, where exact copies of training rows sit at 0.

        The offset and the spread come from the rows at a distance (the copies would make both
        0), and the spread is floored at ``MIN_NEIGHBOR_LOG_SCALE``; the center is the median
        of all rows, copies included, as for the other parts.
        """
        values = np.asarray(raw, dtype=np.float64)
        apart = values[values > 0]
        typical = float(np.median(apart)) if apart.size else 0.0
        offset = max(LOG_OFFSET_SHARE * typical, NEIGHBOR_MIN_OFFSET)
        center, scale = robust_location_scale(np.log(values + offset), MIN_NEIGHBOR_LOG_SCALE)
        if apart.size:
            scale = max(scale, robust_location_scale(np.log(apart + offset), MIN_NEIGHBOR_LOG_SCALE)[1])
        return cls(center, scale, True, offset)

    def z(self, raw, log: Callable = np.log):
        """The calibrated part; ``log`` is the array library's (``torch.log`` in the graph)."""
        if self.log:
            raw = log(raw + self.offset)
        return (raw - self.center) / self.scale

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PartCalibration":
        part = cls(center=float(data["center"]), scale=float(data["scale"]), log=data["log"],
                   offset=float(data["offset"]))
        if not isinstance(part.log, bool) or not all(map(math.isfinite, (part.center, part.scale, part.offset))) \
                or part.scale <= 0 or part.offset < 0:
            raise ValueError(f"calibration {data!r} out of range")
        return part


@dataclass(frozen=True)
class Calibration:
    """Each score part's calibration and the weights that combine them (see :meth:`combine`)."""

    recon: PartCalibration
    latent: PartCalibration
    neighbor_x: PartCalibration
    neighbor_h: PartCalibration
    latent_weight: float
    neighbor_weight: float

    @classmethod
    def fit(cls, recon_raw: np.ndarray, latent_raw: np.ndarray, *, latent_log: bool,
            latent_weight: float, neighbor_raw: tuple[np.ndarray, np.ndarray] | None = None,
            neighbor_weight: float = 0.0) -> "Calibration":
        """Calibrate on the raw parts of held-out normal rows, so that a typical normal row scores
        about 0, one unit is one robust standard deviation of normal rows, and the parts share
        one scale. ``latent_log``: the latent part is positive and skewed (-log D) rather than a
        log-density. ``neighbor_raw``: the distances in both neighbour spaces, or None for a
        model without the neighbour part (its weight is then 0)."""
        if neighbor_raw is None:
            unused = PartCalibration(log=True, offset=CALIBRATION_EPS)
            near_x = near_h = unused
            neighbor_weight = 0.0
        else:
            near_x, near_h = (PartCalibration.fit_distances(raw) for raw in neighbor_raw)
        return cls(PartCalibration.fit(recon_raw, True), PartCalibration.fit(latent_raw, latent_log),
                   near_x, near_h, float(latent_weight), float(neighbor_weight))

    @classmethod
    def identity(cls, latent_signal: str) -> "Calibration":
        """Calibration that leaves the (possibly logged) raw parts as they are."""
        logged = PartCalibration(log=True, offset=CALIBRATION_EPS)
        return cls(logged, replace(logged, log=latent_signal == "discriminator"), logged, logged,
                   latent_weight=0.5, neighbor_weight=1.0)

    def combine(self, recon, latent, neighbor):
        """``anomaly_score`` from the calibrated parts (numpy arrays or torch tensors alike):
        ``recon + latent_weight * clip(latent, 0, PART_CAP) + neighbor_weight * min(neighbor, PART_CAP)``.

        The latent part only adds evidence: a code more typical than usual (z < 0) does not make
        a row look more normal, as anomalies the encoder maps near the prior's centre would. Both
        it and the neighbour part saturate at ``PART_CAP`` (see there).
        """
        return (recon + self.latent_weight * latent.clip(0.0, PART_CAP)
                + self.neighbor_weight * neighbor.clip(None, PART_CAP))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        """Rebuild from ``to_dict``'s output; KeyError, TypeError or ValueError if malformed."""
        if not isinstance(data, dict):
            raise TypeError("calibration is not a table")
        weights = {k: float(data[k]) for k in ("latent_weight", "neighbor_weight")}
        if not all(0.0 <= w <= 10.0 for w in weights.values()):
            raise ValueError(f"calibration weights {weights} out of range")
        return cls(**{p: PartCalibration.from_dict(data[p]) for p in CALIBRATED_PARTS}, **weights)


def threshold_for_fpr(scores: np.ndarray, fpr: float) -> float:
    """The score above which a share ``fpr`` of these (normal) rows lie."""
    scores = np.asarray(scores, dtype=np.float64)
    return float(np.quantile(scores, 1.0 - fpr, method="higher"))


def check_no_score_columns(columns, source: str) -> None:
    clash = [c for c in SCORE_COLUMNS if c in set(columns)]
    if clash:
        raise DataError(f"{source}: already has a column {clash[0]!r}, which the scores would "
                        f"overwrite; rename or drop it (--exclude does not apply to output)")


def output_frame(df: pd.DataFrame, outputs: dict[str, np.ndarray], threshold: float) -> pd.DataFrame:
    """Every input column, in order and untouched, followed by the score columns."""
    # Scores stay float32, as the graph computes them: CSV then shows no spurious digits.
    anomaly = np.asarray(outputs["anomaly_score"])
    scores = pd.DataFrame({
        "anomaly_score": anomaly,
        "recon_score": np.asarray(outputs["recon_score"]),
        "latent_score": np.asarray(outputs["latent_score"]),
        "neighbor_score": np.asarray(outputs["neighbor_score"]),
        "is_anomaly": (anomaly > threshold).astype(np.int8),
    }, index=df.index)
    return pd.concat([df, scores], axis=1)


class FrameScorer:
    """Table in, table out, for any engine: subclasses give ``preprocessor``, ``threshold``,
    ``fitted_fpr`` and ``run_arrays`` (the scoring graph on the two input arrays)."""

    preprocessor: TabularPreprocessor
    threshold: float
    #: The false-positive rate on held-out normal rows that ``threshold`` was fitted for (the
    #: ``fpr`` option); None where unknown.
    fitted_fpr: float | None = None

    def run_arrays(self, numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def score_frame(self, df: pd.DataFrame, *, source: str = "data", first_line: int | None = 2,
                    report: InputReport | None = None) -> pd.DataFrame:
        """``df`` with ``anomaly_score, recon_score, latent_score, neighbor_score, is_anomaly`` appended.

        ``source`` and ``first_line`` serve error messages (file name, line of the first row);
        ``report`` collects warnings over several calls (see ``TabularPreprocessor.transform``).
        """
        check_no_score_columns(df.columns, source)
        numeric, categorical = self.preprocessor.transform(df, source=source, first_line=first_line,
                                                           report=report)
        return output_frame(df, self.run_arrays(numeric, categorical), self.threshold)
