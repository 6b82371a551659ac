"""The scikit-learn estimator contract: the library's own checks, pipelines, model selection,
small tables, and the column rules of the scikit-learn methods."""

import warnings

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from aaedetect import AAEDetector, DataError, SmallTableWarning, labelled_scorer, load
from aaedetect.detector import EXPECTED_FAILED_CHECKS
from conftest import FAST, make_table


def test_check_estimator_passes_but_for_the_listed_checks():
    assert len(EXPECTED_FAILED_CHECKS) <= 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(AAEDetector(max_epochs=2, batch_size=64),
                                  expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed
    names = {r["check_name"] for r in results}
    # the checks that an outlier detector gets did run
    assert {"check_outliers_train", "check_outliers_fit_predict", "check_fit2d_1sample",
            "check_dtype_object"} <= names
    assert set(EXPECTED_FAILED_CHECKS) <= names
    assert sum(r["status"] == "passed" for r in results) >= len(results) - 4


def test_tags_say_what_it_accepts():
    tags = AAEDetector().__sklearn_tags__()
    assert tags.input_tags.allow_nan and tags.input_tags.string and tags.input_tags.categorical
    assert not tags.input_tags.sparse
    assert tags.estimator_type == "outlier_detector"


def test_outlier_detector_methods_agree(fitted, table):
    assert not hasattr(fitted, "score")  # scikit-learn's score(X, y) is a number; see score_table
    normality = fitted.score_samples(table)
    decision = fitted.decision_function(table)
    predicted = fitted.predict(table)
    np.testing.assert_allclose(decision, normality - fitted.offset_, rtol=0, atol=0)
    np.testing.assert_array_equal(predicted, np.where(decision >= 0, 1, -1))
    scored = fitted.score_table(table)
    np.testing.assert_array_equal(-normality, scored["anomaly_score"].to_numpy(np.float64))
    np.testing.assert_array_equal(predicted == -1, scored["is_anomaly"].to_numpy() == 1)


def test_fit_predict_flags_about_the_fpr_share_of_training_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    labels = AAEDetector(**{**FAST, "fpr": 0.05}).fit_predict(X)
    assert set(np.unique(labels)) == {-1, 1}
    assert 0.01 <= np.mean(labels == -1) <= 0.15


def test_small_tables_train_with_a_warning():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 3))
    with pytest.warns(SmallTableWarning, match="12 rows, too few to hold any out"):
        det = AAEDetector(**FAST).fit(X)
    assert det.n_rows_ == {"train": 12, "validation": 0}
    assert det.predict(X).shape == (12,)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallTableWarning)
        AAEDetector(**FAST).fit(rng.normal(size=(24, 3)))  # enough rows: no warning


def test_methods_check_columns_as_scikit_learn_does(fitted, table):
    reordered = table[list(reversed(table.columns))]
    with pytest.raises(DataError, match="same order"):
        fitted.predict(reordered)
    with pytest.raises(DataError, match="unseen at fit time"):
        fitted.score_samples(table.assign(extra=1.0))
    # score_table finds the model's columns by name and passes the rest through
    out = fitted.score_table(reordered.assign(extra=1.0))
    np.testing.assert_array_equal(out["anomaly_score"], fitted.score_table(table)["anomaly_score"])
    assert list(out.columns[:len(table.columns) + 1]) == [*reversed(table.columns), "extra"]


def test_arrays_are_taken_by_position_and_checked_for_width(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 3))
    det = AAEDetector(**FAST).fit(X)
    with pytest.raises(DataError, match="X has 2 features, but AAEDetector is expecting 3"):
        det.predict(X[:, :2])
    with pytest.raises(DataError, match="Sparse data was passed"):
        from scipy import sparse
        det.predict(sparse.csr_matrix(X))
    det.save(tmp_path / "m")
    again = load(tmp_path / "m")
    assert not hasattr(again, "feature_names_in_")  # still an array model after a round trip
    np.testing.assert_array_equal(again.score_samples(X), det.score_samples(X))


def test_last_step_of_a_pipeline_after_a_column_transformer(table):
    numeric = [c for c in table.columns if table[c].dtype.kind == "f"]
    text = [c for c in table.columns if c not in numeric]
    pipe = Pipeline([
        ("columns", ColumnTransformer([("num", StandardScaler(), numeric),
                                       ("cat", OneHotEncoder(handle_unknown="ignore",
                                                             sparse_output=False), text)])),
        ("detect", AAEDetector(**FAST)),
    ])
    labels = pipe.fit(table).predict(table)
    assert labels.shape == (len(table),) and set(np.unique(labels)) <= {-1, 1}
    np.testing.assert_array_equal(pipe.score_samples(table),
                                  pipe["detect"].score_samples(pipe["columns"].transform(table)))
    assert not hasattr(pipe, "score")  # no score on the last step: none on the pipeline


def test_grid_search_with_a_scorer_from_labelled_rows():
    rng = np.random.default_rng(3)
    table = make_table(420, seed=5)
    train, val = table.iloc[:300], table.iloc[300:].copy()
    y_val = np.zeros(len(val), dtype=int)
    y_val[:20] = 1
    val.iloc[:20, val.columns.get_loc("a")] = val["a"].iloc[:20] + 25.0 + rng.normal(size=20)
    scorer = labelled_scorer(val, y_val, metric="roc_auc")
    search = GridSearchCV(AAEDetector(**FAST), {"neighbor_weight": [0.0, 1.0]}, scoring=scorer, cv=2)
    search.fit(train)
    assert set(search.cv_results_["param_neighbor_weight"]) == {0.0, 1.0}
    best = search.best_estimator_
    expected = roc_auc_score(y_val, -best.score_samples(val))
    assert scorer(best) == pytest.approx(expected, abs=0)
    assert search.best_score_ > 0.9  # a 25-sigma shift in one column is easy to rank
    ap = labelled_scorer(val, y_val)(best)
    assert ap == pytest.approx(average_precision_score(y_val, -best.score_samples(val)), abs=0)


@pytest.mark.parametrize("y", [[0, 0, 0], [0, 2, 1], [[0], [1], [0]]])
def test_labelled_scorer_refuses_bad_labels(y):
    with pytest.raises(DataError, match="labels must be 0"):
        labelled_scorer(np.zeros((3, 2)), y)
