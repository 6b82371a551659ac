"""benchmarks/parts_study.py: the parts it recomputes are the model's, and it leaves the package
as it found it."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, make_table

from aaedetect import scoring

_path = Path(__file__).parents[1] / "benchmarks" / "parts_study.py"
_spec = importlib.util.spec_from_file_location("aaedetect_parts_study", _path)
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


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


def test_recomputed_defaults_are_the_models_scores(data, tmp_path):
    fit = scoring.Calibration.fit
    arrays = study.fit_arrays(data, "toy", "novelty", 0, tmp_path, FAST)
    assert scoring.Calibration.fit == fit  # the capture is undone
    n_test = len(arrays["y"])
    assert arrays["test_errors"].shape[0] == n_test and arrays["held_errors"].shape[0] == len(arrays["held_recon"])
    scores = study.candidates(arrays)
    # the defaults from the captured raw parts, in float64, against the graph's float32 scores:
    # the same formula, so they differ by float32 rounding (a few steps of 2^-24 of scores that
    # stay under 100 here: about 1e-5), well inside 1e-4, as in test_weights_benchmark
    np.testing.assert_allclose(scores["defaults"], arrays["anomaly"], atol=1e-4, rtol=0)
    assert all(s.shape == (n_test,) and np.isfinite(s).all() for s in scores.values())
    # the pattern part adds a non-negative distance, and it is not zero everywhere
    extra = scores["+pattern 1"] - scores["defaults"]
    assert (extra >= 0).all() and extra.max() > 0


def test_a_second_run_reads_the_cache_and_prints_the_tables(data, tmp_path, capsys, monkeypatch):
    study.fit_arrays(data, "toy", "novelty", 0, tmp_path, FAST)
    import aaedetect

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted again instead of reading the cache")

    monkeypatch.setattr(aaedetect, "AAEDetector", no_fit)
    assert study.main(["--data", str(data), "--datasets", "toy", "--seeds", "0", "--protocols", "novelty",
                       "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "## novelty: 1 datasets, 1 fits" in out and "| +pattern 1 |" in out and "| recon/column |" in out
