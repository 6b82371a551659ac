"""benchmarks/weights.py and benchmarks/parts_study.py: the scores they recompute from a fit's
parts are the model's own, and a second run reads their cache."""

import numpy as np
import pytest
from conftest import FAST, load_benchmark

from aaedetect import scoring

weights = load_benchmark("weights")
parts_study = load_benchmark("parts_study")


def test_the_default_weights_give_the_models_anomaly_score(labelled_folder, tmp_path):
    p = weights.parts(labelled_folder, "toy", "novelty", 0, tmp_path, FAST)
    assert {"y", "anomaly", "recon", "latent", "neighbor", "neighbor_x", "neighbor_h"} <= set(p)
    np.testing.assert_allclose(weights.combined(p, *weights.DEFAULTS), p["anomaly"], atol=1e-4)
    np.testing.assert_allclose(0.5 * (p["neighbor_x"] + p["neighbor_h"]), p["neighbor"], atol=1e-5)
    # other weights change the ranking, so the table is not the same row repeated
    assert not np.allclose(weights.combined(p, 1.0, 0.0, 0.5), p["anomaly"])


def test_the_parts_study_recomputes_the_models_scores(labelled_folder, tmp_path):
    fit = scoring.Calibration.fit
    arrays = parts_study.fit_arrays(labelled_folder, "toy", "novelty", 0, tmp_path, FAST)
    assert scoring.Calibration.fit == fit  # the capture of the held-out rows' parts is undone
    n_test = len(arrays["y"])
    assert arrays["test_errors"].shape[0] == n_test and arrays["held_errors"].shape[0] == len(arrays["held_recon"])
    scores = parts_study.candidates(arrays)
    # the defaults from the captured raw parts, in float64, against the graph's float32 scores:
    # the same formula, so they differ by float32 rounding (a few steps of 2^-24 of scores that
    # stay under 100 here: about 1e-5), well inside 1e-4, as for the weights above
    np.testing.assert_allclose(scores["defaults"], arrays["anomaly"], atol=1e-4, rtol=0)
    assert all(s.shape == (n_test,) and np.isfinite(s).all() for s in scores.values())
    # as in the model, the reconstruction part is not capped: raw errors a million times larger
    # raise each row's score by exactly their z-score's rise (over 20, where the other parts stop)
    raw = arrays["test_recon"].astype(np.float64)
    larger = parts_study.candidates({**arrays, "test_recon": raw * 1e6})["defaults"]
    recon = scoring.PartCalibration.fit(arrays["held_recon"], True)
    rise = recon.z(raw * 1e6) - recon.z(raw)
    assert rise.min() > 20
    # float64 sums of terms under 100 differ by rounding under 1e-13
    np.testing.assert_allclose(larger - scores["defaults"], rise, rtol=0, atol=1e-9)
    # the pattern part adds a non-negative distance, and it is not zero everywhere
    extra = scores["+pattern 1"] - scores["defaults"]
    assert (extra >= 0).all() and extra.max() > 0


@pytest.mark.parametrize("study, fit, printed", [
    (weights, "parts", "| 0.25 | 2 | 0.5 (defaults) |"),
    (parts_study, "fit_arrays", "| +pattern 1 |"),
])
def test_a_second_run_reads_the_cache_and_prints_the_tables(study, fit, printed, labelled_folder, tmp_path,
                                                            capsys, monkeypatch):
    getattr(study, fit)(labelled_folder, "toy", "novelty", 0, tmp_path, FAST)
    import aaedetect

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted again instead of reading the cache")

    monkeypatch.setattr(aaedetect, "AAEDetector", no_fit)
    assert study.main(["--data", str(labelled_folder), "--datasets", "toy", "--seeds", "0", "--protocols", "novelty",
                       "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "## novelty: 1 datasets, 1 fits" in out and printed in out
