"""benchmarks/weights.py: its recombination of the score parts is the package's own formula."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, make_table

_path = Path(__file__).parents[1] / "benchmarks" / "weights.py"
_spec = importlib.util.spec_from_file_location("aaedetect_weights_benchmark", _path)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder with one small labelled dataset, as the shared ones are laid out."""
    folder = tmp_path_factory.mktemp("data")
    table = make_table()
    rng = np.random.default_rng(0)
    label = np.zeros(len(table), dtype=int)
    label[rng.choice(len(table), 20, replace=False)] = 1
    table.loc[label == 1, table.select_dtypes("number").columns[0]] += 8.0  # detectable anomalies
    table.assign(label=label).to_csv(folder / "toy.csv.gz", index=False)
    return folder


def test_the_default_weights_give_the_models_anomaly_score(data, tmp_path):
    p = bench.parts(data, "toy", "novelty", 0, tmp_path, FAST)
    assert {"y", "anomaly", "recon", "latent", "neighbor", "neighbor_x", "neighbor_h"} <= set(p)
    np.testing.assert_allclose(bench.combined(p, *bench.DEFAULTS), p["anomaly"], atol=1e-4)
    np.testing.assert_allclose(0.5 * (p["neighbor_x"] + p["neighbor_h"]), p["neighbor"], atol=1e-5)
    # other weights change the ranking, so the table is not the same row repeated
    assert not np.allclose(bench.combined(p, 1.0, 0.0, 0.5), p["anomaly"])


def test_a_second_run_reads_the_cache_and_prints_the_tables(data, tmp_path, capsys, monkeypatch):
    bench.parts(data, "toy", "novelty", 0, tmp_path, FAST)
    import aaedetect

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted again instead of reading the cache")

    monkeypatch.setattr(aaedetect, "AAEDetector", no_fit)
    assert bench.main(["--data", str(data), "--datasets", "toy", "--seeds", "0", "--protocols", "novelty",
                       "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "## novelty: 1 datasets, 1 fits" in out and "| 0.25 | 2 | 0.5 (defaults) |" in out
