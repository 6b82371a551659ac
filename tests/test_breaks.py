"""The single-column-break generator (aaedetect.datasets.make_breaks) and its committed files."""

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from aaedetect import datasets
from aaedetect.datasets import (BREAK_KINDS, BREAKABLE, CATEGORY_COLUMNS, RELATION_SIGMAS, RELATION_SPREAD,
                                RELATIONS, SPIKES, _break_tables, _building_rows, make_breaks)

BREAKS = ROOT / "datasets" / "breaks"
ANSWERS = ["label", "break_kind", "broken_column"]


@pytest.fixture(scope="module")
def tables():
    """(train, clean, test): 60 breaks of each kind, 5 or more per breakable column."""
    return _break_tables(1500, 600, 0.3, seed=3)


def broken(test: pd.DataFrame, kind: str) -> pd.DataFrame:
    return test[test["break_kind"] == kind]


def test_deterministic_for_a_seed():
    a_train, a_test = make_breaks(400, 300, seed=1)
    b_train, b_test = make_breaks(400, 300, seed=1)
    pd.testing.assert_frame_equal(a_train, b_train)
    pd.testing.assert_frame_equal(a_test, b_test)
    c_train, c_test = make_breaks(400, 300, seed=2)
    assert not c_train.equals(a_train) and not c_test.equals(a_test)


def test_clean_rows_are_what_the_normal_generator_draws(tables):
    train, clean, _ = tables
    rng = np.random.default_rng(3)
    pd.testing.assert_frame_equal(train, _building_rows(1500, rng))
    pd.testing.assert_frame_equal(clean, _building_rows(600, rng))


def test_table_layout_and_counts(tables):
    train, clean, test = tables
    features = list(train.columns)
    assert 8 <= len(features) <= 12 and list(test.columns) == features + ANSWERS
    assert set(CATEGORY_COLUMNS) == set(train.select_dtypes(exclude="number").columns)
    assert train["humidity_pct"].isna().any()  # a column with missing values
    assert test["label"].sum() == 180 and (test["label"] == (test["break_kind"] != "none")).all()
    counts = test.loc[test["label"] == 1, "break_kind"].value_counts()
    assert sorted(counts.index) == sorted(BREAK_KINDS) and counts.max() - counts.min() <= 1
    normal = test[test["label"] == 0]
    assert (normal["broken_column"] == "").all() and (normal["break_kind"] == "none").all()
    # Every column is broken, each by every kind that can hit it, in about equal numbers.
    hit = test[test["label"] == 1].groupby(["break_kind", "broken_column"]).size()
    assert set(test.loc[test["label"] == 1, "broken_column"]) == set(features)
    for kind, columns in BREAKABLE.items():
        assert set(hit[kind].index) == set(columns)
        assert hit[kind].max() - hit[kind].min() <= 1


def test_each_broken_row_differs_from_its_clean_row_in_its_broken_column_only(tables):
    _, clean, test = tables
    features = test[clean.columns]
    differs = ~((features == clean) | (features.isna() & clean.isna()))
    assert (differs.sum(axis=1) == test["label"]).all()
    rows = test["label"] == 1
    assert (differs[rows].idxmax(axis=1) == test.loc[rows, "broken_column"]).all()
    # The breaks keep the column types (an integer column stays integer, a category a string).
    assert (test[clean.columns].dtypes == clean.dtypes).all()


def test_spikes_lie_outside_the_training_range(tables):
    train, _, test = tables
    for _, row in broken(test, "spike").iterrows():
        column = row["broken_column"]
        lo, hi = train[column].min(), train[column].max()
        value = row[column]
        assert value > hi + 0.2 * (hi - lo) or value < lo - 0.2 * (hi - lo), (column, value, lo, hi)
    assert (broken(test, "spike")["humidity_pct"].dropna() <= 100).all()  # within its hard limits


def test_relation_values_are_normal_alone_but_far_from_what_the_row_predicts(tables):
    train, clean, test = tables
    rows = broken(test, "relation")
    assert len(rows) >= 40
    for i, row in rows.iterrows():
        column = row["broken_column"]
        expected, sd, log, _ = RELATIONS[column]
        value, centre = row[column], expected(test.loc[[i]])[0]
        assert value in set(train[column].dropna())  # a value of the column's own training data
        assert train[column].min() <= value <= train[column].max()
        gap = abs(np.log(value / centre)) if log else abs(value - centre)
        assert gap >= RELATION_SIGMAS * sd and abs(value - centre) >= RELATION_SPREAD * train[column].std()
    # ... where the same relation holds the clean rows within a few noise deviations.
    for column, (expected, sd, log, _) in RELATIONS.items():
        value, centre = clean[column].to_numpy(float), expected(clean)
        gap = np.abs(np.log(value / centre)) if log else np.abs(value - centre)
        assert np.mean(gap[~np.isnan(gap)] <= 3.5 * sd) > 0.99, column


def test_categories_occur_in_training_but_never_with_the_rest_of_the_row(tables):
    train, clean, test = tables
    pairs = set(zip(train["building"], train["hvac_unit"]))
    outdoor = train.groupby("mode")["outdoor_c"].agg(["min", "max"])
    rows = broken(test, "category")
    assert set(rows["broken_column"]) == set(CATEGORY_COLUMNS)
    for i, row in rows.iterrows():
        column = row["broken_column"]
        assert row[column] in set(train[column]) and row[column] != clean.at[i, column]
        if column == "mode":  # that mode never ran at this outdoor temperature in training
            assert not outdoor.at[row["mode"], "min"] <= row["outdoor_c"] <= outdoor.at[row["mode"], "max"]
        else:  # that building never had that HVAC unit in training
            assert (row["building"], row["hvac_unit"]) not in pairs
    # The clean rows of the test table do keep to the training combinations.
    assert set(zip(clean["building"], clean["hvac_unit"])) <= pairs


def test_spike_directions_cover_every_numeric_column():
    assert set(SPIKES) == set(RELATIONS) | {"outdoor_c"}


def test_bad_arguments(monkeypatch):
    with pytest.raises(ValueError, match="break_share"):
        make_breaks(100, 100, break_share=1.5)
    # No row that can take a break (normally: a tiny table whose rows all lack a fitting value).
    monkeypatch.setattr(datasets._Breaker, "category", lambda self, i, column: None)
    with pytest.raises(ValueError, match=r"too few test rows \(60\) for 30 breaks: .* category "
                                         r"break of '(building|hvac_unit|mode)'$"):
        make_breaks(300, 60, break_share=0.5, seed=0)


def test_committed_files_are_what_the_generator_writes():
    """datasets/breaks/ is written by datasets/generate_breaks.py with its defaults."""
    train, test = make_breaks()
    assert train.to_csv(index=False) == (BREAKS / "breaks_train.csv").read_text()
    assert test.to_csv(index=False) == (BREAKS / "breaks_test.csv").read_text()
