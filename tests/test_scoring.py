import numpy as np
import pandas as pd
import pytest

from aaedetect.errors import DataError
from aaedetect.scoring import (MIN_LOG_SCALE, check_no_score_columns, fit_calibration, output_frame,
                               robust_location_scale, threshold_for_fpr)


def test_robust_location_scale_on_normal_data():
    values = np.random.default_rng(0).normal(3.0, 2.0, 200_000)
    center, scale = robust_location_scale(values)
    assert center == pytest.approx(3.0, abs=0.02)
    assert scale == pytest.approx(2.0, rel=0.02)


def test_scale_floor_for_constant_part():
    assert robust_location_scale(np.ones(50)) == (1.0, MIN_LOG_SCALE)


def test_fit_calibration_log_and_linear():
    rng = np.random.default_rng(1)
    recon = np.exp(rng.normal(-2.0, 0.5, 10_000))
    latent = rng.normal(4.0, 3.0, 10_000)
    cal = fit_calibration(recon, latent, latent_log=False, latent_weight=0.3)
    assert cal["recon"]["log"] and not cal["latent"]["log"]
    offset = cal["recon"]["offset"]
    assert offset == pytest.approx(0.1 * np.median(recon))
    z = (np.log(recon + offset) - cal["recon"]["center"]) / cal["recon"]["scale"]
    assert np.median(z) == pytest.approx(0.0, abs=0.01)
    assert np.subtract(*np.percentile(z, [75, 25])) == pytest.approx(1.349, rel=0.02)
    assert cal["latent"]["center"] == pytest.approx(4.0, abs=0.15)
    assert cal["latent_weight"] == 0.3


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_threshold_gives_the_target_false_positive_rate(fpr):
    scores = np.random.default_rng(2).normal(size=20_000)
    t = threshold_for_fpr(scores, fpr)
    assert (scores > t).mean() == pytest.approx(fpr, abs=0.002)


def test_output_frame_appends_scores_after_input_columns():
    df = pd.DataFrame({"z": ["007", "x"], "a": ["1.50", ""]})
    out = output_frame(df, {"anomaly_score": np.array([0.5, 3.0], np.float32),
                            "recon_score": np.array([1.0, 2.0], np.float32),
                            "latent_score": np.array([0.0, 4.0], np.float32),
                            "neighbor_score": np.array([0.1, 5.0], np.float32)}, threshold=1.0)
    assert list(out.columns) == ["z", "a", "anomaly_score", "recon_score", "latent_score", "neighbor_score",
                                 "is_anomaly"]
    assert out["z"].tolist() == ["007", "x"] and out["a"].tolist() == ["1.50", ""]
    assert out["is_anomaly"].tolist() == [0, 1]


def test_score_column_clash_is_an_error():
    with pytest.raises(DataError, match="already has a column 'anomaly_score'"):
        check_no_score_columns(["a", "anomaly_score"], "x.csv")
