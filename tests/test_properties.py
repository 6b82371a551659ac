"""Property-based tests: random tables (mixed types, NaN and infinities, odd column names, tiny and
wide shapes) through fit and score. Whatever the table, the result is finite scores or a clean
DataError, never another exception; and a well-formed table is always accepted and scored."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaedetect import AAEDetector
from aaedetect.errors import DataError

SCORES = ["anomaly_score", "recon_score", "latent_score", "neighbor_score"]
TINY = dict(max_epochs=1, batch_size=16, hidden_dims=(16, 8), random_state=0)

names = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, 1.0, -1.0, 1e300, -1e300, 1e-300, np.nan]))
words = st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=5),
                  st.sampled_from(["a", "b", "c", "", " ", "NA", "null", "1", "2.5", "TRUE"]))


@st.composite
def columns(draw, n):
    kind = draw(st.sampled_from(["float", "int", "text", "category", "bool", "numbers-as-text", "constant"]))
    if kind == "float":
        return pd.Series(draw(st.lists(floats, min_size=n, max_size=n)), dtype="float64")
    if kind == "int":
        return pd.Series(draw(st.lists(st.integers(-10**15, 10**15), min_size=n, max_size=n)), dtype="int64")
    if kind == "text":
        return pd.Series(draw(st.lists(words, min_size=n, max_size=n)), dtype=object)
    if kind == "category":
        return pd.Series(draw(st.lists(st.sampled_from(["x", "y", "z", None]), min_size=n, max_size=n)), dtype=object)
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    if kind == "numbers-as-text":
        values = draw(st.lists(st.one_of(floats.map(repr), st.sampled_from(["", "NA", "x"])), min_size=n, max_size=n))
        return pd.Series(values, dtype=object)
    return pd.Series([draw(words)] * n, dtype=object)


@st.composite
def tables(draw, n_rows=None, column_names=None):
    n = draw(st.integers(1, 60)) if n_rows is None else n_rows
    if column_names is None:
        column_names = draw(st.lists(names, min_size=1, max_size=draw(st.sampled_from([4, 12, 40])), unique=True))
    return pd.DataFrame({name: draw(columns(n)) for name in column_names})


def assert_finite(scored: pd.DataFrame) -> None:
    assert np.isfinite(scored[SCORES].to_numpy(dtype=np.float64)).all()
    assert set(scored["is_anomaly"].unique()) <= {0, 1}


@st.composite
def well_formed_tables(draw):
    """Tables a user would expect to train on: enough rows, numbers (finite or missing, at least
    one column that varies) and categories from a small vocabulary, distinct names."""
    n = draw(st.integers(24, 60))
    n_num, n_cat = draw(st.integers(1, 5)), draw(st.integers(0, 3))
    finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    table = {}
    for j in range(n_num):
        values = draw(st.lists(st.one_of(finite, st.just(np.nan)), min_size=n, max_size=n))
        table[f"num {j}"] = pd.Series(values, dtype="float64")
    first = np.linspace(0.0, 1.0, n) * draw(st.floats(1e-3, 1e3))  # one column that surely varies
    table["num 0"] = pd.Series(draw(st.permutations(list(first))), dtype="float64")
    for j in range(n_cat):
        vocab = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "", "NA"]), min_size=1, max_size=4, unique=True))
        table[f"cat {j}"] = pd.Series(draw(st.lists(st.sampled_from(vocab), min_size=n, max_size=n)), dtype=object)
    return pd.DataFrame(table)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(train=well_formed_tables())
def test_well_formed_tables_are_accepted_and_scored(train):
    det = AAEDetector(**TINY).fit(train)
    scored = det.score_table(train)
    assert len(scored) == len(train)
    assert_finite(scored)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fit_and_score_random_tables(data):
    train = data.draw(tables())
    try:
        det = AAEDetector(**TINY).fit(train)
    except DataError:
        return  # a clean refusal (too few rows, no usable column, text among numbers, ...)
    assert_finite(det.score_table(train))
    # New rows with the same columns: anything goes in the values.
    other = data.draw(tables(n_rows=data.draw(st.integers(0, 30)), column_names=list(train.columns)))
    try:
        scored = det.score_table(other)
    except DataError:
        return
    assert len(scored) == len(other)
    assert_finite(scored)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_tables_through_files_and_onnx(tmp_path_factory, data):
    """The CLI's path: CSV files (odd names and all), the model directory, the ONNX runtime."""
    from aaedetect.pipeline import fit_file, score_file
    from aaedetect.runtime import OnnxScorer

    tmp = tmp_path_factory.mktemp("prop")
    train = data.draw(tables(n_rows=data.draw(st.integers(20, 60))))
    # Text quoted: pandas writes a last column name ending in "\r" bare, and "x\r\n" reads as a
    # line "x" (CRLF) in any CSV reader.
    train.to_csv(tmp / "train.csv", index=False, quoting=csv.QUOTE_NONNUMERIC)
    try:
        fit_file(tmp / "train.csv", tmp / "model", dict(TINY))
    except DataError:
        assert not (tmp / "model").exists()
        return
    try:
        score_file(tmp / "train.csv", OnnxScorer(tmp / "model", device="cpu"), tmp / "out.parquet")
    except DataError:
        assert not (tmp / "out.parquet").exists()
        return
    scored = pd.read_parquet(tmp / "out.parquet")
    assert list(scored.columns[:len(train.columns)]) == list(train.columns)
    assert len(scored) == len(train)
    assert_finite(scored)
