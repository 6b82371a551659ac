"""File-to-file jobs behind the CLI: fit a model from a table file, score a table file in chunks.

Usable from Python too, e.g. in an ETL step: ``score_file("in.csv", scorer, "out.parquet")``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from .arrays import is_flat, to_numpy
from .artifacts import check_model_target
from .config import DEFAULT_CHUNK_ROWS, Options
from .errors import DataError, SmallTableWarning
from .overlap import Prefetch, Writer
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
    AUROC, AUPRC, precision, recall and F1 (see :func:`evaluate`). ``explain=K``: also each row's
    K columns that contribute most to its score (``top_columns``, ``top_shares``).
    """
    started = time.perf_counter()
    summary = ScoreSummary()
    tally = _Tally()
    report = InputReport()
    with TableSource(data, sep=sep) as source, AtomicOutput(output) as out:
        if not isinstance(scorer, FrameScorer):
            scorer = scorer()
        scorer.check_explain(explain)
        summary.output = out.name
        columns = None
        # The last chunk is written while this one is scored.
        with Writer(out.write) as writer, contextlib.closing(
                _scored_chunks(source, scorer, chunk_rows, label, report, explain)) as chunks:
            for chunk, scored, labels in chunks:
                columns = chunk.column_names
                writer.put(scored)
                summary.rows += len(scored)
                summary.flagged += int(np.count_nonzero(to_numpy(scored.column("is_anomaly"), np.int8)))
                if labels is not None:
                    tally.add(labels, scored)
                if progress is not None:
                    progress(summary.rows)
            writer.finish()
        report.log(source.name)
        if summary.rows == 0:
            # Header only: still write a header, with the score columns, so pipelines see the schema.
            header = [*(columns if columns is not None else source.header), *SCORE_COLUMNS,
                      *(EXPLAIN_COLUMNS if explain else ())]
            out.write(pa.Table.from_arrays([pa.nulls(0) for _ in header], names=header))
    if label is not None:
        metrics = tally.metrics(scorer)
        _warn_one_class(metrics, source.name, label, "AUROC and AUPRC are")
        summary.metrics = _flat(metrics)
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class EvaluationSummary:
    """What :func:`evaluate_file` measured: ``metrics`` is :func:`aaedetect.metrics.label_metrics`'
    dict (rows, anomalies, normal, auroc, auprc, model_threshold, best_threshold)."""

    rows: int
    seconds: float
    metrics: dict[str, Any]


def evaluate_file(data: str | os.PathLike, scorer: FrameScorer | Callable[[], FrameScorer], label: str, *,
                  sep: str = ",", chunk_rows: int = DEFAULT_CHUNK_ROWS,
                  progress: Callable[[int], None] | None = None) -> EvaluationSummary:
    """Score the table at ``data`` chunk by chunk, as :func:`score_file` does but writing nothing,
    and measure the scores against its column ``label`` of true 0/1 labels (1 = anomaly).

    A file without rows is a :class:`DataError`; labels of one class only give None for AUROC,
    AUPRC and the best threshold, with a warning.
    """
    started = time.perf_counter()
    tally = _Tally()
    report = InputReport()
    with TableSource(data, sep=sep) as source:
        if not isinstance(scorer, FrameScorer):
            scorer = scorer()
        with contextlib.closing(_scored_chunks(source, scorer, chunk_rows, label, report)) as chunks:
            for _, scored, labels in chunks:
                tally.add(labels, scored)
                if progress is not None:
                    progress(tally.rows)
        report.log(source.name)
        if tally.rows == 0:
            raise DataError(f"{source.name}: has a header but no rows; nothing to evaluate")
    metrics = tally.metrics(scorer)
    _warn_one_class(metrics, source.name, label, "AUROC, AUPRC and the best threshold are")
    return EvaluationSummary(tally.rows, time.perf_counter() - started, metrics)


def _scored_chunks(source: TableSource, scorer: FrameScorer, chunk_rows: int, label: str | None,
                   report: InputReport, explain: int = 0
                   ) -> Iterator[tuple[pa.Table, pa.Table, np.ndarray | None]]:
    """(chunk, its scored table, its labels or None without ``label``) for each chunk of
    ``source``, as Arrow tables (no pandas on this path: it starts faster and copies less). The
    labels are checked before the chunk is scored."""
    rows = 0
    # The next chunk is read (pyarrow, without the GIL) while this one is scored.
    with Prefetch(source.chunks(chunk_rows=chunk_rows, arrow=True)) as chunks:
        for chunk, first_line in chunks:
            labels = None
            if label is not None:
                if label not in chunk.column_names:
                    raise DataError(f"{source.name}: no label column {label!r}")
                labels = _labels(chunk.column(label), source.name, label, first_line, rows)
            scored = scorer.score_arrow(chunk, source=source.name, first_line=first_line, report=report,
                                        explain=explain)
            rows += len(chunk)
            yield chunk, scored, labels


class _Tally:
    """Labels, scores and flags gathered over chunks."""

    def __init__(self):
        self.rows = 0
        self.labels, self.scores, self.flags = [np.zeros(0, np.int8)], [np.zeros(0)], [np.zeros(0, np.int8)]

    def add(self, labels: np.ndarray, scored: pa.Table) -> None:
        self.labels.append(labels)
        self.scores.append(to_numpy(scored.column("anomaly_score")))
        self.flags.append(to_numpy(scored.column("is_anomaly"), np.int8))
        self.rows += len(labels)

    def metrics(self, scorer: FrameScorer) -> dict[str, Any]:
        from .metrics import label_metrics

        return label_metrics(np.concatenate(self.labels), np.concatenate(self.scores), scorer.threshold,
                             is_anomaly=np.concatenate(self.flags), target_fpr=scorer.fitted_fpr)


def _warn_one_class(metrics: dict[str, Any], source: str, label: str, undefined: str) -> None:
    if metrics["rows"] and metrics["auroc"] is None:
        only = "1 (anomaly)" if metrics["anomalies"] else "0 (normal)"
        logger.warning("%s: label column %r holds only %s: %s undefined", source, label, only, undefined)


def _labels(column, source: str, column_name: str, first_line: int | None = None,
            rows_before: int = 0) -> np.ndarray:
    """The 0/1 labels of one chunk (an Arrow column or a pandas Series); a DataError naming the
    first other value and where it is (its file line, or for Parquet its row number counted over
    the whole file). Labels are numbers as ``pandas.to_numeric`` reads them ("1", "1.0", 1, True)."""
    if not isinstance(column, (pa.Array, pa.ChunkedArray)):
        return _labels_or_error(column, source, column_name, first_line, rows_before)
    if is_flat(column.type):
        with contextlib.suppress(pa.ArrowInvalid):  # the usual case: every label a number, 0 or 1
            numbers = to_numpy(column)
            if np.isin(numbers, (0.0, 1.0)).all():
                return numbers.astype(np.int8)
    # Anything else, or a bad label: pandas reads it as before and names the first bad value.
    return _labels_or_error(column.to_pandas(), source, column_name, first_line, rows_before)


def _labels_or_error(series, source: str, column: str, first_line: int | None, rows_before: int) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        where = f"line {first_line + i}" if first_line is not None else f"row {rows_before + i + 1}"
        raise DataError(f"{source}: label column {column!r} must hold 0 or 1; found "
                        f"{series.iloc[i]!r} ({where})")
    return values.to_numpy(dtype=np.int8)


def evaluate(y_true: np.ndarray, anomaly_score: np.ndarray, is_anomaly: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC of ``anomaly_score`` against 0/1 labels; precision, recall and F1 of the
    flags (``aaedetect score --label``'s summary): :func:`aaedetect.metrics.label_metrics`'
    numbers, without those that are undefined."""
    from .metrics import label_metrics

    # the threshold is only reported, not used: the flags are given
    return _flat(label_metrics(y_true, anomaly_score, np.nan, is_anomaly=is_anomaly))


def _flat(metrics: dict[str, Any]) -> dict[str, float]:
    at = metrics["model_threshold"]
    out = {"anomalies": metrics["anomalies"], "auroc": metrics["auroc"], "auprc": metrics["auprc"],
           "precision": at["precision"], "recall": at["recall"], "f1": at["f1"]}
    return {k: v for k, v in out.items() if v is not None}
