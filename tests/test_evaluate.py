"""``aaedetect evaluate`` and the metrics it shares with ``aaedetect score --label``: checked
against scikit-learn's metrics on the scores ``aaedetect score`` writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score, precision_score,
                             recall_score, roc_auc_score)

from aaedetect.metrics import label_metrics
from aaedetect_cli.main import main
from conftest import make_table


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_error(result, code, *fragments):
    """One `error:` line on stderr naming what is wrong, the class's exit code, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr
    assert all(fragment in lines[-1] for fragment in fragments), (fragments, lines[-1])
    assert "Traceback" not in result.stderr and result.stdout == ""


def labelled_table(n: int = 200) -> pd.DataFrame:
    """Rows like the training table's, every 8th made unusual and labelled 1."""
    df = make_table(n, seed=5)
    df["label"] = (np.arange(n) % 8 == 0).astype(int)
    odd = df["label"] == 1
    df.loc[odd, "b"] = df.loc[odd, "b"] + np.linspace(-12, 12, int(odd.sum()))
    return df


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = tmp_path_factory.mktemp("evaluate") / "labelled.csv"
    labelled_table().to_csv(path, index=False)
    return path


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_json_agrees_with_scikit_learn_on_the_scores_score_writes(model_dir, labelled, tmp_path, engine):
    scored = tmp_path / "scored.parquet"  # Parquet keeps the float32 scores exactly
    assert run("score", labelled, "-m", model_dir, "-o", scored, "--engine", engine).exit_code == 0
    out = pd.read_parquet(scored)  # input columns pass through as the CSV's text
    y, s, flags = out["label"].astype(int).to_numpy(), out["anomaly_score"].to_numpy(np.float64), out["is_anomaly"].to_numpy()
    manifest = json.loads((model_dir / "manifest.json").read_text())

    result = run("evaluate", labelled, "-m", model_dir, "--label", "label", "--json", "--engine", engine,
                 "--chunk-rows", 64)
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)
    assert (r["data"], r["label"], r["rows"], r["anomalies"], r["normal"]) == (
        str(labelled), "label", len(y), int(y.sum()), int((y == 0).sum()))
    assert r["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert r["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)

    at = r["model_threshold"]
    assert at["threshold"] == manifest["threshold"] and at["target_fpr"] == manifest["options"]["fpr"]
    assert (flags == (s > manifest["threshold"])).all()
    tn, fp, fn, tp = confusion_matrix(y, flags).ravel()
    assert (at["tn"], at["fp"], at["fn"], at["tp"], at["flagged"]) == (tn, fp, fn, tp, flags.sum())
    assert at["precision"] == pytest.approx(precision_score(y, flags))
    assert at["recall"] == pytest.approx(recall_score(y, flags))
    assert at["f1"] == pytest.approx(f1_score(y, flags))
    assert at["fpr"] == pytest.approx(fp / (fp + tn))

    best = r["best_threshold"]
    best_flags = s >= best["threshold"]
    every_f1 = [f1_score(y, s >= t) for t in np.unique(s)]  # every threshold that changes the flags
    assert best["f1"] == pytest.approx(max(every_f1)) == pytest.approx(f1_score(y, best_flags))
    assert best["f1"] >= at["f1"] - 1e-12
    tn, fp, fn, tp = confusion_matrix(y, best_flags).ravel()
    assert (best["tn"], best["fp"], best["fn"], best["tp"]) == (tn, fp, fn, tp)
    assert best["precision"] == pytest.approx(precision_score(y, best_flags))
    assert best["recall"] == pytest.approx(recall_score(y, best_flags))
    assert best["fpr"] == pytest.approx(fp / (fp + tn))
    assert set(best) == set(at) - {"target_fpr"}


def test_score_label_reports_the_same_numbers(model_dir, labelled, tmp_path):
    r = json.loads(run("evaluate", labelled, "-m", model_dir, "--label", "label", "--json").stdout)
    result = run("score", labelled, "-m", model_dir, "-o", tmp_path / "o.csv", "--label", "label")
    assert result.exit_code == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("against column 'label': "))
    parts = dict(p.split(" ") for p in line.split(": ", 1)[1].split(", "))
    at = r["model_threshold"]
    assert int(parts["anomalies"]) == r["anomalies"]
    for key, value in (("auroc", r["auroc"]), ("auprc", r["auprc"]), ("precision", at["precision"]),
                       ("recall", at["recall"]), ("f1", at["f1"])):
        assert float(parts[key]) == pytest.approx(value, abs=5e-4), key


def test_text_report(model_dir, labelled):
    result = run("evaluate", labelled, "-m", model_dir, "--label", "label")
    assert result.exit_code == 0, result.stderr
    r = json.loads(run("evaluate", labelled, "-m", model_dir, "--label", "label", "--json").stdout)
    lines = result.stdout.splitlines()
    assert lines[0] == (f"evaluated 200 rows of {labelled} against column 'label': 25 anomalies (12.5%), "
                        f"175 normal")
    assert lines[1] == f"AUROC  {r['auroc']:.4f}" and lines[2] == f"AUPRC  {r['auprc']:.4f}"
    assert lines[3].split() == ["threshold", "precision", "recall", "F1", "FPR", "TN", "FP", "FN", "TP"]
    for line, key in ((lines[4], "model_threshold"), (lines[5], "best_threshold")):
        at = r[key]
        cells = line.split()[2:]
        assert [float(c) for c in cells[:5]] == pytest.approx(
            [at["threshold"], at["precision"], at["recall"], at["f1"], at["fpr"]], abs=5e-4)
        assert [int(c) for c in cells[5:]] == [at["tn"], at["fp"], at["fn"], at["tp"]]
    assert lines[4].startswith("model threshold ") and lines[5].startswith("best F1 ")
    assert lines[6] == (f"false-positive rate on the rows labelled normal at the model's threshold: "
                        f"{r['model_threshold']['fpr']:.4f} (the threshold was fitted for 0.01 on held-out rows)")
    assert len({len(line) for line in lines[3:6]}) == 1  # right-aligned columns: the rows end together


def test_one_class_labels_are_reported_not_refused(model_dir, tmp_path):
    data = tmp_path / "normal.parquet"
    labelled_table().query("label == 0").to_parquet(data)
    result = run("evaluate", data, "-m", model_dir, "--label", "label", "--json")
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["auroc"] is None and r["auprc"] is None and r["best_threshold"] is None
    assert r["anomalies"] == 0 and r["model_threshold"]["recall"] is None
    assert r["model_threshold"]["fpr"] == r["model_threshold"]["fp"] / r["normal"]
    assert f"warning: {data}: label column 'label' holds only 0 (normal): AUROC, AUPRC and the best " \
           "threshold are undefined" in result.stderr
    text = run("evaluate", data, "-m", model_dir, "--label", "label").stdout
    assert "AUROC  n/a (column 'label' holds one class only)" in text
    assert "best F1          n/a (needs both classes)" in text


def test_errors_are_one_line(model_dir, labelled, tmp_path):
    assert_error(run("evaluate", labelled, "-m", model_dir, "--label", "nope"), 3,
                 "labelled.csv: no label column 'nope'")
    assert_error(run("evaluate", labelled, "-m", model_dir), 2, "Missing option '--label'")

    df = labelled_table()
    df["label"] = df["label"].astype(str)
    df.loc[70, "label"] = "yes"
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    assert_error(run("evaluate", bad, "-m", model_dir, "--label", "label", "--chunk-rows", 64), 3,
                 "bad.csv: label column 'label' must hold 0 or 1; found 'yes' (line 72)")
    df.to_parquet(tmp_path / "bad.parquet")
    assert_error(run("evaluate", tmp_path / "bad.parquet", "-m", model_dir, "--label", "label",
                     "--chunk-rows", 64), 3, "found 'yes' (row 71)")
    df.loc[70, "label"] = ""
    df.to_csv(bad, index=False)
    assert_error(run("evaluate", bad, "-m", model_dir, "--label", "label"), 3, "found '' (line 72)")

    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(df.columns) + "\n")
    assert_error(run("evaluate", header_only, "-m", model_dir, "--label", "label"), 3,
                 "header.csv: has a header but no rows; nothing to evaluate")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_error(run("evaluate", empty, "-m", model_dir, "--label", "label"), 3, "the file is empty")
    assert_error(run("evaluate", labelled, "-m", tmp_path / "nowhere", "--label", "label"), 5)


def test_label_metrics_by_hand():
    """Four rows worked out on paper: scores 0.1 and 0.4 normal, 0.35 and 0.8 anomalies."""
    r = label_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), 0.5, target_fpr=0.1)
    assert r["auroc"] == 0.75  # 3 of the 4 (anomaly, normal) pairs are ordered right
    at = r["model_threshold"]  # only 0.8 is above 0.5
    assert (at["tn"], at["fp"], at["fn"], at["tp"]) == (2, 0, 1, 1)
    assert (at["precision"], at["recall"], at["f1"], at["fpr"], at["target_fpr"]) == (1.0, 0.5, 2 / 3, 0.0, 0.1)
    best = r["best_threshold"]  # >= 0.35 flags 0.35, 0.4, 0.8: F1 0.8, the most of the four cut-offs
    assert best["threshold"] == 0.35 and best["f1"] == pytest.approx(0.8)
    assert (best["tn"], best["fp"], best["fn"], best["tp"]) == (1, 1, 0, 2)


def test_label_metrics_undefined_rates_are_none():
    r = label_metrics(np.array([0, 1, 0]), np.array([0.1, 0.2, 0.3]), 5.0)
    at = r["model_threshold"]
    assert at["flagged"] == 0 and at["precision"] is None and at["recall"] == 0.0 and at["f1"] == 0.0
    empty = label_metrics(np.zeros(0, np.int8), np.zeros(0), 1.0)
    assert empty["rows"] == 0 and empty["auroc"] is None and empty["best_threshold"] is None
    assert all(empty["model_threshold"][k] is None for k in ("precision", "recall", "f1", "fpr"))


def test_evaluate_file_with_a_fitted_detector(fitted, labelled):
    from aaedetect.pipeline import evaluate_file

    summary = evaluate_file(labelled, fitted, "label", chunk_rows=50)
    assert summary.rows == 200 and summary.metrics["model_threshold"]["target_fpr"] == fitted.fpr
    assert summary.metrics["model_threshold"]["threshold"] == fitted.threshold_


def test_a_manifest_with_a_bad_fpr_is_refused(model_dir, labelled, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["options"]["fpr"] = 2  # the manifest holds the other files' checksums, not its own
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert_error(run("evaluate", labelled, "-m", copy, "--label", "label"), 4,
                 "malformed manifest", "fpr 2.0 is not in (0, 1)")
