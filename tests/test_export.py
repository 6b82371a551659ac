"""The ONNX graph: structure, checker, and parity with the torch model."""

from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from aaedetect import AAEDetector
from aaedetect.export import parity_error, parity_tolerance, probe_rows, torch_outputs
from aaedetect.runtime import make_session, run_session
from conftest import DEMO, FAST, SHARED_DATA, needs_shared_data


def onnx_outputs(data, numeric, categorical):
    return run_session(make_session(data, ["CPUExecutionProvider"]), numeric, categorical, batch_rows=100)


def test_graph_contract(model_dir, fitted):
    model = onnx.load(str(model_dir / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    inputs = {i.name: i for i in model.graph.input}
    outputs = {o.name: o for o in model.graph.output}
    assert list(inputs) == ["numeric", "categorical"]
    assert list(outputs) == ["anomaly_score", "recon_score", "latent_score", "neighbor_score", "feature_errors",
                             "neighbor_errors"]
    elem = onnx.TensorProto
    assert inputs["numeric"].type.tensor_type.elem_type == elem.DOUBLE
    assert inputs["categorical"].type.tensor_type.elem_type == elem.INT64
    assert all(o.type.tensor_type.elem_type == elem.FLOAT for o in outputs.values())
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(inputs["numeric"]) == ["batch", 4] and dims(inputs["categorical"]) == ["batch", 1]
    assert dims(outputs["feature_errors"])[1] == 5 and dims(outputs["neighbor_errors"])[1] == 5
    assert [d.dim_param for d in outputs["anomaly_score"].type.tensor_type.shape.dim] == ["batch"]


def test_manifest_describes_the_graph(model_dir):
    import json

    from aaedetect import load

    entry = json.loads((model_dir / "manifest.json").read_text())["onnx"]
    assert entry["file"] == "model.onnx" and entry["inputs"] == ["numeric", "categorical"]
    assert entry["parity_error"] <= parity_tolerance(load(model_dir).graph_)


@pytest.mark.parametrize("batch", [1, 7, 300])
def test_parity_on_the_fixture_any_batch_size(fitted, model_dir, table, batch):
    numeric, categorical = fitted.preprocessor_.transform(table)
    data = (model_dir / "model.onnx").read_bytes()
    got = run_session(make_session(data, ["CPUExecutionProvider"]), numeric, categorical, batch_rows=batch)
    assert parity_error(torch_outputs(fitted.graph_, numeric, categorical), got) <= parity_tolerance(fitted.graph_)


def test_extreme_and_missing_inputs_stay_finite_and_agree(fitted, model_dir):
    numeric, categorical = probe_rows(fitted.preprocessor_)
    got = onnx_outputs((model_dir / "model.onnx").read_bytes(), numeric, categorical)
    assert all(np.isfinite(v).all() for v in got.values())
    assert parity_error(torch_outputs(fitted.graph_, numeric, categorical), got) <= parity_tolerance(fitted.graph_)


def test_parity_error_catches_nan_and_shape():
    a = {k: np.ones(3, np.float32) for k in ("anomaly_score", "recon_score", "latent_score", "neighbor_score",
                                             "feature_errors", "neighbor_errors")}
    b = {**a, "recon_score": np.array([1, np.nan, 1], np.float32)}
    assert parity_error(a, b) == float("inf")
    assert parity_error(a, {**a, "feature_errors": np.ones(4, np.float32)}) == float("inf")
    assert parity_error(a, {**a, "anomaly_score": np.array([1, 1, 1.5], np.float32)}) == pytest.approx(0.5)


@pytest.mark.parametrize("columns", [["a", "b", "c"], ["kind"]])
def test_models_with_one_kind_of_column(table, columns):
    det = AAEDetector(**FAST).fit(table[columns])
    data = det.export_onnx()[0]
    session = make_session(data, ["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == (["numeric"] if "a" in columns else ["categorical"])
    numeric, categorical = det.preprocessor_.transform(table[columns])
    assert parity_error(torch_outputs(det.graph_, numeric, categorical),
                        run_session(session, numeric, categorical)) <= parity_tolerance(det.graph_)


@pytest.mark.parametrize("options", [dict(prior="mixture:3"), dict(prior="uniform", latent_signal="discriminator"),
                                     dict(neighbor_weight=0.0), dict(neighbor_rows=3)])
def test_parity_for_every_prior_and_latent_signal_and_neighbour_setting(table, options):
    det = AAEDetector(**FAST, **options).fit(table)
    numeric, categorical = probe_rows(det.preprocessor_)
    for opset in (17, 18):
        got = onnx_outputs(det.export_onnx(opset=opset)[0], numeric, categorical)
        assert parity_error(torch_outputs(det.graph_, numeric, categorical), got) <= parity_tolerance(det.graph_)
    assert (got["neighbor_score"] == 0).all() == (options.get("neighbor_weight") == 0.0)


def test_demo_parity():
    train = pd.read_csv(DEMO / "telemetry_train.csv")
    test = pd.read_csv(DEMO / "telemetry_test.csv")
    det = AAEDetector(max_epochs=10, random_state=0).fit(train)
    numeric, categorical = det.preprocessor_.transform(test)
    got = onnx_outputs(det.export_onnx()[0], numeric, categorical)
    assert parity_error(torch_outputs(det.graph_, numeric, categorical), got) <= parity_tolerance(det.graph_)


@needs_shared_data
@pytest.mark.parametrize("name", ["cardio", "satellite"])
def test_shared_dataset_parity(name):
    df = pd.read_csv(Path(SHARED_DATA) / f"{name}.csv.gz")
    X = df.drop(columns="label")
    det = AAEDetector(max_epochs=10, random_state=0).fit(X[df["label"] == 0])
    numeric, categorical = det.preprocessor_.transform(X)
    got = onnx_outputs(det.export_onnx()[0], numeric, categorical)
    assert parity_error(torch_outputs(det.graph_, numeric, categorical), got) <= parity_tolerance(det.graph_)


def test_cli_export(model_dir, tmp_path):
    import shutil

    from click.testing import CliRunner
    from aaedetect import load
    from aaedetect_cli.main import main

    out = tmp_path / "graph.onnx"
    result = CliRunner().invoke(main, ["export", "-m", str(model_dir), "-o", str(out), "--opset", "18"])
    assert result.exit_code == 0, result.stderr
    onnx.checker.check_model(onnx.load(str(out)))
    # Re-exporting repairs a missing or damaged graph; the manifest's checksums follow.
    for damage in ("delete", "truncate"):
        copy = tmp_path / damage
        shutil.copytree(model_dir, copy)
        if damage == "delete":
            (copy / "model.onnx").unlink()
        else:
            (copy / "model.onnx").write_bytes(b"oops")
        result = CliRunner().invoke(main, ["export", "-m", str(copy)])
        assert result.exit_code == 0, result.stderr
        load(copy)
        assert (copy / "model.onnx").read_bytes() == (model_dir / "model.onnx").read_bytes()


def test_export_without_torch_writes_the_same_graph(model_dir, tmp_path):
    """The graph is built from the weights with onnx alone: with torch missing, export writes the
    same bytes (and says it could not compare them with torch)."""
    import subprocess
    import sys

    out = tmp_path / "no-torch.onnx"
    code = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from aaedetect_cli.main import main
main(["export", "-m", {str(model_dir)!r}, "-o", {str(out)!r}])
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "not compared with torch" in run.stderr
    assert out.read_bytes() == (model_dir / "model.onnx").read_bytes()
