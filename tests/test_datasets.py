import numpy as np
import pandas as pd
import pytest

from aaedetect.datasets import (ANOMALY_KINDS, SKLEARN_TABLES, changed_columns, load_sklearn_anomaly,
                                make_telemetry)
from conftest import DEMO


def test_generator_is_deterministic():
    a_train, a_test = make_telemetry(300, 200, seed=3)
    b_train, b_test = make_telemetry(300, 200, seed=3)
    pd.testing.assert_frame_equal(a_train, b_train)
    pd.testing.assert_frame_equal(a_test, b_test)
    assert not make_telemetry(300, 200, seed=4)[0].equals(a_train)


def test_generated_tables():
    train, test = make_telemetry(1000, 500, anomaly_share=0.1, seed=1)
    assert len(train) == 1000 and len(test) == 500
    assert "label" not in train.columns
    assert test["label"].sum() == 50
    assert set(test.loc[test["label"] == 1, "anomaly_kind"]) == set(ANOMALY_KINDS)
    assert set(test.loc[test["label"] == 0, "anomaly_kind"]) == {"none"}
    # Real correlations: power follows load within each machine type.
    pumps = train[train["machine_type"] == "pump"]
    assert np.corrcoef(pumps["load_pct"], pumps["power_kw"])[0, 1] > 0.9
    # Structural missing values: only pumps and compressors report pressure.
    assert train.loc[train["machine_type"].isin(["fan", "turbine"]), "pressure_bar"].isna().all()


def test_committed_demo_files():
    train = pd.read_csv(DEMO / "telemetry_train.csv")
    test = pd.read_csv(DEMO / "telemetry_test.csv")
    assert len(train) == 5000 and len(test) == 2000
    assert list(test.columns) == list(train.columns) + ["label", "anomaly_kind"]
    assert test["label"].mean() == pytest.approx(0.08)


def test_committed_demo_files_are_what_the_generator_writes_by_default():
    """datasets/demo/ is written by datasets/generate_demo.py with its defaults, byte for byte."""
    train, test = make_telemetry()
    assert train.to_csv(index=False) == (DEMO / "telemetry_train.csv").read_text()
    assert test.to_csv(index=False) == (DEMO / "telemetry_test.csv").read_text()


def test_broken_columns_name_what_each_kind_of_anomaly_changes():
    train, test = make_telemetry(broken_columns=True)
    plain_train, plain_test = make_telemetry()
    pd.testing.assert_frame_equal(train, plain_train)  # the flag draws no random numbers
    pd.testing.assert_frame_equal(test.drop(columns="broken_columns"), plain_test)
    assert test.columns[-1] == "broken_columns"
    assert (test.loc[test["label"] == 0, "broken_columns"] == "").all()
    seen = test[test["label"] == 1].groupby("anomaly_kind")["broken_columns"].unique()
    assert set(seen["out_of_range"]) == {"temperature_c", "vibration_mm_s", "oil_quality"}
    assert set(seen["broken_correlation"]) == {"load_pct", "rpm;power_kw"}
    # Pressure is set only where the machine type has none; site only where it was not "north".
    rare = test[test["anomaly_kind"] == "rare_combination"]
    no_pressure = rare["machine_type"].isin(["fan", "turbine"])
    assert (rare.loc[no_pressure, "broken_columns"] == "firmware;pressure_bar").all()
    assert (rare.loc[~no_pressure, "broken_columns"] == "firmware").all()
    assert no_pressure.any() and (~no_pressure).any()
    assert set(seen["wrong_site_climate"]) == {"site;ambient_c;temperature_c", "ambient_c;temperature_c"}


def test_changed_columns():
    before = pd.DataFrame({"a": [1.0, np.nan, np.nan, 4.0], "b": ["x", "y", None, "z"], "c": [1, 2, 3, 4]})
    after = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.5], "b": ["x", "q", None, "w"], "c": [1, 2, 3, 4]})
    assert changed_columns(before, after) == ["", "b", "a", "a;b"]
    assert changed_columns(before.iloc[:0], after.iloc[:0]) == []


@pytest.mark.parametrize("name", SKLEARN_TABLES)
def test_sklearn_tables(name):
    df = load_sklearn_anomaly(name, anomaly_share=0.1, seed=0)
    assert df.columns[-1] == "label"
    assert df["label"].mean() == pytest.approx(0.1, abs=0.02)
    assert df.drop(columns="label").select_dtypes("number").shape[1] == df.shape[1] - 1


def test_sklearn_table_unknown():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_sklearn_anomaly("mnist")


def test_a_set_but_unusable_shared_data_folder_is_an_error(tmp_path):
    """AAEDETECT_DATA set to a folder the shared-data tests cannot use stops the whole run (see
    conftest.pytest_configure) rather than turning the quality floors into skips."""
    from conftest import shared_data_problem

    assert shared_data_problem(None) is None  # unset: those tests are skipped
    assert "not a readable folder" in shared_data_problem(str(tmp_path / "nope"))
    assert "not a readable folder" in shared_data_problem("")
    assert "no *.csv.gz" in shared_data_problem(str(tmp_path))
    (tmp_path / "x.csv.gz").write_bytes(b"")
    assert shared_data_problem(str(tmp_path)) is None
