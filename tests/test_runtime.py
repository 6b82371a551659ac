"""OnnxScorer: scoring with onnxruntime alone, provider choice, and no torch import."""

import logging
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from aaedetect import runtime
from aaedetect.errors import ModelFormatError, OptionError
from aaedetect.runtime import OnnxScorer
from aaedetect.scoring import SCORE_COLUMNS

SCORES = ["anomaly_score", "recon_score", "latent_score", "neighbor_score"]


def test_scores_match_the_torch_engine(model_dir, fitted, table):
    """Parity as the README defines it (aaedetect.export.parity_error within parity_tolerance),
    and the same flags but for rows within that tolerance of the threshold."""
    from aaedetect.export import parity_error, parity_tolerance

    onnx_out = OnnxScorer(model_dir, device="cpu").score_table(table)
    torch_out = fitted.score_table(table)
    pd.testing.assert_frame_equal(onnx_out[table.columns], torch_out[table.columns])
    tolerance = parity_tolerance(fitted.graph_)
    assert parity_error(torch_out, onnx_out, SCORES) <= tolerance
    anomaly = torch_out["anomaly_score"].to_numpy(np.float64)
    near = np.abs(anomaly - fitted.threshold_) <= tolerance * max(1.0, np.abs(anomaly).max())
    differ = onnx_out["is_anomaly"].to_numpy() != torch_out["is_anomaly"].to_numpy()
    assert not (differ & ~near).any()


def test_batches_write_into_one_buffer(model_dir, table):
    big = OnnxScorer(model_dir, device="cpu", batch_rows=65536).score_table(table)
    small = OnnxScorer(model_dir, device="cpu", batch_rows=7).score_table(table)
    # the same rows give the same scores whatever the batch; float32 kernels may sum in another
    # order for another batch shape, so the last bits may differ, and no more (the parity bound)
    from aaedetect import load
    from aaedetect.export import parity_error, parity_tolerance

    pd.testing.assert_frame_equal(big[table.columns], small[table.columns])
    assert parity_error(big, small, SCORES) <= parity_tolerance(load(model_dir).graph_)
    pd.testing.assert_series_equal(big["is_anomaly"], small["is_anomaly"])


def test_empty_table(model_dir, table):
    out = OnnxScorer(model_dir, device="cpu").score_table(table.head(0))
    assert len(out) == 0 and list(out.columns[-5:]) == ["anomaly_score", "recon_score", "latent_score", "neighbor_score", "is_anomaly"]


def test_auto_device_falls_back_to_cpu_and_says_why(model_dir, caplog):
    with caplog.at_level(logging.INFO, logger="aaedetect"):
        scorer = OnnxScorer(model_dir)
    assert scorer.provider == "CPUExecutionProvider"
    lines = [r.getMessage() for r in caplog.records if "onnxruntime" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("scoring with onnxruntime on CPU: ")


def test_cuda_that_fails_to_start_falls_back(model_dir, monkeypatch, caplog):
    """Driver 'found', but the CUDA provider cannot start: CPU, with the reason in one line."""
    monkeypatch.setattr(runtime, "cuda_unavailable_reason", lambda: None)
    real = runtime.make_session

    def session_without_cuda(model, providers, **kw):
        return real(model, [p for p in providers if p != runtime.CUDA], **kw)

    monkeypatch.setattr(runtime, "make_session", session_without_cuda)
    with caplog.at_level(logging.INFO, logger="aaedetect"):
        scorer = OnnxScorer(model_dir, device="auto")
    assert scorer.provider == "CPUExecutionProvider"
    assert "CUDA provider failed to start" in caplog.text
    with pytest.raises(OptionError, match="--device cuda: the CUDA provider failed to start"):
        OnnxScorer(model_dir, device="cuda")


def test_real_cuda_provider_on_this_machine(model_dir):
    """On a machine without a GPU, asking for CUDA is a clear error, not a silent CPU run."""
    reason = runtime.cuda_unavailable_reason()
    if reason is None:
        pytest.skip("this machine may have a working GPU")
    with pytest.raises(OptionError, match="--device cuda: "):
        OnnxScorer(model_dir, device="cuda")


def test_graphs_have_no_batch_norm_and_the_cuda_options_turn_tf32_off(model_dir):
    """The decoder's batch norm is folded into its linear layer (cuDNN's batch norm refuses 65,536
    rows or more), and TF32 is off so that CUDA scores match the CPU's."""
    data = (model_dir / "model.onnx").read_bytes()
    ops = runtime.verify_graph(data, "model.onnx")
    assert "BatchNormalization" not in ops and {"TopK", "MatMul"} <= ops
    assert runtime.CUDA_OPTIONS == {"use_tf32": "0"}


def test_older_graphs_with_batch_norm_cap_cuda_batches(caplog):
    """A graph written before the fold still scores on CUDA, at most 65,535 rows per call, with a
    warning naming 'aaedetect export'; other graphs and the CPU keep what was asked."""
    old = frozenset({"Gemm", "BatchNormalization"})
    with caplog.at_level(logging.WARNING, logger="aaedetect"):
        assert runtime.batch_rows_for(runtime.CUDA, 262_144, old, "m/model.onnx") == 65_535
    assert "m/model.onnx" in caplog.text and "aaedetect export" in caplog.text
    caplog.clear()
    assert runtime.batch_rows_for(runtime.CUDA, 65_535, old, "m") == 65_535
    assert runtime.batch_rows_for(runtime.CUDA, 262_144, frozenset({"Gemm"}), "m") == 262_144
    assert runtime.batch_rows_for(runtime.CPU, 262_144, old, "m") == 262_144
    assert runtime.batch_rows_for(runtime.CUDA, None, old, "m") == runtime.DEFAULT_BATCH_ROWS[runtime.CUDA]
    assert not caplog.records


def test_model_without_onnx(model_dir, tmp_path):
    import json
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]["model.onnx"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="aaedetect export"):
        OnnxScorer(copy)


def test_changed_onnx_file_is_refused(model_dir, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    with open(copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelFormatError, match="model.onnx: checksum mismatch"):
        OnnxScorer(copy)


NO_TORCH = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
"""


def run_python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)


def test_runtime_never_imports_torch(model_dir, csv_file):
    result = run_python(NO_TORCH + f"""
import pandas as pd
import aaedetect.runtime
from aaedetect.runtime import OnnxScorer
from aaedetect.scoring import SCORE_COLUMNS

SCORES = ["anomaly_score", "recon_score", "latent_score", "neighbor_score"]
out = OnnxScorer({str(model_dir)!r}).score_table(pd.read_csv({str(csv_file)!r}))
assert len(out) == 300
print("ok")
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_score_command_never_imports_torch(model_dir, csv_file, tmp_path):
    out = tmp_path / "out.csv"
    result = run_python(NO_TORCH + f"""
from aaedetect_cli.main import main
main(["score", {str(csv_file)!r}, "-m", {str(model_dir)!r}, "-o", {str(out)!r}, "--label", "code"])
""")
    # --label with a 1/2/3 column is a data error: checks that an error path is torch-free too.
    assert result.returncode == 3 and "must hold 0 or 1" in result.stderr, result.stderr
    result = run_python(NO_TORCH + f"""
import sys
from aaedetect_cli.main import main
try:
    main(["score", {str(csv_file)!r}, "-m", {str(model_dir)!r}, "-o", {str(out)!r}])
finally:
    assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
""")
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out)) == 300


def test_import_aaedetect_does_not_load_torch():
    result = run_python("""
import sys, aaedetect, aaedetect.runtime, aaedetect.pipeline, aaedetect.spark, aaedetect_cli.main
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pyspark")))
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_arrow_tables_score_like_their_dataframes(model_dir, table):
    """`aaedetect score` scores Arrow tables; the Python API, DataFrames: the same numbers."""
    import pyarrow as pa

    scorer = OnnxScorer(model_dir)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    from_arrow = scorer.score_arrow(arrow, explain=2)
    from_pandas = scorer.score_frame(table, explain=2)
    assert from_arrow.column_names == list(from_pandas.columns)
    assert from_arrow.column("anomaly_score").type == pa.float32()
    assert from_arrow.column("is_anomaly").type == pa.int8()
    for name in ("anomaly_score", "recon_score", "latent_score", "neighbor_score", "is_anomaly",
                 "top_columns", "top_shares"):
        assert from_arrow.column(name).to_pylist() == from_pandas[name].tolist(), name
    assert from_pandas["is_anomaly"].sum() > 0
    batch = arrow.to_batches()[0]
    assert scorer.score_arrow(batch, explain=2).equals(from_arrow.slice(0, batch.num_rows))


def test_score_command_never_imports_pandas(model_dir, table, tmp_path):
    """A small `aaedetect score` starts fast: its path (CSV in, scores and explanations out) does
    without pandas and the onnx package, the slowest of its imports. (``--label`` computes AUROC with scikit-learn,
    which imports pandas itself.)"""
    data, out = tmp_path / "in.csv", tmp_path / "out.csv"
    small = table.head(20)
    small.to_csv(data, index=False)
    result = run_python(f"""
import sys
from aaedetect_cli.main import main
try:
    main(["score", {str(data)!r}, "-m", {str(model_dir)!r}, "-o", {str(out)!r}, "--explain", "2"])
finally:
    assert "pandas" not in sys.modules, "pandas imported"
    assert "onnx" not in sys.modules, "onnx imported"  # only its protobuf classes (see below)
""")
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(out)
    expected = OnnxScorer(model_dir).score_table(pd.read_csv(data, dtype=str, keep_default_na=False), explain=2)
    np.testing.assert_array_equal(scored["anomaly_score"].to_numpy(np.float32),
                                  expected["anomaly_score"].to_numpy(np.float32))
    assert scored["top_columns"].tolist() == expected["top_columns"].tolist()


def test_parquet_columns_pass_through_with_their_types(model_dir, table, tmp_path):
    """Scoring Parquet keeps every input column's Arrow type (an integer column with nulls stays
    integer); a pandas index stored in the file is left out, as pandas would make it the index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aaedetect.pipeline import score_file

    arrow = pa.Table.from_pandas(table.set_axis(range(100, 400)), preserve_index=True)
    assert "__index_level_0__" in arrow.column_names
    arrow = arrow.append_column("count", pa.array([None, 1, 2] * 100, pa.int64()))
    data, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(arrow, data)
    score_file(data, OnnxScorer(model_dir), out, chunk_rows=64)
    scored = pq.read_table(out)
    assert scored.column_names == [*table.columns, "count", *SCORE_COLUMNS]
    assert scored.schema.field("count").type == pa.int64()
    assert scored.column("count").to_pylist() == arrow.column("count").to_pylist()
    assert scored.column("kind").to_pylist() == table["kind"].tolist()


def test_the_graph_check_loads_onnx_protobuf_classes_that_onnx_then_shares(model_dir):
    """verify_graph reads the graph with onnx's generated protobuf module alone; an `import onnx`
    later in the process (an export, a user's own code) finds that module and works as usual."""
    result = run_python(f"""
import sys
from aaedetect.runtime import OnnxScorer, _onnx_proto
OnnxScorer({str(model_dir)!r})
assert "onnx" not in sys.modules and "onnx.onnx_ml_pb2" in sys.modules
import onnx
from onnx import onnx_ml_pb2
model = onnx.load({str(model_dir / "model.onnx")!r})
assert type(model) is _onnx_proto().ModelProto is onnx.ModelProto and onnx_ml_pb2 is _onnx_proto()
onnx.checker.check_model(model)
print("ok")
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
