"""Detection quality of the defaults on real benchmark tables: a floor, so that a change of
defaults that loses what the benchmark measured fails here before it lands.

Needs $AAEDETECT_DATA (for example ../shared/datasets, which .ci/run sets when it is there);
skipped otherwise. The floors sit a little under the 3-seed figures of benchmarks/results/
(same protocol as benchmarks/quality.py, one seed), so that they hold for any seed.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from aaedetect import AAEDetector

SHARED = os.environ.get("AAEDETECT_DATA")
pytestmark = pytest.mark.skipif(
    not SHARED, reason="set AAEDETECT_DATA to a folder of benchmark CSVs (e.g. ../shared/datasets)")


def novelty_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train on a random half of the normal rows; test on the other half plus every anomaly."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    half = len(normal) // 2
    test = rng.permutation(np.concatenate([normal[half:], np.flatnonzero(y == 1)]))
    return np.sort(normal[:half]), test


def f1_at_true_ratio(y: np.ndarray, scores: np.ndarray) -> float:
    k = int(y.sum())
    return float(y[np.argsort(-scores, kind="stable")[:k]].sum()) / k


# name: (AUROC floor, F1 floor); 3-seed means: thyroid 0.984 / 0.771, cardio 0.937 / 0.72,
# vowels 0.951 / 0.62
FLOORS = {"thyroid": (0.96, 0.65), "cardio": (0.88, 0.55), "vowels": (0.92, 0.45)}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_defaults_keep_their_benchmark_quality(name):
    df = pd.read_csv(Path(SHARED) / f"{name}.csv.gz")
    y = df.pop("label").to_numpy()
    train, test = novelty_split(y, seed=0)
    det = AAEDetector(random_state=0).fit(df.iloc[train])
    scored = det.score(df.iloc[test])
    auroc = roc_auc_score(y[test], scored["anomaly_score"])
    f1 = f1_at_true_ratio(y[test], scored["anomaly_score"].to_numpy())
    auroc_floor, f1_floor = FLOORS[name]
    assert auroc >= auroc_floor and f1 >= f1_floor, f"{name}: AUROC {auroc:.3f}, F1 {f1:.3f}"


def test_the_parts_do_what_the_readme_says():
    """thyroid: the latent part carries the signal that reconstruction misses."""
    df = pd.read_csv(Path(SHARED) / "thyroid.csv.gz")
    y = df.pop("label").to_numpy()
    train, test = novelty_split(y, seed=0)
    scored = AAEDetector(random_state=0).fit(df.iloc[train]).score(df.iloc[test])
    auroc = {c: roc_auc_score(y[test], scored[c]) for c in ("recon_score", "latent_score", "anomaly_score")}
    assert auroc["latent_score"] > auroc["recon_score"] + 0.02, auroc
    assert auroc["anomaly_score"] > auroc["recon_score"] + 0.02, auroc
