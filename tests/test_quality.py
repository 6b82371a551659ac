"""Detection quality of the defaults on real benchmark tables: a floor, so that a change of
defaults that loses what the benchmark measured fails here before it lands.

Needs $AAEDETECT_DATA (for example ../shared/datasets, which .ci/run sets when it is there);
skipped otherwise. Same protocol as benchmarks/quality.py, one seed.
"""

from pathlib import Path

import pytest
from conftest import SHARED_DATA, load_benchmark, needs_shared_data
from sklearn.metrics import roc_auc_score

from aaedetect import AAEDetector

pytestmark = needs_shared_data

# The benchmark's own split and metrics (it imports PyOD only for its PyOD peers), so that these
# floors measure exactly what benchmarks/quality.py reports.
bench = load_benchmark("quality")


def split(name: str, seed: int = 0):
    """(train frame, test frame, test labels) of one shared dataset, as the benchmark splits it."""
    df, y = bench.load_dataset(Path(SHARED_DATA) / f"{name}.csv.gz")
    train, test = bench.novelty_split(y, seed)
    return df.iloc[train], df.iloc[test], y[test]


# name: (AUROC floor, F1 floor). From benchmarks/results/quality-odds.md (3 seeds, mean ± sample
# standard deviation over seeds), each floor 2 to 4 deviations under the mean; each AUROC floor
# is above what reconstruction alone reaches, so that losing the other parts fails here:
#   thyroid AUROC 0.988 ± 0.002, F1 0.781 ± 0.038 (reconstruction alone 0.918, 0.487)
#   cardio  AUROC 0.948 ± 0.005, F1 0.708 ± 0.027 (reconstruction alone 0.886, 0.604)
#   vowels  AUROC 0.972 ± 0.003, F1 0.693 ± 0.031 (reconstruction alone 0.957, 0.653)
FLOORS = {"thyroid": (0.980, 0.70), "cardio": (0.935, 0.64), "vowels": (0.960, 0.61)}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_defaults_keep_their_benchmark_quality(name):
    train, test, y = split(name)
    scored = AAEDetector(random_state=0).fit(train).score_table(test)
    metrics = bench.quality(y, scored["anomaly_score"].to_numpy())
    auroc, f1 = metrics["auroc"], metrics["f1"]
    auroc_floor, f1_floor = FLOORS[name]
    assert auroc >= auroc_floor and f1 >= f1_floor, f"{name}: AUROC {auroc:.3f}, F1 {f1:.3f}"


@pytest.mark.parametrize("name, part, margin", [
    # thyroid: the latent part carries the signal that reconstruction misses.
    ("thyroid", "latent_score", 0.02),
    # satellite: anomalies on the shape of the normal data but where normal rows are sparse.
    ("satellite", "neighbor_score", 0.03),
])
def test_the_parts_do_what_the_readme_says(name, part, margin):
    train, test, y = split(name)
    scored = AAEDetector(random_state=0).fit(train).score_table(test)
    auroc = {c: roc_auc_score(y, scored[c]) for c in ("recon_score", part, "anomaly_score")}
    assert auroc[part] > auroc["recon_score"] + margin, auroc
    assert auroc["anomaly_score"] > auroc["recon_score"] + 0.02, auroc
