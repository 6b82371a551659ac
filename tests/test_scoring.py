import numpy as np
import pandas as pd
import pytest

from aaedetect.errors import DataError
from aaedetect.scoring import (MIN_LOG_SCALE, MIN_NEIGHBOR_LOG_SCALE, NEIGHBOR_MIN_OFFSET, Calibration,
                               PartCalibration, check_no_score_columns, output_frame,
                               robust_location_scale, threshold_for_fpr,
                               threshold_shortfall)


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
    cal = Calibration.fit(recon, latent, latent_log=False, latent_weight=0.3)
    assert cal.recon.log and not cal.latent.log
    assert cal.recon.offset == pytest.approx(0.1 * np.median(recon))
    z = cal.recon.z(recon)
    assert np.median(z) == pytest.approx(0.0, abs=0.01)
    assert np.subtract(*np.percentile(z, [75, 25])) == pytest.approx(1.349, rel=0.02)
    assert cal.latent.center == pytest.approx(4.0, abs=0.15)
    assert cal.latent_weight == 0.3 and cal.neighbor_weight == 0.0
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_combine_caps_the_latent_and_neighbour_parts():
    cal = Calibration.fit(np.ones(10), np.ones(10), latent_log=False, latent_weight=0.5,
                          neighbor_raw=(np.ones(10), np.ones(10)), neighbor_weight=2.0)
    recon = np.array([1.0, 1.0, 1.0, 1.0])
    latent = np.array([-3.0, 4.0, 100.0, 0.0])
    neighbor = np.array([0.5, 0.0, 0.0, 460.0])
    # latent: negative evidence counts 0, and at most PART_CAP (20); neighbour: at most 20
    np.testing.assert_allclose(cal.combine(recon, latent, neighbor), [2.0, 3.0, 11.0, 41.0])


def test_neighbor_calibration_with_mostly_exact_copies():
    """Three quarters of the held-out rows are copies of training rows (distance 0): the spread
    comes from the rest, and a row at distance 0.1 scores on the scale of normal rows at a
    distance, not in the hundreds."""
    rng = np.random.default_rng(3)
    apart = np.exp(rng.normal(np.log(0.2), 0.5, 250))
    raw = np.concatenate([np.zeros(750), apart])
    part = PartCalibration.fit_distances(raw)
    assert part.offset == pytest.approx(0.1 * np.median(apart))
    assert part.scale == pytest.approx(PartCalibration.fit(apart, True).scale, rel=0.2)
    assert part.z(np.array([0.0]))[0] == pytest.approx(0.0)  # a copy: as typical as the median row
    assert 1 < part.z(np.array([0.1]))[0] < 10
    assert part.z(np.array([1.0]))[0] > part.z(np.array([0.1]))[0]


def test_neighbor_calibration_when_every_row_is_a_copy():
    part = PartCalibration.fit_distances(np.zeros(100))
    assert part.offset == NEIGHBOR_MIN_OFFSET and part.scale == MIN_NEIGHBOR_LOG_SCALE
    assert part.z(np.array([0.1]))[0] == pytest.approx(np.log(0.101 / 0.001) / MIN_NEIGHBOR_LOG_SCALE)


@pytest.mark.parametrize("bad", [{"center": 0.0, "scale": 0.0, "log": True, "offset": 0.1},
                                 {"center": float("nan"), "scale": 1.0, "log": True, "offset": 0.1},
                                 {"center": 0.0, "scale": 1.0, "log": "yes", "offset": 0.1},
                                 {"center": 0.0, "scale": 1.0, "log": True}])
def test_malformed_part_calibration_is_refused(bad):
    with pytest.raises((KeyError, TypeError, ValueError)):
        PartCalibration.from_dict(bad)


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_threshold_gives_the_target_false_positive_rate(fpr):
    scores = np.random.default_rng(2).normal(size=20_000)
    t = threshold_for_fpr(scores, fpr)
    assert (scores > t).mean() == pytest.approx(fpr, abs=0.002)


@pytest.mark.parametrize("n, fpr", [(120, 0.01), (499, 0.01), (60, 0.05), (30, 0.2)])
def test_threshold_keeps_its_promise_on_new_rows(n, fpr):
    """Split conformal: over many draws of n held-out rows, the share of new rows (from the same
    distribution) above the threshold is at most fpr and at least fpr - 1/(n+1)."""
    rng = np.random.default_rng(5)
    rates = [(rng.normal(size=4000) > threshold_for_fpr(rng.normal(size=n), fpr)).mean()
             for _ in range(400)]
    # the mean of 400 draws: its standard error is under 0.0015 here
    assert fpr - 1 / (n + 1) - 0.004 <= np.mean(rates) <= fpr + 0.004
    assert threshold_shortfall(n, fpr) is None


def test_too_few_rows_for_the_rate_take_the_largest_and_say_what_to_expect():
    scores = np.arange(50.0)
    assert threshold_for_fpr(scores, 0.01) == 49.0
    assert threshold_shortfall(50, 0.01) == pytest.approx(1 / 51)
    assert threshold_shortfall(98, 0.01) is not None and threshold_shortfall(99, 0.01) is None


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
