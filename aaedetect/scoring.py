"""Score calibration, thresholds and the output table (numpy, pyarrow and pandas, never torch).

Both engines (torch and onnxruntime) produce the graph's outputs; this module fits the calibration
that the graph applies (:class:`Calibration`, which also owns the formula that combines the
parts) and turns the outputs into the table users see.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa

from .arrays import from_numpy, strings
from .config import PART_CAP
from .errors import DataError, OptionError
from .preprocess import InputReport, TabularPreprocessor, column_names

if TYPE_CHECKING:  # imported where a DataFrame is made: scoring Arrow tables needs no pandas
    import pandas as pd

SCORE_COLUMNS = ("anomaly_score", "recon_score", "latent_score", "neighbor_score", "is_anomaly")
#: Added after the score columns with ``explain=K`` (``--explain K``).
EXPLAIN_COLUMNS = ("top_columns", "top_shares")
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
    """Each score part's calibration and the weights that combine them (see :meth:`combine`),
    and each column's typical share of the per-column parts (see :func:`column_shares`)."""

    recon: PartCalibration
    latent: PartCalibration
    neighbor_x: PartCalibration
    neighbor_h: PartCalibration
    latent_weight: float
    neighbor_weight: float
    #: Per model column, the median on held-out normal rows of its reconstruction error and of its
    #: squared difference to the nearest reference rows; empty in models written before
    #: explanations (their explanations then count every error from 0).
    column_recon: tuple[float, ...] = ()
    column_neighbor: tuple[float, ...] = ()

    @classmethod
    def fit(cls, recon_raw: np.ndarray, latent_raw: np.ndarray, *, latent_log: bool,
            latent_weight: float, neighbor_raw: tuple[np.ndarray, np.ndarray] | None = None,
            neighbor_weight: float = 0.0,
            column_raw: tuple[np.ndarray, np.ndarray] | None = None) -> "Calibration":
        """Calibrate on the raw parts of held-out normal rows, so that a typical normal row scores
        about 0, one unit is one robust standard deviation of normal rows, and the parts share
        one scale. ``latent_log``: the latent part is positive and skewed (-log D) rather than a
        log-density. ``neighbor_raw``: the distances in both neighbour spaces, or None for a
        model without the neighbour part (its weight is then 0). ``column_raw``: the graph's
        ``feature_errors`` and ``neighbor_errors`` (N, C) on those rows, for the explanations."""
        if neighbor_raw is None:
            unused = PartCalibration(log=True, offset=CALIBRATION_EPS)
            near_x = near_h = unused
            neighbor_weight = 0.0
        else:
            near_x, near_h = (PartCalibration.fit_distances(raw) for raw in neighbor_raw)
        columns = {}
        if column_raw is not None:
            columns = {name: tuple(float(v) for v in np.median(np.asarray(raw, np.float64), axis=0))
                       for name, raw in zip(("column_recon", "column_neighbor"), column_raw)}
        return cls(PartCalibration.fit(recon_raw, True), PartCalibration.fit(latent_raw, latent_log),
                   near_x, near_h, float(latent_weight), float(neighbor_weight), **columns)

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
        """Plain JSON types (lists, not tuples), as the manifest reads back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        """Rebuild from ``to_dict``'s output; KeyError, TypeError or ValueError if malformed."""
        if not isinstance(data, dict):
            raise TypeError("calibration is not a table")
        weights = {k: float(data[k]) for k in ("latent_weight", "neighbor_weight")}
        if not all(0.0 <= w <= 10.0 for w in weights.values()):
            raise ValueError(f"calibration weights {weights} out of range")
        columns = {}
        for key in ("column_recon", "column_neighbor"):
            values = data.get(key, [])
            if not isinstance(values, (list, tuple)) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                    for v in values):
                raise ValueError(f"calibration {key} is not a list of finite non-negative numbers")
            columns[key] = tuple(float(v) for v in values)
        return cls(**{p: PartCalibration.from_dict(data[p]) for p in CALIBRATED_PARTS}, **weights, **columns)

    def check_columns(self, n_columns: int) -> None:
        """ValueError unless the per-column medians are absent or one per model column."""
        for key in ("column_recon", "column_neighbor"):
            if len(getattr(self, key)) not in (0, n_columns):
                raise ValueError(f"calibration {key} has {len(getattr(self, key))} values for "
                                 f"{n_columns} columns")


def _excess_shares(raw: np.ndarray, typical: tuple[float, ...]) -> np.ndarray:
    """Each row's per-column values above the column's typical value (none when below), as shares
    of the row's total (N, C). A row with no excess anywhere is shared by its values themselves;
    a row of zeros equally."""
    raw = np.maximum(np.asarray(raw, np.float64), 0.0)
    excess = np.maximum(raw - np.asarray(typical, np.float64), 0.0) if len(typical) else raw
    values = np.where(excess.sum(1, keepdims=True) > 0, excess, raw)
    total = values.sum(1, keepdims=True)
    return np.where(total > 0, values / np.where(total > 0, total, 1.0), 1.0 / raw.shape[1])


def column_shares(outputs: dict[str, np.ndarray], calibration: Calibration) -> np.ndarray:
    """How much each model column contributes to each row's ``anomaly_score``: (N, C) shares that
    sum to 1 per row (the order of ``TabularPreprocessor.columns``).

    Two score parts carry per-column information: the reconstruction part (the sum of the
    columns' reconstruction errors, ``feature_errors``) and the neighbour part (the distance to
    the nearest normal rows, whose square is the sum of the columns' squared differences,
    ``neighbor_errors``). Within a part, a column's share is its value above what it typically
    is on normal rows (the medians in the calibration), so a column that is always hard to
    reconstruct does not top every explanation. The parts are then weighted by how much each
    adds to the row's score above a typical normal row (their positive terms in
    :meth:`Calibration.combine`); a row where neither adds anything weighs them equally. The
    latent part says how unusual the row's code is, but not which column made it so: it takes
    no share.
    """
    recon = np.asarray(outputs["recon_score"], np.float64)
    shares = _excess_shares(outputs["feature_errors"], calibration.column_recon)
    if calibration.neighbor_weight > 0:
        neighbor = np.asarray(outputs["neighbor_score"], np.float64)
        near = _excess_shares(outputs["neighbor_errors"], calibration.column_neighbor)
        w_recon = np.maximum(recon, 0.0)
        w_near = calibration.neighbor_weight * np.clip(neighbor, 0.0, PART_CAP)
        total = w_recon + w_near
        none = total <= 0
        w_recon, w_near, total = (np.where(none, 1.0, w_recon), np.where(none, 1.0, w_near),
                                  np.where(none, 2.0, total))
        shares = (w_recon[:, None] * shares + w_near[:, None] * near) / total[:, None]
    return shares


#: Shares as text in the explanation columns: two decimals, from a table (fast on millions of rows).
_SHARE_TEXT = np.array([f"{i / 100:.2f}" for i in range(101)], dtype=object)


def explanation_columns(shares: np.ndarray, names, k: int) -> dict[str, np.ndarray]:
    """``top_columns`` ("pressure_bar;site") and ``top_shares`` ("0.71;0.18"): each row's ``k``
    columns with the largest shares, largest first (ties: the model's column order)."""
    shares = np.asarray(shares, np.float64)
    k = max(1, min(int(k), shares.shape[1]))
    order = np.argsort(-shares, axis=1, kind="stable")[:, :k]  # (N, k)
    names = np.asarray(list(names), dtype=object)
    picked = np.take_along_axis(shares, order, axis=1)
    texts = _SHARE_TEXT[np.clip(np.rint(picked * 100), 0, 100).astype(np.int64)]
    top_columns, top_shares = names[order[:, 0]], texts[:, 0]
    for j in range(1, k):
        top_columns = top_columns + ";" + names[order[:, j]]
        top_shares = top_shares + ";" + texts[:, j]
    return {"top_columns": top_columns, "top_shares": top_shares}


def threshold_for_fpr(scores: np.ndarray, fpr: float) -> float:
    """The threshold that flags at most a share ``fpr`` of new normal rows, from the scores of
    held-out normal rows: the ``ceil((n + 1) * (1 - fpr))``-th smallest of the ``n`` scores.

    A new normal row is as likely to take any rank among the n held-out rows plus itself (split
    conformal prediction), so it lands above that score with probability at most ``fpr`` and at
    least ``fpr - 1 / (n + 1)``; the plain ``1 - fpr`` quantile of the held-out rows promises
    a little less than it keeps. With fewer than ``1 / fpr - 1`` rows there is no such rank:
    the largest score is taken, and a new normal row then lands above it with probability
    ``1 / (n + 1)`` (see :func:`threshold_shortfall`).
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(scores) + 1) * (1.0 - fpr))
    return float(scores[min(rank, len(scores)) - 1])


def threshold_shortfall(n_rows: int, fpr: float) -> float | None:
    """The false-positive rate to expect instead of ``fpr`` when the threshold comes from only
    ``n_rows`` held-out rows (``1 / (n_rows + 1)``), or None when ``n_rows`` is enough."""
    if math.ceil((n_rows + 1) * (1.0 - fpr)) <= n_rows:
        return None
    return 1.0 / (n_rows + 1)


def check_no_score_columns(columns, source: str, explain: int = 0) -> None:
    clash = [c for c in (*SCORE_COLUMNS, *(EXPLAIN_COLUMNS if explain else ())) if c in set(columns)]
    if clash:
        raise DataError(f"{source}: already has a column {clash[0]!r}, which the scores would "
                        f"overwrite; rename or drop it (--exclude does not apply to output)")


def score_columns(outputs: dict[str, np.ndarray], threshold: float,
                  explained: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The columns appended to a scored table, in order: :data:`SCORE_COLUMNS` (and the
    explanation columns, when given)."""
    # Scores stay float32, as the graph computes them: CSV then shows no spurious digits.
    anomaly = np.asarray(outputs["anomaly_score"])
    return {
        "anomaly_score": anomaly,
        "recon_score": np.asarray(outputs["recon_score"]),
        "latent_score": np.asarray(outputs["latent_score"]),
        "neighbor_score": np.asarray(outputs["neighbor_score"]),
        "is_anomaly": (anomaly > threshold).astype(np.int8),
        **(explained or {}),
    }


def output_frame(df: "pd.DataFrame", outputs: dict[str, np.ndarray], threshold: float,
                 explained: dict[str, np.ndarray] | None = None) -> "pd.DataFrame":
    """Every input column, in order and untouched, followed by the score columns (and the
    explanation columns, when given)."""
    import pandas as pd

    columns = score_columns(outputs, threshold, explained)
    for name in explained or {}:
        columns[name] = pd.array(columns[name], dtype="string")
    return pd.concat([df, pd.DataFrame(columns, index=df.index)], axis=1)


def output_table(table: pa.Table, outputs: dict[str, np.ndarray], threshold: float,
                 explained: dict[str, np.ndarray] | None = None) -> pa.Table:
    """:func:`output_frame` for an Arrow table: its columns untouched, then the score columns."""
    for name, values in score_columns(outputs, threshold, explained).items():
        table = table.append_column(name, strings(values) if name in (explained or {}) else from_numpy(values))
    return table


class FrameScorer:
    """Table in, table out, for any engine: subclasses give ``preprocessor``, ``threshold``,
    ``calibration``, ``fitted_fpr`` and ``run_arrays`` (the scoring graph on the two input arrays)."""

    preprocessor: TabularPreprocessor
    threshold: float
    calibration: Calibration
    #: The false-positive rate on held-out normal rows that ``threshold`` was fitted for (the
    #: ``fpr`` option); None where unknown.
    fitted_fpr: float | None = None

    def run_arrays(self, numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def check_explain(self, explain: int) -> None:
        """OptionError unless ``explain`` is 0 or a positive number of columns this model can give."""
        if isinstance(explain, bool) or not isinstance(explain, (int, np.integer)) or explain < 0:
            raise OptionError(f"explain={explain!r}: must be a whole number of columns, 0 for none")

    def score_frame(self, df: "pd.DataFrame", *, source: str = "data", first_line: int | None = 2,
                    report: InputReport | None = None, explain: int = 0) -> "pd.DataFrame":
        """``df`` with ``anomaly_score, recon_score, latent_score, neighbor_score, is_anomaly`` appended,
        and with ``explain=K`` also ``top_columns`` and ``top_shares``: the K model columns that
        contribute most to each row's anomaly_score, and their shares (see :func:`column_shares`).

        ``source`` and ``first_line`` serve error messages (file name, line of the first row);
        ``report`` collects warnings over several calls (see ``TabularPreprocessor.transform``).
        """
        return output_frame(df, *self._score(df, source, first_line, report, explain))

    def score_arrow(self, table: pa.Table | pa.RecordBatch, *, source: str = "data",
                    first_line: int | None = 2, report: InputReport | None = None,
                    explain: int = 0) -> pa.Table:
        """:meth:`score_frame` for an Arrow table or record batch (the same scores; pandas is not
        used): its columns untouched, then the score columns (float32, and ``is_anomaly`` int8)."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        return output_table(table, *self._score(table, source, first_line, report, explain))

    def _score(self, data, source, first_line, report, explain):
        """(graph outputs, threshold, explanation columns or None) for a DataFrame or Arrow table."""
        self.check_explain(explain)
        check_no_score_columns(column_names(data), source, explain)
        numeric, categorical = self.preprocessor.transform(data, source=source, first_line=first_line,
                                                           report=report)
        outputs = self.run_arrays(numeric, categorical)
        explained = None
        if explain:
            explained = explanation_columns(column_shares(outputs, self.calibration),
                                            self.preprocessor.columns, explain)
        return outputs, self.threshold, explained

    def explain_table(self, df: "pd.DataFrame", *, source: str = "data") -> "pd.DataFrame":
        """Each row's shares of its anomaly_score by model column (rows sum to 1; see
        :func:`column_shares`), as a table with ``df``'s index and the model's columns."""
        self.check_explain(1)
        numeric, categorical = self.preprocessor.transform(df, source=source, first_line=None)
        shares = column_shares(self.run_arrays(numeric, categorical), self.calibration)
        import pandas as pd

        return pd.DataFrame(shares, index=df.index, columns=self.preprocessor.columns)
