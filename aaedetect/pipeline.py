"""File-to-file jobs behind the CLI: fit a model from a table file, score a table file in chunks.

Usable from Python too, e.g. in an ETL step: ``score_file("in.csv", scorer, "out.parquet")``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from .artifacts import check_model_target
from .config import DEFAULT_CHUNK_ROWS, Options
from .errors import DataError, SmallTableWarning
from .tables import AtomicOutput, TableSource
from .preprocess import InputReport
from .scoring import EXPLAIN_COLUMNS, SCORE_COLUMNS, FrameScorer

logger = logging.getLogger("aaedetect")


@dataclass
class FitSummary:
    rows: int
    model_dir: str
    seconds: float
    manifest: dict[str, Any]


def fit_file(data: str | os.PathLike, model_dir: str | os.PathLike, options: dict[str, Any], *,
             force: bool = False, sep: str = ",", max_rows: int | None = None,
             progress: Callable[[int, int, dict], None] | None = None) -> FitSummary:
    """Train on the table at ``data`` and write the model directory ``model_dir`` atomically.

    ``max_rows``: train on a seeded uniform sample of at most this many rows (the seed is
    ``options["random_state"]``, default 0), read in chunks, so that a file of any size fits.
    """
    from .detector import AAEDetector  # torch: only when training

    started = time.perf_counter()
    detector = AAEDetector(**options)
    Options(**options)  # fail on a bad option before reading any data
    check_model_target(model_dir, force)  # ... and on an unwritable target before training
    with TableSource(data, sep=sep) as source:
        name, first_line = source.name, 2
        if max_rows is None:
            df = source.read()
        else:
            seed = options.get("random_state")
            df, total = source.sample(max_rows, seed=0 if seed is None else seed)
            if total > len(df):
                logger.info("%s: training on a uniform sample of %s of its %s rows (--max-rows, "
                            "seed %s)", source.name, f"{len(df):,}", f"{total:,}", seed or 0)
                name, first_line = f"{source.name} (sampled rows)", None
            df = df.reset_index(drop=True)
        if len(df) == 0:
            raise DataError(f"{source.name}: has a header but no rows")
        with warnings.catch_warnings():  # restores the filters and showwarning on the way out
            warnings.simplefilter("always", SmallTableWarning)
            warnings.showwarning = _log_our_warnings(warnings.showwarning)
            detector.fit(df, progress=progress, source=name, first_line=first_line)
    detector.save(model_dir, force=force)
    return FitSummary(len(df), str(model_dir), time.perf_counter() - started, detector.manifest())


def _export_without_torch(model_dir, opset: int | None) -> tuple[bytes, dict[str, Any]]:
    """The graph built from the weights with onnx alone; without torch there is no torch model
    to compare it with (``parity_error`` is None in its manifest entry)."""
    from .artifacts import MANIFEST, WEIGHTS, ModelDir, read_arrays
    from .config import DEFAULT_OPSET
    from .manifest import FittedState
    from .onnx_graph import build, manifest_entry
    from .runtime import ONNX_FILE

    model = ModelDir(model_dir, ignore=(ONNX_FILE,))
    state = FittedState.from_manifest(model.manifest, str(model.path / MANIFEST))
    opset = opset or DEFAULT_OPSET
    data = build(state, read_arrays(model.read(WEIGHTS), model.path / WEIGHTS), opset=opset)
    logger.warning("torch is not installed: the graph was built from the weights but not compared "
                   "with the torch model")
    return data, manifest_entry(state.preprocessor, opset, None)


def _log_our_warnings(show):
    """A ``warnings.showwarning`` that logs aaedetect's own warnings (the CLI prints them as
    ``warning:`` lines, at once) and passes every other warning to ``show``."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SmallTableWarning):
            logger.warning("%s", message)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def export_file(model_dir: str | os.PathLike, output: str | os.PathLike | None = None, *,
                opset: int | None = None) -> tuple[str, dict[str, Any]]:
    """Re-export ``model_dir``'s scoring graph from its weights.

    To ``output`` if given (written atomically), else as the model directory's own ``model.onnx``
    (the directory is rewritten atomically, with the manifest's checksums updated).
    Returns (path written, the ONNX manifest entry).
    """
    from .artifacts import ModelDir, write_model_dir
    from .runtime import ONNX_FILE

    # The graph being replaced may be missing or damaged: export is also how to repair it.
    try:
        import torch  # noqa: F401
    except ImportError:
        data, entry = _export_without_torch(model_dir, opset)
    else:
        from .detector import AAEDetector

        detector = AAEDetector.load(model_dir, device="cpu", ignore=(ONNX_FILE,))
        data, entry = detector.export_onnx(opset=opset)
    if output is not None:
        with AtomicOutput(output) as out:
            out.write_bytes(data)
        return str(output), entry
    current = ModelDir(model_dir, ignore=(ONNX_FILE,))
    files = {name: current.read(name) for name in current.manifest["files"] if name != ONNX_FILE}
    files[ONNX_FILE] = data
    manifest = {k: v for k, v in current.manifest.items() if k != "files"}
    manifest["onnx"] = entry
    write_model_dir(model_dir, manifest, files, force=True)
    return str(current.path / ONNX_FILE), entry


@dataclass
class ScoreSummary:
    rows: int = 0
    flagged: int = 0
    output: str = ""
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


def score_file(data: str | os.PathLike, scorer: FrameScorer | Callable[[], FrameScorer],
               output: str | os.PathLike = "-", *, sep: str = ",", chunk_rows: int = DEFAULT_CHUNK_ROWS,
               label: str | None = None, progress: Callable[[int], None] | None = None,
               explain: int = 0) -> ScoreSummary:
    """Score the table at ``data`` chunk by chunk into ``output`` (CSV, or Parquet by extension).

    ``scorer``: a scorer, or a function that makes one (called once input and output are known
    to be usable, so that a bad path fails before a model is loaded). The output appears only when
    every row has been scored. ``label``: a column of true 0/1 labels; the summary then holds
    AUROC, AUPRC, precision and recall. ``explain=K``: also each row's K columns that contribute
    most to its score (``top_columns``, ``top_shares``).
    """
    started = time.perf_counter()
    summary = ScoreSummary()
    labels: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    report = InputReport()
    with TableSource(data, sep=sep) as source, AtomicOutput(output) as out:
        if not isinstance(scorer, FrameScorer):
            scorer = scorer()
        scorer.check_explain(explain)
        summary.output = out.name
        columns = None
        for chunk, first_line in source.chunks(chunk_rows=chunk_rows):
            columns = chunk.columns
            if label is not None and label not in chunk.columns:
                raise DataError(f"{source.name}: no label column {label!r}")
            scored = scorer.score_frame(chunk, source=source.name, first_line=first_line, report=report,
                                        explain=explain)
            out.write(scored)
            summary.rows += len(scored)
            summary.flagged += int(scored["is_anomaly"].sum())
            if label is not None:
                labels.append(_labels(chunk[label], source.name, label))
                scores.append(scored["anomaly_score"].to_numpy())
                flags.append(scored["is_anomaly"].to_numpy())
            if progress is not None:
                progress(summary.rows)
        report.log(source.name)
        if summary.rows == 0:
            # Header only: still write a header, with the score columns, so pipelines see the schema.
            header = list(columns if columns is not None else source.header)
            out.write(pd.DataFrame(columns=[*header, *SCORE_COLUMNS, *(EXPLAIN_COLUMNS if explain else ())]))
    if labels:
        summary.metrics = evaluate(np.concatenate(labels), np.concatenate(scores), np.concatenate(flags))
    summary.seconds = time.perf_counter() - started
    return summary


def _labels(series: pd.Series, source: str, column: str) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: label column {column!r} must hold 0 or 1; found "
                        f"{series.iloc[i]!r}")
    return values.to_numpy(dtype=np.int8)


def evaluate(y_true: np.ndarray, anomaly_score: np.ndarray, is_anomaly: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC of ``anomaly_score`` against 0/1 labels; precision and recall of the flags."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    true_pos = int((y_true.astype(bool) & is_anomaly.astype(bool)).sum())
    out: dict[str, float] = {"anomalies": int(y_true.sum())}
    if 0 < y_true.sum() < len(y_true):
        out["auroc"] = float(roc_auc_score(y_true, anomaly_score))
        out["auprc"] = float(average_precision_score(y_true, anomaly_score))
    if is_anomaly.sum():
        out["precision"] = true_pos / int(is_anomaly.sum())
    if y_true.sum():
        out["recall"] = true_pos / int(y_true.sum())
    return out
