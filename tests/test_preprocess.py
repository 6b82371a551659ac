import json
import logging

import numpy as np
import pandas as pd
import pytest

from aaedetect.errors import DataError
from aaedetect.preprocess import TabularPreprocessor


def fit(df, **kw):
    return TabularPreprocessor.fit(df, **kw)


def test_kinds_and_left_out_columns(table, caplog):
    with caplog.at_level(logging.WARNING, logger="aaedetect"):
        pre = fit(table)
    assert [c.name for c in pre.numeric] == ["a", "b", "c", "code"]
    assert [c.name for c in pre.categorical] == ["kind"]
    reasons = {d["column"]: d["reason"] for d in pre.dropped}
    assert set(reasons) == {"id", "const"}
    assert "identifier" in reasons["id"] and "constant" in reasons["const"]
    assert "'id' left out" in caplog.text and "'const' left out" in caplog.text


def test_standard_scaling_state(table):
    a = fit(table).numeric[0]
    assert a.center == pytest.approx(table["a"].mean())
    assert a.scale == pytest.approx(table["a"].std(ddof=0))


def test_robust_scaling_state(table):
    pre = fit(table, scaling="robust")
    a = pre.numeric[0]
    assert a.center == pytest.approx(np.median(table["a"]))
    q25, q75 = np.percentile(table["a"], [25, 75])
    assert a.scale == pytest.approx((q75 - q25) / 1.349)
    assert pre.numeric[2].indicator is True  # c has missing values
    assert pre.numeric[0].indicator is False


def test_zero_iqr_falls_back_to_std():
    values = np.zeros(100)
    values[:3] = [1.0, 2.0, 5.0]
    pre = fit(pd.DataFrame({"x": values, "y": np.arange(100.0)}), scaling="robust")
    assert pre.numeric[0].scale == pytest.approx(np.std(values))


def test_statistics_do_not_overflow_near_the_largest_doubles():
    values = np.array([1.7e308, -1.7e308, 1e308, 0.0] * 10)
    for scaling in ("standard", "robust"):
        col = fit(pd.DataFrame({"x": values}), scaling=scaling).numeric[0]
        assert np.isfinite(col.center) and np.isfinite(col.scale) and col.scale > 0


def test_exclude_and_forced_categorical(table):
    pre = fit(table, exclude=("a",), categorical=("code",))
    assert "a" not in pre.columns
    code = next(c for c in pre.categorical if c.name == "code")
    assert code.spelling == "number" and sorted(code.categories) == ["1", "2", "3"]


def test_unknown_column_in_options_is_an_error(table):
    with pytest.raises(DataError, match="no column 'nope'"):
        fit(table, exclude=("nope",))


def test_forced_categorical_matches_across_spellings(table):
    pre = fit(table, categorical=("code",))
    j = [c.name for c in pre.categorical].index("code")
    as_float = table.assign(code=table["code"].astype(float))
    as_text = table.assign(code=table["code"].map(lambda v: f"{v}.0"))
    codes = [pre.transform(df)[1][:, j] for df in (table, as_float, as_text)]
    assert np.array_equal(codes[0], codes[1]) and np.array_equal(codes[0], codes[2])


def test_transform_arrays(table):
    pre = fit(table)
    num, cat = pre.transform(table)
    assert num.dtype == np.float64 and num.shape == (len(table), 4)
    assert cat.dtype == np.int64 and cat.shape == (len(table), 1)
    assert np.isnan(num[:, 2]).sum() == table["c"].isna().sum()
    kind = pre.categorical[0]
    assert kind.categories[0] == "red"  # most frequent first
    assert np.array_equal(cat[:, 0], table["kind"].map({k: i for i, k in enumerate(kind.categories)}))


def test_unseen_and_missing_categories_get_their_slots(table):
    pre = fit(table)
    kind = pre.categorical[0]
    df = table.head(3).assign(kind=["purple", None, "red"])
    _, cat = pre.transform(df)
    assert not kind.has_missing
    assert cat[:, 0].tolist() == [kind.other_code, kind.other_code, 0]


def test_missing_category_in_training_gets_own_slot():
    df = pd.DataFrame({"k": ["x", "y", None, "x"] * 10, "v": np.arange(40.0)})
    pre = fit(df)
    col = pre.categorical[0]
    assert col.has_missing and col.width == len(col.categories) + 2
    _, cat = pre.transform(pd.DataFrame({"k": [None, "zzz"], "v": [1.0, 2.0]}))
    assert cat[:, 0].tolist() == [col.other_code + 1, col.other_code]


def test_max_categories_keeps_most_frequent():
    df = pd.DataFrame({"k": list("aaaabbbcde") * 5, "v": np.arange(50.0)})
    pre = fit(df, max_categories=2)
    assert pre.categorical[0].categories == ["a", "b"]


def test_text_in_numeric_column_names_column_and_line():
    df = pd.DataFrame({"x": [str(i) for i in range(50)], "y": np.arange(50.0)})
    df.loc[17, "x"] = "oops"
    with pytest.raises(DataError, match=r"column 'x', line 19: 'oops' is not a number"):
        fit(df, source="f.csv")


def test_mostly_text_column_is_categorical():
    df = pd.DataFrame({"x": ["a", "b", "1"] * 10, "y": np.arange(30.0)})
    pre = fit(df)
    assert [c.name for c in pre.categorical] == ["x"]


def test_numbers_as_text_at_scoring_time(table):
    pre = fit(table)
    text = table.astype(str).replace({"nan": ""})
    num_typed, cat_typed = pre.transform(table)
    num_text, cat_text = pre.transform(text)
    np.testing.assert_array_equal(np.isnan(num_typed), np.isnan(num_text))
    np.testing.assert_allclose(num_typed[~np.isnan(num_typed)], num_text[~np.isnan(num_text)])
    np.testing.assert_array_equal(cat_typed, cat_text)


def test_bad_number_at_scoring_time(table):
    pre = fit(table)
    text = table.astype(str)
    text.loc[5, "b"] = "12,5"
    with pytest.raises(DataError, match=r"score.csv: column 'b', line 7: '12,5' is not a number"):
        pre.transform(text, source="score.csv", first_line=2)


def test_missing_column_is_an_error(table):
    pre = fit(table)
    with pytest.raises(DataError, match="missing column 'b' that the model needs"):
        pre.transform(table.drop(columns="b"))


def test_duplicate_columns_are_an_error(table):
    df = pd.concat([table, table[["a"]]], axis=1)
    with pytest.raises(DataError, match="'a' appears more than once"):
        fit(df)


def test_all_columns_unusable():
    df = pd.DataFrame({"c": [1.0] * 30, "id": [f"x{i}" for i in range(30)]})
    with pytest.raises(DataError, match="no usable column"):
        fit(df)


def test_json_round_trip(table):
    pre = fit(table, categorical=("code",))
    again = TabularPreprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again == pre
    for x, y in zip(pre.transform(table), again.transform(table)):
        np.testing.assert_array_equal(x, y)


def test_unseen_missing_numeric_warns(table, caplog):
    pre = fit(table)
    df = table.head(5).copy()
    df.loc[0, "a"] = np.nan
    with caplog.at_level(logging.WARNING, logger="aaedetect"):
        num, _ = pre.transform(df)
    assert np.isnan(num[0, 0])
    assert "column 'a' has 1 missing value" in caplog.text


def test_boolean_columns_match_in_any_spelling():
    typed = pd.DataFrame({"flag": [True, False] * 20, "v": np.arange(40.0)})
    pre = fit(typed)
    col = pre.categorical[0]
    assert col.spelling == "boolean" and sorted(col.categories) == ["false", "true"]
    text = pd.DataFrame({"flag": ["TRUE", "false", " True", "False"], "v": ["1", "2", "3", "4"]})
    _, cat = pre.transform(text)
    _, expected = pre.transform(pd.DataFrame({"flag": [True, False, True, False], "v": [1.0, 2, 3, 4]}))
    np.testing.assert_array_equal(cat, expected)


def test_text_columns_from_csv_are_typed_like_pandas_would(table):
    """fit on all-text input (as the CLI reads CSV) finds the same kinds and statistics."""
    text = table.astype(str).replace({"nan": ""})
    typed_pre, text_pre = fit(table), fit(text)
    assert [c.name for c in text_pre.numeric] == [c.name for c in typed_pre.numeric]
    for a, b in zip(typed_pre.numeric, text_pre.numeric):
        assert a.center == pytest.approx(b.center) and a.scale == pytest.approx(b.scale)
        assert a.indicator == b.indicator


@pytest.mark.parametrize("text,value", [
    (" 1.5", 1.5), ("+3", 3.0), (".5", 0.5), ("1e5", 1e5), ("inf", np.inf), ("-Infinity", -np.inf),
    ("1e400", np.inf), ("NA", np.nan), ("", np.nan), ("  ", np.nan), ("null", np.nan), ("NAN", np.nan),
    ("-nan", np.nan),
])
def test_number_spellings(text, value):
    from aaedetect.preprocess import _parse_numbers

    values, bad = _parse_numbers(pd.Series(["1", text], dtype=object))
    assert not bad.any()
    np.testing.assert_equal(values[1], value)


@pytest.mark.parametrize("text", ["1,5", "0x10", "1_000", "abc", "1.2.3"])
def test_not_numbers(text):
    from aaedetect.preprocess import _parse_numbers

    values, bad = _parse_numbers(pd.Series(["1", text], dtype=object))
    assert bad.tolist() == [False, True] and np.isnan(values[1])


def _typed_table(rows, seed):
    """An Arrow table with the column types CSV and Parquet files bring."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    pick = lambda options: [options[i] for i in rng.integers(0, len(options), rows)]  # noqa: E731
    return pa.table({
        "text_number": pa.array(pick(["1.5", " 2", "NA", "", "inf", "-3e2", "7", "nan", "0.25 "]), pa.string()),
        "int_nulls": pa.array(pick([1, 5, None, -7, 2**40]), pa.int64()),
        "float_odd": pa.array(pick([0.5, float("nan"), float("inf"), -1.0, None, 3.25]), pa.float64()),
        "small_float": pa.array(rng.normal(size=rows).astype(np.float32)),
        "flag": pa.array(pick([True, False])),
        "flag_nulls": pa.array(pick([True, False, None])),
        "word_nulls": pa.array(pick(["red", "green", None, "blue", "new" if seed else "red"]), pa.string()),
        "large_word": pa.array(pick(["a", "b", "c"]), pa.large_string()),
        "dict_word": pa.array(pick(["x", "y", "z"])).dictionary_encode(),
        "code_int": pa.array(pick([1, 2, 3, 4 if seed else 1]), pa.int32()),
        "code_text": pa.array(pick(["1", "2.0", "2.5", " 3", "NULL"]), pa.string()),
        "bool_text": pa.array(pick(["TRUE", "false", " True", ""]), pa.string()),
        "when": pa.array(pick([0, 86_400_000_000, 2 * 86_400_000_000]), pa.timestamp("us")),
    })


def test_arrow_tables_transform_like_their_dataframes():
    """`aaedetect score` transforms the Arrow tables it reads; the Python API, DataFrames. Both
    give the same arrays and warnings for every column type a CSV or Parquet file brings."""
    from aaedetect.preprocess import InputReport

    train = _typed_table(300, seed=0)
    pre = fit(train.to_pandas(), categorical=("code_int", "code_text"))
    kinds = {c.name: "numeric" for c in pre.numeric} | {c.name: c.spelling for c in pre.categorical}
    assert kinds == {"text_number": "numeric", "int_nulls": "numeric", "float_odd": "numeric",
                     "small_float": "numeric", "flag": "boolean", "flag_nulls": "boolean",
                     "word_nulls": "text", "large_word": "text", "dict_word": "text", "code_int": "number",
                     "code_text": "number", "bool_text": "boolean", "when": "text"}
    new = _typed_table(200, seed=1)  # with unseen categories and new missing values
    reports = InputReport(), InputReport()
    from_arrow = pre.transform(new, report=reports[0])
    from_pandas = pre.transform(new.to_pandas(), report=reports[1])
    for a, b in zip(from_arrow, from_pandas):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert reports[0].counts == reports[1].counts and reports[0].counts


def test_missing_cells_of_object_columns_are_missing_not_bad_numbers():
    """A None in a DataFrame (or a null in Parquet) is a missing value, also in a column whose
    other cells need the slow parse: an error names the cell that is not a number."""
    from aaedetect.preprocess import _missing_mask, _parse_numbers

    series = pd.Series([None, "1", " 2", "1,5"], dtype=object)
    assert _missing_mask(series).tolist() == [True, False, False, False]
    values, bad = _parse_numbers(series)
    assert bad.tolist() == [False, False, False, True]
    np.testing.assert_array_equal(values[:3], [np.nan, 1.0, 2.0])
    pre = fit(pd.DataFrame({"v": np.arange(30.0), "w": np.arange(30.0) % 7}))
    with pytest.raises(DataError, match=r"column 'v', line 5: '1,5' is not a number"):
        pre.transform(pd.DataFrame({"v": series, "w": [1.0] * 4}))
    pre_text = fit(pd.DataFrame({"v": [None] * 10 + [str(i) for i in range(30)], "w": np.arange(40.0)}))
    assert [c.name for c in pre_text.numeric] == ["v", "w"] and pre_text.numeric[0].indicator
