"""aaedetect.spark on a local-mode Spark session: the same scores as the CLI, the schema, the
model checked on the driver and on the executors, fitting from a sample, and the spark-submit job.

Skipped when pyspark is not installed, except under CI (``CI`` set), where it must run.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

if not os.environ.get("CI"):
    pytest.importorskip("pyspark")

from aaedetect import spark as aae_spark
from aaedetect.artifacts import MANIFEST
from aaedetect.errors import DataError, ModelFormatError
from aaedetect.scoring import SCORE_COLUMNS
from aaedetect_cli.main import main as cli
from conftest import FAST

SCORES = [c for c in SCORE_COLUMNS if c != "is_anomaly"]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[2]").appName("aaedetect-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.memory", "1g").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data_csv(table, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spark") / "data.csv"
    table.to_csv(path, index=False)
    return path


def test_scores_equal_the_clis_and_the_schema_is_the_inputs_plus_the_scores(spark, model_dir, data_csv,
                                                                           tmp_path):
    cli_out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(cli, ["score", str(data_csv), "-m", str(model_dir), "-o", str(cli_out), "-q"])
    assert result.exit_code == 0, result.output
    expected = pq.read_table(cli_out)

    df = aae_spark.read_table(spark, str(data_csv)).repartition(3)  # several tasks, several batches
    scored = aae_spark.score(df, model_dir)
    assert [f.name for f in scored.schema.fields] == df.columns + list(SCORE_COLUMNS)
    assert scored.schema.fields[:len(df.columns)] == df.schema.fields
    types = {f.name: f.dataType.simpleString() for f in scored.schema.fields}
    assert {c: types[c] for c in SCORE_COLUMNS} == aae_spark.SCORE_TYPES
    # ... the CLI's Parquet types: float32 scores, int8 flag
    assert {c: str(expected.schema.field(c).type) for c in SCORE_COLUMNS} == {
        **{c: "float" for c in SCORES}, "is_anomaly": "int8"}

    got = scored.toPandas().set_index("id").sort_index()
    want = expected.to_pandas().set_index("id").sort_index()
    assert len(got) == len(want) == len(df.toPandas())
    np.testing.assert_allclose(got[SCORES].to_numpy(np.float64), want[SCORES].to_numpy(np.float64),
                               rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["is_anomaly"].to_numpy(), want["is_anomaly"].to_numpy())

    # --explain: the same columns as the CLI's, as strings
    explained = aae_spark.score(df, model_dir, explain=2)
    assert [f.name for f in explained.schema.fields][-2:] == ["top_columns", "top_shares"]
    assert {f.dataType.simpleString() for f in explained.schema.fields[-2:]} == {"string"}
    result = CliRunner().invoke(cli, ["score", str(data_csv), "-m", str(model_dir), "-o", str(cli_out),
                                      "--explain", "2", "-q"])
    assert result.exit_code == 0, result.output
    got = explained.toPandas().set_index("id").sort_index()
    want = pq.read_table(cli_out).to_pandas().set_index("id").sort_index()
    assert (got["top_columns"] == want["top_columns"]).all()
    assert (got["top_shares"] == want["top_shares"]).all()


def test_a_damaged_model_fails_on_the_driver(spark, model_dir, tmp_path, table):
    df = spark.createDataFrame(table.head(5))
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    weights = damaged / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="weights.npz: checksum mismatch"):
        aae_spark.score(df, damaged)
    with pytest.raises(Exception, match="no such model directory"):
        aae_spark.score(df, tmp_path / "nowhere")
    with pytest.raises(DataError, match="missing column 'a' that the model needs"):
        aae_spark.score(df.drop("a"), model_dir)
    with pytest.raises(DataError, match="already has a column 'anomaly_score'"):
        aae_spark.score(df.withColumn("anomaly_score", df["c"]), model_dir)


def test_executors_verify_what_they_receive_and_keep_one_scorer(model_dir):
    files, digest, _ = aae_spark.model_files(model_dir)
    first = aae_spark.executor_scorer(files, digest)
    assert aae_spark.executor_scorer(files, digest) is first  # one session per worker, reused
    bent = dict(files)
    bent["model.onnx"] = files["model.onnx"][:-1] + bytes([files["model.onnx"][-1] ^ 1])
    with pytest.raises(ModelFormatError, match="model.onnx: checksum mismatch"):
        aae_spark.executor_scorer(bent, digest, threads=1)
    with pytest.raises(ModelFormatError, match="does not match the driver's"):
        aae_spark.executor_scorer({**files, MANIFEST: files[MANIFEST] + b" "}, digest, threads=2)
    with pytest.raises(ModelFormatError, match="outside its directory"):
        aae_spark.executor_scorer({**files, "../x": b""}, digest, threads=3)


def test_fit_from_a_seeded_sample(spark, table, tmp_path):
    df = spark.createDataFrame(table).repartition(2)
    first, again = aae_spark.sample(df, 120, seed=4), aae_spark.sample(df, 120, seed=4)
    assert len(first) == 120 and list(first.columns) == list(table.columns)
    pd.testing.assert_frame_equal(first, again)
    assert not first["id"].equals(aae_spark.sample(df, 120, seed=5)["id"])
    det = aae_spark.fit(df, tmp_path / "m", sample_rows=120, seed=4, **FAST)
    assert det.n_rows_["train"] + det.n_rows_["validation"] == 120
    assert (tmp_path / "m" / MANIFEST).exists()
    scored = aae_spark.score(df, tmp_path / "m").toPandas()
    assert scored["anomaly_score"].notna().all() and len(scored) == len(table)


def test_spark_submit_job(model_dir, data_csv, tmp_path):
    submit = Path(sys.executable).parent / "spark-submit"
    if not submit.exists():
        pytest.skip("no spark-submit beside this Python")
    out = tmp_path / "scored"
    job = Path(aae_spark.__file__)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    run = subprocess.run([str(submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
                          str(job), "score", str(data_csv), "-m", str(model_dir), "-o", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    said = run.stdout + run.stderr  # spark-submit passes the Python driver's stderr on as its stdout
    assert "scored 300 rows" in said, said[-3000:]
    written = pq.read_table(out).to_pandas()
    assert list(written.columns[-5:]) == list(SCORE_COLUMNS) and len(written) == 300
