"""Score calibration, thresholds and the output table (numpy and pandas only, never torch).

Both engines (torch and onnxruntime) produce the graph's outputs; this module fits the calibration
that the graph applies and turns the outputs into the table users see.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError
from .preprocess import InputReport, TabularPreprocessor

SCORE_COLUMNS = ("anomaly_score", "recon_score", "latent_score", "neighbor_score", "is_anomaly")
#: Floor for a calibration scale (in log units): keeps a near-constant part from blowing up.
MIN_LOG_SCALE = 0.01
#: Smallest offset added before taking the log of a score part.
CALIBRATION_EPS = 1e-6
#: The offset is this share of the part's median on held-out normal rows.
LOG_OFFSET_SHARE = 0.1
#: Smallest offset for the neighbour distances (in standardized feature units): rows closer than
#: this are the same row, and rounding in the distance must not move the score (a table of a few
#: categories holds exact duplicates, whose median distance is 0).
NEIGHBOR_MIN_OFFSET = 1e-3


def robust_location_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and a robust standard deviation (IQR / 1.349), floored at ``MIN_LOG_SCALE``."""
    values = np.asarray(values, dtype=np.float64)
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q50), float(max((q75 - q25) / 1.349, MIN_LOG_SCALE))


def fit_calibration(recon_raw: np.ndarray, latent_raw: np.ndarray, *, latent_log: bool,
                    latent_weight: float, neighbor_raw: tuple[np.ndarray, np.ndarray] | None = None,
                    neighbor_weight: float = 0.0) -> dict:
    """Calibration of the score parts on held-out normal rows.

    Each part becomes a robust z-score, so that a typical normal row scores about 0, one unit is
    one robust standard deviation of normal rows, and the parts share one scale. Positive,
    skewed parts (reconstruction error, -log D, neighbour distances) are taken in log space first,
    where they are close to symmetric; a log-density already is. The log is of ``raw + offset``,
    with the offset a tenth of the part's median on normal rows: differences among near-perfect
    reconstructions are noise, and without it the log would magnify them (and float32 rounding
    with them). ``neighbor_raw``: the distances in both neighbour spaces, or None for a model
    without the neighbour part (its weight is then 0).
    """
    def part(raw: np.ndarray, log: bool, min_offset: float = CALIBRATION_EPS) -> dict:
        values = np.asarray(raw, dtype=np.float64)
        offset = 0.0
        if log:
            offset = max(LOG_OFFSET_SHARE * float(np.median(values)), min_offset)
            values = np.log(values + offset)
        center, scale = robust_location_scale(values)
        return {"center": center, "scale": scale, "log": log, "offset": offset}

    if neighbor_raw is None:
        unused = {"center": 0.0, "scale": 1.0, "log": True, "offset": CALIBRATION_EPS}
        neighbor = {"neighbor_x": dict(unused), "neighbor_h": dict(unused)}
        neighbor_weight = 0.0
    else:
        neighbor = {"neighbor_x": part(neighbor_raw[0], True, NEIGHBOR_MIN_OFFSET),
                    "neighbor_h": part(neighbor_raw[1], True, NEIGHBOR_MIN_OFFSET)}
    return {"recon": part(recon_raw, True), "latent": part(latent_raw, latent_log), **neighbor,
            "latent_weight": float(latent_weight), "neighbor_weight": float(neighbor_weight)}


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
    """Table in, table out, for any engine: subclasses give ``preprocessor``, ``threshold`` and
    ``run_arrays`` (the scoring graph on the two input arrays)."""

    preprocessor: TabularPreprocessor
    threshold: float

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
