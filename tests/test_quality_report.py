"""benchmarks/quality.py's summaries, on hand-made records: the paired difference to the best
peer per dataset, and the false-positive rate at aaedetect's own threshold."""

import numpy as np
import pytest
from conftest import load_benchmark

bench = load_benchmark("quality")


def record(dataset, method, seed, auroc, **extra):
    return {"dataset": dataset, "method": method, "seed": seed, "status": "ok", "auroc": auroc,
            "auprc": auroc, "f1": auroc, **extra}


def test_paired_difference_to_the_best_peer_of_each_dataset():
    records = []
    for seed, (mine, knn, lof) in enumerate([(0.90, 0.88, 0.80), (0.92, 0.89, 0.95), (0.91, 0.87, 0.70)]):
        records += [record("a", "aaedetect", seed, mine), record("a", "knn", seed, knn),
                    record("a", "lof", seed, lof)]
    for seed in range(3):  # on b, aaedetect trails iforest by 0.05 every time
        records += [record("b", "aaedetect", seed, 0.70), record("b", "iforest", seed, 0.75)]
    records.append({**record("b", "knn", 0, 0.99), "status": "failed"})  # failures do not count
    text, numbers = bench.paired_to_best_peer(records)
    a, b = numbers["per_dataset"]["a"], numbers["per_dataset"]["b"]
    assert a["best_peer"] == "knn"  # mean 0.880 against lof's 0.817
    assert a["mean"] == pytest.approx(np.mean([0.02, 0.03, 0.04]))
    assert a["std"] == pytest.approx(0.01)
    assert b["best_peer"] == "iforest" and b["mean"] == pytest.approx(-0.05) and b["std"] == pytest.approx(0)
    assert numbers["mean"] == pytest.approx((0.03 - 0.05) / 2)
    assert numbers["se"] == pytest.approx(np.std([0.03, -0.05], ddof=1) / np.sqrt(2))
    assert numbers["ahead"] == 1
    assert "+0.030 ± 0.010" in text and "-0.050 ± 0.000" in text and "ahead on 1/2" in text


def test_no_peer_no_paired_table():
    assert bench.paired_to_best_peer([record("a", "aaedetect", 0, 0.9)]) == ("", {})


def test_fpr_table_median_and_band():
    records = [record(d, "aaedetect", s, 0.9, fpr=f, target_fpr=0.01)
               for d, fs in {"a": (0.004, 0.006), "b": (0.01, 0.012), "c": (0.05, 0.07)}.items()
               for s, f in enumerate(fs)]
    text = bench.fpr_table(records, ["aaedetect"], "novelty")
    assert "unseen normal rows" in text
    row = next(line for line in text.splitlines() if line.startswith("| aaedetect"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["0.010", "0.0110", "0.0050 - 0.0600", "2/3"]
