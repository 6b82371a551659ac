"""Spark: score a Spark DataFrame on the cluster, and fit a model from a sample of one.

::

    from aaedetect import spark as aae_spark
    scored = aae_spark.score(df, "model")            # df's columns + the five score columns
    aae_spark.fit(df, "model", sample_rows=200_000)  # a seeded sample, trained on the driver

Scoring runs on the executors with ``mapInArrow`` over the same
:class:`~aaedetect.runtime.OnnxScorer` the CLI uses (onnxruntime, no torch), on the Arrow batches
Spark sends (no pandas conversion on the way). The model directory is checked on the driver first
(format, checksums, the graph loads), so a missing or damaged model fails there with the usual
one-line error before any task starts; its files then travel to the executors as one broadcast
variable (Spark's own mechanism; inside the task closure on Spark Connect, which has no broadcast),
and each Python worker verifies them again (the manifest's sha256 taken on the driver, every other
file's against the manifest) before it opens one onnxruntime session, reused for every batch and
task that worker runs.

Executors need aaedetect installed (``pip install aaedetect``: numpy, pandas, pyarrow, onnxruntime
are what scoring imports). pyspark comes with the ``aaedetect[spark]`` extra; nothing else in
aaedetect imports it.

This file is also a ``spark-submit`` job: ``spark-submit aaedetect/spark.py score DATA -m MODEL -o OUT``
(see ``--help``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from aaedetect.artifacts import MANIFEST, sha256_bytes
from aaedetect.config import DEVICES
from aaedetect.errors import AAEDetectError, DataError, ModelFormatError, OptionError
from aaedetect.scoring import EXPLAIN_COLUMNS, SCORE_COLUMNS, check_no_score_columns

if TYPE_CHECKING:  # pragma: no cover
    from aaedetect.preprocess import TabularPreprocessor

logger = logging.getLogger("aaedetect")

#: Spark SQL types of the score columns: those of the CLI's Parquet output (float32 and int8).
SCORE_TYPES = {"anomaly_score": "float", "recon_score": "float", "latent_score": "float",
               "neighbor_score": "float", "is_anomaly": "tinyint"}
#: Rows sampled to the driver by :func:`fit` unless told otherwise.
DEFAULT_SAMPLE_ROWS = 100_000

#: One scorer per model and Python worker: (manifest sha256, device, batch rows, threads) -> OnnxScorer.
_SCORERS: dict[tuple, Any] = {}


def model_files(model_dir: str | os.PathLike, *, explain: int = 0) -> tuple[dict[str, bytes], str,
                                                                           "TabularPreprocessor"]:
    """({file name: bytes} of a checked model directory, sha256 of its manifest, the model's
    preprocessor: the columns it reads), on the driver.

    Raises the usual :class:`~aaedetect.errors.ModelFormatError` (or ``PathError``) when the
    directory is missing, damaged or changed, and when onnxruntime cannot load its graph; and
    :class:`~aaedetect.errors.OptionError` when its graph cannot give ``explain`` columns.
    """
    from aaedetect.runtime import OnnxScorer

    # Everything the executors will check, checked here first.
    scorer = OnnxScorer(model_dir, device="cpu")
    scorer.check_explain(explain)
    model = scorer.model_dir  # its manifest and files, checked on the way in
    files = {name: model.read(name) for name in model.manifest["files"]}
    files[MANIFEST] = (model.path / MANIFEST).read_bytes()
    return files, sha256_bytes(files[MANIFEST]), scorer.preprocessor


def executor_scorer(files: dict[str, bytes], digest: str, *, device: str = "cpu",
                    batch_rows: int | None = None, threads: int | None = None):
    """The worker's scorer for the shipped model ``files``: built (and verified) once, then reused."""
    from aaedetect.runtime import OnnxScorer

    key = (digest, device, batch_rows, threads)
    scorer = _SCORERS.get(key)
    if scorer is not None:
        return scorer
    if sha256_bytes(files.get(MANIFEST, b"")) != digest:
        raise ModelFormatError(f"the model shipped to this executor is damaged: its {MANIFEST} does "
                               f"not match the driver's (sha256 {digest[:12]}...)")
    folder = Path(tempfile.mkdtemp(prefix="aaedetect-model-"))
    try:
        for name, data in files.items():
            if Path(name).name != name or name in ("", ".", ".."):
                raise ModelFormatError(f"the shipped model names a file outside its directory: {name!r}")
            (folder / name).write_bytes(data)
        # OnnxScorer checks every file against the manifest's sha256 and reads what it needs.
        scorer = OnnxScorer(folder, device=device, batch_rows=batch_rows, threads=threads)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _SCORERS[key] = scorer
    return scorer


def score(df, model_dir: str | os.PathLike, *, device: str = "cpu", batch_rows: int | None = None,
          threads: int | None = None, explain: int = 0):
    """``df`` with ``anomaly_score, recon_score, latent_score, neighbor_score`` (float) and
    ``is_anomaly`` (tinyint) appended, computed on the executors; ``explain=K`` adds
    ``top_columns`` and ``top_shares`` (string), as ``aaedetect score --explain K`` does.

    Lazy, as Spark DataFrames are: the scores are computed when the result is written or
    collected. The model's columns are found by name (others pass through untouched); numeric
    columns may be numbers or text holding numbers. ``device``: ``"cpu"`` (default: executors
    usually have no GPU), ``"cuda"`` or ``"auto"`` per executor. ``threads``: onnxruntime threads
    per Python worker (default: onnxruntime's choice; with several tasks per executor, the cores
    per task is a good value).
    """
    from pyspark.sql import types as T

    if device not in DEVICES:
        raise OptionError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    files, digest, pre = model_files(model_dir, explain=explain)
    pre.check_columns(df.columns, "Spark DataFrame")
    check_no_score_columns(df.columns, "Spark DataFrame", explain)
    schema = T.StructType(list(df.schema.fields) + [
        T.StructField(name, T.FloatType() if SCORE_TYPES[name] == "float" else T.ByteType(), False)
        for name in SCORE_COLUMNS] + [
        T.StructField(name, T.StringType(), False) for name in (EXPLAIN_COLUMNS if explain else ())])
    shipped = _ship(df, files)

    def score_batches(batches: Iterator) -> Iterator:
        scorer = executor_scorer(_unship(shipped), digest, device=device, batch_rows=batch_rows,
                                 threads=threads)
        for batch in batches:
            # Text comes back as pa.string() even where Spark sends large_string
            # (spark.sql.execution.arrow.useLargeVarTypes): Spark takes either.
            yield from scorer.score_arrow(batch, source="Spark partition", first_line=None,
                                          explain=explain).to_batches()

    return df.mapInArrow(score_batches, schema)


def _ship(df, files: dict[str, bytes]):
    """The model's files as a broadcast variable, or as they are where Spark has no broadcast
    (Spark Connect): they then travel inside the task closure."""
    try:
        context = df.sparkSession.sparkContext
    except Exception:  # Spark Connect: no SparkContext
        return ("inline", files)
    return ("broadcast", context.broadcast(files))


def _unship(shipped) -> dict[str, bytes]:
    kind, value = shipped
    return value.value if kind == "broadcast" else value


def sample(df, rows: int = DEFAULT_SAMPLE_ROWS, *, seed: int = 0):
    """A seeded uniform sample of at most ``rows`` rows of ``df`` as a pandas DataFrame.

    Each row gets a seeded random key and the ``rows`` smallest keys are kept (Spark computes the
    top of each partition and merges them; nothing else is collected). The same data in the same
    partitions and the same seed give the same sample.
    """
    from pyspark.sql import functions as F

    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 2:
        raise OptionError(f"sample rows {rows!r} must be an integer of at least 2")
    key = "__aaedetect_sample_key"
    while key in df.columns:
        key += "_"
    picked = df.withColumn(key, F.rand(seed)).orderBy(key).limit(rows).drop(key)
    return picked.toPandas()


def fit(df, model_dir: str | os.PathLike, *, sample_rows: int = DEFAULT_SAMPLE_ROWS, seed: int = 0,
        force: bool = False, **options):
    """Train on a seeded sample of ``df`` (at most ``sample_rows`` rows, collected to the driver,
    which trains) and write the model directory ``model_dir``. ``seed`` draws the sample and, unless
    ``options`` give ``random_state``, seeds training. ``options``: those of
    :class:`~aaedetect.AAEDetector`. Returns the fitted detector.

    The sample must fit in the driver's memory: 100,000 rows of 100 columns is about 80 MB as
    pandas. More rows than that rarely change a model whose reference rows and calibration use a
    few thousand.
    """
    from aaedetect.artifacts import check_model_target
    from aaedetect.detector import AAEDetector

    detector = AAEDetector(**{"random_state": seed, **options})
    check_model_target(model_dir, force)
    table = sample(df, sample_rows, seed=seed)
    if len(table) == 0:
        raise DataError("Spark DataFrame: has no rows")
    logger.info("training on a sample of %d rows of the Spark DataFrame (at most %d)", len(table),
                sample_rows)
    detector.fit(table, source="Spark DataFrame sample")
    detector.save(model_dir, force=force)
    return detector


# --------------------------------------------------------------------- spark-submit job
def read_table(spark, path: str):
    """A CSV (header, types inferred) or Parquet file or folder as a Spark DataFrame."""
    if path.endswith(".parquet") or (os.path.isdir(path) and any(Path(path).glob("*.parquet"))):
        return spark.read.parquet(path)
    return spark.read.csv(path, header=True, inferSchema=True, multiLine=False)


def main(argv: list[str] | None = None) -> int:
    """``spark-submit aaedetect/spark.py score DATA -m MODEL -o OUT`` or ``... fit DATA -o MODEL``."""
    parser = argparse.ArgumentParser(prog="spark-submit aaedetect/spark.py",
                                     description="aaedetect on Spark: score a table on the cluster, "
                                                 "or fit a model from a sample of one.")
    commands = parser.add_subparsers(dest="command", required=True)
    scoring = commands.add_parser("score", help="score DATA with MODEL, write OUT (a Parquet folder, "
                                                "or CSV with --csv)")
    scoring.add_argument("data")
    scoring.add_argument("-m", "--model", required=True)
    scoring.add_argument("-o", "--output", required=True)
    scoring.add_argument("--csv", action="store_true", help="write CSV part files instead of Parquet")
    scoring.add_argument("--force", action="store_true", help="replace OUT if it exists")
    scoring.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    scoring.add_argument("--explain", type=int, default=0, metavar="K",
                         help="add top_columns and top_shares: each row's K main columns")
    fitting = commands.add_parser("fit", help="train on a seeded sample of DATA, write MODEL")
    fitting.add_argument("data")
    fitting.add_argument("-o", "--output", required=True)
    fitting.add_argument("--sample-rows", type=int, default=DEFAULT_SAMPLE_ROWS)
    fitting.add_argument("--seed", type=int, default=0)
    fitting.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    from pyspark.sql import SparkSession

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    spark = SparkSession.builder.appName(f"aaedetect {args.command}").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    try:
        df = read_table(spark, args.data)
        if args.command == "fit":
            fit(df, args.output, sample_rows=args.sample_rows, seed=args.seed, force=args.force)
            print(f"model in {args.output}", file=sys.stderr)
            return 0
        scored = score(df, args.model, device=args.device, explain=args.explain)
        writer = scored.write.mode("overwrite" if args.force else "errorifexists")
        (writer.option("header", True).csv if args.csv else writer.parquet)(args.output)
        written = spark.read.parquet(args.output) if not args.csv else None
        if written is not None:
            flagged = written.filter("is_anomaly = 1").count()
            print(f"scored {written.count():,} rows: {flagged:,} flagged; written to {args.output}",
                  file=sys.stderr)
        else:
            print(f"scored; written to {args.output}", file=sys.stderr)
        return 0
    except AAEDetectError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    finally:
        spark.stop()


if __name__ == "__main__":
    # Run through the installed module, so that the functions Spark ships to the executors are
    # found there by name (functions of a __main__ script travel by value, each task with a fresh
    # copy of the per-worker scorer cache).
    from aaedetect import spark as _module

    sys.exit(_module.main())
