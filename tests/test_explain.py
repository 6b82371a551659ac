"""Explanations: which columns make a row's anomaly_score (``--explain K``, ``explain_table``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from aaedetect.errors import ModelFormatError, OptionError
from aaedetect.runtime import OnnxScorer
from aaedetect.scoring import Calibration, PartCalibration, column_shares, explanation_columns

from conftest import make_table


def test_feature_fold_maps_values_indicators_and_one_hot_slots_to_their_column(fitted):
    pre = fitted.preprocessor_
    fold = pre.feature_fold()
    assert fold.shape == (fitted.net_config_.n_inputs, len(pre.columns))
    assert (fold.sum(1) == 1).all()  # every encoded feature belongs to exactly one column
    owners = fold.argmax(1)
    n_num = len(pre.numeric)
    indicators = [j for j, c in enumerate(pre.numeric) if c.indicator]
    assert indicators  # column c has missing values in the fixture
    assert list(owners[:n_num]) == list(range(n_num))
    assert list(owners[n_num:n_num + len(indicators)]) == indicators
    widths = [c.width for c in pre.categorical]
    assert list(fold.sum(0)[n_num:]) == widths  # a categorical column owns its one-hot slots


def brute_force_neighbor_errors(graph, x: np.ndarray) -> np.ndarray:
    """Per-column squared differences to the k nearest bank rows (leaving out one exact match),
    averaged over them, by exhaustive float64 search."""
    nb = graph.neighbors
    bank = nb.x_bank.double().numpy()
    fold = nb.fold.numpy()
    out = np.empty((len(x), fold.shape[1]))
    for i, row in enumerate(x):
        squares = (bank - row) ** 2  # (M, D)
        order = np.argsort(squares.sum(1), kind="stable")
        first = 1 if squares[order[0]].sum() == 0 else 0
        out[i] = squares[order[first:first + nb.k]].mean(0) @ fold
    return out


def test_neighbor_errors_are_the_column_split_of_the_distance_to_the_nearest_rows(fitted, table):
    graph = fitted.graph_
    numeric, categorical = fitted.preprocessor_.transform(table)
    with torch.no_grad():
        x = graph.features(torch.from_numpy(numeric), torch.from_numpy(categorical)).double().numpy()
    got = fitted.run_arrays(numeric, categorical)["neighbor_errors"]
    expected = brute_force_neighbor_errors(graph, x)
    # float32 output of a float64 computation: one rounding, relative to the row's total
    np.testing.assert_allclose(got, expected, rtol=0, atol=4 * 2.0 ** -24 * expected.sum(1).max())


def test_onnx_and_torch_give_the_same_column_split(fitted, model_dir, table):
    numeric, categorical = fitted.preprocessor_.transform(table)
    a = fitted.run_arrays(numeric, categorical)
    b = OnnxScorer(model_dir, device="cpu").run_arrays(numeric, categorical)
    for name in ("feature_errors", "neighbor_errors"):
        scale = max(1.0, float(np.abs(a[name]).max()))
        assert np.abs(a[name] - b[name]).max() <= 1e-4 * scale, name


def test_explanations_agree_between_engines(fitted, model_dir, table):
    torch_out = fitted.score_table(table, explain=2)
    onnx_out = OnnxScorer(model_dir, device="cpu").score_table(table, explain=2)
    assert list(onnx_out.columns[-2:]) == ["top_columns", "top_shares"]
    same = (torch_out["top_columns"] == onnx_out["top_columns"]).mean()
    assert same >= 0.99  # rows whose two top shares are within rounding may swap


def _calibration(columns: int, recon=(), near=(), neighbor_weight=1.0) -> Calibration:
    part = PartCalibration()
    return Calibration(part, part, part, part, latent_weight=0.5, neighbor_weight=neighbor_weight,
                       column_recon=tuple(recon), column_neighbor=tuple(near))


def test_column_shares_count_each_column_above_its_typical_value():
    outputs = {
        "recon_score": np.array([3.0, 3.0]), "neighbor_score": np.array([0.0, 0.0]),
        # column 0 is always hard to reconstruct (typical 5): row 0 is normal there, row 1 not
        "feature_errors": np.array([[5.0, 0.1, 1.1], [9.0, 0.1, 0.1]]),
        "neighbor_errors": np.zeros((2, 3)),
    }
    shares = column_shares(outputs, _calibration(3, recon=(5.0, 0.1, 0.1)))
    np.testing.assert_allclose(shares.sum(1), 1.0)
    assert shares[0].argmax() == 2 and shares[0, 2] == pytest.approx(1.0)
    assert shares[1].argmax() == 0
    # without typical values (models written before explanations), raw errors are shared
    raw = column_shares(outputs, _calibration(3))
    assert raw[0].argmax() == 0


def test_column_shares_weigh_the_parts_by_what_they_add_to_the_score():
    outputs = {
        "feature_errors": np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]),
        "neighbor_errors": np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]),
        "recon_score": np.array([4.0, 0.0, -1.0]),
        "neighbor_score": np.array([0.0, 3.0, -2.0]),
    }
    shares = column_shares(outputs, _calibration(2, neighbor_weight=2.0))
    np.testing.assert_allclose(shares[0], [1.0, 0.0])  # only reconstruction adds
    np.testing.assert_allclose(shares[1], [0.0, 1.0])  # only the neighbour part adds
    np.testing.assert_allclose(shares[2], [0.5, 0.5])  # a typical row: both alike
    no_neighbors = column_shares(outputs, _calibration(2, neighbor_weight=0.0))
    np.testing.assert_allclose(no_neighbors, [[1.0, 0.0]] * 3)


def test_explanation_columns_text():
    shares = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    out = explanation_columns(shares, ["a", "b", "c"], 2)
    assert list(out["top_columns"]) == ["b;c", "a;b", "a;b"]  # ties: the model's column order
    assert list(out["top_shares"]) == ["0.70;0.20", "0.50;0.25", "0.33;0.33"]
    assert list(explanation_columns(shares, ["a", "b", "c"], 9)["top_columns"])[0] == "b;c;a"


@pytest.mark.parametrize("column, value", [("c", 1e4), ("a", -500.0), ("kind", "purple")])
def test_a_broken_column_is_named_first(fitted, model_dir, column, value):
    rows = make_table(60, seed=3)
    rows[column] = rows[column].astype(object)
    rows.loc[:19, column] = value
    out = OnnxScorer(model_dir, device="cpu").score_table(rows, explain=1)
    assert (out["top_columns"][:20] == column).mean() >= 0.9
    assert out["anomaly_score"][:20].min() > out["anomaly_score"][20:].median()


def test_explain_table_shares_sum_to_one_per_row(fitted, table):
    shares = fitted.explain_table(table)
    assert list(shares.columns) == fitted.preprocessor_.columns
    assert shares.index.equals(table.index)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-9)
    top = fitted.score_table(table, explain=1)["top_columns"]
    assert (shares.idxmax(axis=1) == top).mean() >= 0.99


def test_bad_explain_values_are_refused(fitted, table):
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(OptionError, match="explain"):
            fitted.score_table(table, explain=bad)


def test_explanation_columns_must_not_overwrite_input(fitted, table):
    from aaedetect.errors import DataError

    with pytest.raises(DataError, match="top_columns"):
        fitted.score_table(table.assign(top_columns="x"), explain=1)
    assert "top_columns" in fitted.score_table(table.assign(top_columns="x")).columns  # no explain: kept


def test_cli_explain_and_a_graph_from_before_explanations(model_dir, csv_file, tmp_path):
    import onnx
    from click.testing import CliRunner

    from aaedetect.artifacts import sha256_bytes
    from aaedetect_cli.main import main

    runner = CliRunner()
    out = tmp_path / "out.csv"
    result = runner.invoke(main, ["score", str(csv_file), "-m", str(model_dir), "-o", str(out), "--explain", "2", "-q"])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    assert list(scored.columns[-2:]) == ["top_columns", "top_shares"]
    assert scored["top_columns"].str.count(";").eq(1).all()
    shares = scored["top_shares"].str.split(";", expand=True).astype(float)
    assert (shares[0] >= shares[1]).all() and (shares.sum(axis=1) <= 1.0 + 1e-9).all()

    # A graph without neighbor_errors (as written before explanations) scores, but cannot explain.
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    graph = onnx.load(str(old / "model.onnx"))
    kept = [o for o in graph.graph.output if o.name != "neighbor_errors"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    data = graph.SerializeToString()
    (old / "model.onnx").write_bytes(data)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = {"sha256": sha256_bytes(data), "bytes": len(data)}
    (old / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(main, ["score", str(csv_file), "-m", str(old), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["score", str(csv_file), "-m", str(old), "-o", str(tmp_path / "x.csv"),
                                  "--explain", "1"])
    assert result.exit_code != 0 and "aaedetect export" in result.output
    assert not (tmp_path / "x.csv").exists()
    assert runner.invoke(main, ["export", "-m", str(old), "-q"]).exit_code == 0
    result = runner.invoke(main, ["score", str(csv_file), "-m", str(old), "-o", str(tmp_path / "x.csv"),
                                  "--explain", "1", "-q"])
    assert result.exit_code == 0, result.output


def test_malformed_typical_values_are_refused(model_dir, tmp_path):
    from aaedetect import load

    for edit, message in [(lambda c: c.update(column_recon=[1.0]), "columns"),
                          (lambda c: c.update(column_neighbor=[-1.0] * 5), "non-negative"),
                          (lambda c: c.update(column_recon="1,2"), "non-negative")]:
        copy = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        shutil.copytree(model_dir, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        edit(manifest["calibration"])
        (copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelFormatError, match=message):
            load(copy)
        with pytest.raises(ModelFormatError, match=message):
            OnnxScorer(copy, device="cpu")
