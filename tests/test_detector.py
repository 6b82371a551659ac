import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from aaedetect import AAEDetector, load
from aaedetect.errors import DataError, OptionError
from conftest import DEMO, FAST

SCORE_COLUMNS = ["anomaly_score", "recon_score", "latent_score", "neighbor_score", "is_anomaly"]


def test_fit_returns_self_and_sets_fitted_state(table):
    det = AAEDetector(**FAST)
    assert det.fit(table) is det
    assert det.n_features_in_ == table.shape[1]
    assert det.training_.epochs_run >= 1
    assert np.isfinite(det.threshold_)
    assert det.n_rows_["train"] + det.n_rows_["validation"] == len(table)


def test_init_stores_parameters_unchanged():
    det = AAEDetector(hidden_dims=[8, 4], exclude=["a"], latent_dim=3)
    assert det.hidden_dims == [8, 4] and det.exclude == ["a"]
    assert clone(det).get_params() == det.get_params()


def test_bad_option_fails_in_fit_not_init(table):
    det = AAEDetector(prior="cauchy")
    with pytest.raises(OptionError, match="prior"):
        det.fit(table)


def test_score_table(fitted, table):
    out = fitted.score_table(table)
    assert list(out.columns) == list(table.columns) + SCORE_COLUMNS
    pd.testing.assert_frame_equal(out[table.columns], table)
    assert np.isfinite(out[SCORE_COLUMNS[:4]].to_numpy()).all()
    assert set(out["is_anomaly"].unique()) <= {0, 1}
    assert (out["is_anomaly"] == (out["anomaly_score"] > fitted.threshold_)).all()


def test_sklearn_conventions_agree_with_the_table(fitted, table):
    out = fitted.score_table(table)
    np.testing.assert_allclose(fitted.score_samples(table), -out["anomaly_score"].to_numpy(), rtol=1e-6)
    pred = fitted.predict(table)
    assert set(np.unique(pred)) <= {-1, 1}
    np.testing.assert_array_equal(pred == -1, out["is_anomaly"].to_numpy() == 1)


def test_extra_columns_and_order_do_not_matter(fitted, table):
    shuffled = table[table.columns[::-1]].assign(extra="x")
    a = fitted.score_table(table)["anomaly_score"].to_numpy()
    b = fitted.score_table(shuffled)["anomaly_score"].to_numpy()
    np.testing.assert_array_equal(a, b)


def test_missing_column_is_an_error(fitted, table):
    with pytest.raises(DataError, match="missing column 'kind'"):
        fitted.score_table(table.drop(columns="kind"))


def test_outliers_score_higher(fitted, table):
    odd = table.head(20).copy()
    odd["b"] = odd["b"] * -10  # break the a-b correlation far outside the training range
    assert fitted.score_table(odd)["anomaly_score"].mean() > fitted.score_table(table)["anomaly_score"].quantile(0.99)


def test_not_fitted():
    from aaedetect import NotFittedError
    from sklearn.exceptions import NotFittedError as SkNotFitted

    with pytest.raises(SkNotFitted):
        AAEDetector().score_table(pd.DataFrame({"a": [1.0]}))
    assert issubclass(NotFittedError, SkNotFitted)


def test_one_row_is_too_few():
    with pytest.raises(DataError, match=r"1 row\(s\) \(n_samples=1\); at least 2"):
        AAEDetector(**FAST).fit(pd.DataFrame({"a": [1.0], "b": [2.0]}))


def test_numpy_input(table):
    X = table[["a", "b", "c"]].to_numpy()
    det = AAEDetector(**FAST).fit(X)
    assert not hasattr(det, "feature_names_in_")  # scikit-learn's rule: names only from a DataFrame
    assert det.columns_ == ("x0", "x1", "x2") and det.n_features_in_ == 3
    assert det.score_samples(X).shape == (len(X),)


def test_same_seed_same_model_and_scores(table):
    a = AAEDetector(**FAST).fit(table)
    b = AAEDetector(**FAST).fit(table)
    np.testing.assert_array_equal(a.score_table(table)["anomaly_score"], b.score_table(table)["anomaly_score"])
    for (ka, va), (kb, vb) in zip(a.graph_.state_dict().items(), b.graph_.state_dict().items()):
        assert ka == kb and np.array_equal(va.numpy(), vb.numpy()), ka


def test_other_seed_other_model(table):
    a = AAEDetector(**FAST).fit(table)
    b = AAEDetector(**{**FAST, "random_state": 1}).fit(table)
    assert not np.array_equal(a.score_table(table)["anomaly_score"], b.score_table(table)["anomaly_score"])


def test_fit_leaves_global_torch_rng_alone(table):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    AAEDetector(**FAST).fit(table)
    assert torch.equal(torch.rand(3), expected)


def test_random_state_none_records_the_seed_used(table):
    det = AAEDetector(**{**FAST, "random_state": None}).fit(table)
    again = AAEDetector(**{**FAST, "random_state": det.seed_}).fit(table)
    np.testing.assert_array_equal(det.score_samples(table), again.score_samples(table))


@pytest.mark.parametrize("prior", ["uniform", "mixture:3"])
@pytest.mark.parametrize("signal", ["density", "discriminator"])
def test_priors_and_latent_signals_train_and_score(table, prior, signal):
    det = AAEDetector(**FAST, prior=prior, latent_signal=signal).fit(table)
    scores = det.score_table(table)
    assert np.isfinite(scores[SCORE_COLUMNS[:4]].to_numpy()).all()


def test_save_load_round_trip(fitted, model_dir, table):
    again = load(model_dir)
    pd.testing.assert_frame_equal(again.score_table(table), fitted.score_table(table))
    assert again.threshold_ == fitted.threshold_
    assert again.get_params() == {**fitted.get_params(), "verbose": 0}


def test_a_loaded_model_remembers_everything_it_was_fitted_with(fitted, model_dir, tmp_path):
    """load() rebuilds the whole fitted state: the manifest after load, and after a re-save, is
    the one fit wrote (training record included)."""
    import json

    written = json.loads((model_dir / "manifest.json").read_text())
    again = load(model_dir)
    assert again.training_.max_epochs == FAST["max_epochs"] == written["training"]["max_epochs"]
    mine, theirs = fitted.manifest(), again.manifest()
    for m in (mine, theirs, written):
        m.pop("created")
    written.pop("files"), written.pop("onnx")
    assert theirs == mine == written
    again.save(tmp_path / "resaved")
    resaved = json.loads((tmp_path / "resaved" / "manifest.json").read_text())
    assert resaved["training"] == written["training"]


def test_progress_callback(table):
    from aaedetect.manifest import HISTORY_KEYS

    seen = []
    det = AAEDetector(**FAST).fit(table, progress=lambda e, m, r: seen.append((e, m, dict(r))))
    assert [s[0] for s in seen] == list(range(1, len(seen) + 1))
    assert seen[0][1] == FAST["max_epochs"]
    assert list(seen[0][2]) == list(HISTORY_KEYS)
    assert [s[2] for s in seen] == det.history_  # each epoch's record, as the history keeps it


def test_early_stopping_stops_before_max_epochs(table):
    det = AAEDetector(max_epochs=500, patience=2, lr=0.01, random_state=0).fit(table)
    assert det.training_.stopped_early
    assert det.training_.epochs_run < 500
    assert det.training_.epochs_run - det.training_.best_epoch == 2


def test_demo_defaults_reach_auroc():
    """The shipped demo: default options must separate its labelled anomalies (0.95+ measured)."""
    train = pd.read_csv(DEMO / "telemetry_train.csv")
    test = pd.read_csv(DEMO / "telemetry_test.csv")
    det = AAEDetector(random_state=0).fit(train)
    out = det.score_table(test)
    auroc = roc_auc_score(test["label"], out["anomaly_score"])
    assert auroc >= 0.93, auroc
    # ... and the threshold flags most anomalies while keeping false alarms rare.
    flagged = out["is_anomaly"] == 1
    assert flagged[test["label"] == 1].mean() >= 0.6
    assert flagged[test["label"] == 0].mean() <= 0.05


def test_neighbor_part_sees_rows_far_from_every_training_row(table):
    """A gap in the data: rows inside the training range but where no normal row lies."""
    rng = np.random.default_rng(0)
    # Normal rows come from two tight clusters; the probe rows sit halfway between them.
    a = np.concatenate([rng.normal(-3, 0.2, 400), rng.normal(3, 0.2, 400)])
    normal = pd.DataFrame({"a": a, "b": a + rng.normal(0, 0.05, 800)})
    det = AAEDetector(**FAST).fit(normal)
    gap = pd.DataFrame({"a": np.zeros(20), "b": np.zeros(20)})
    scored, reference = det.score_table(gap), det.score_table(normal)
    assert scored["neighbor_score"].min() > reference["neighbor_score"].quantile(0.99)


def test_fit_then_score_the_same_table_leaves_each_row_out_of_its_neighbours(table):
    """Scoring the training table: a reference row's distances are to the 5 nearest *other* rows
    (as PyOD's kNN reports for its training rows), in both spaces, so that rows that happen to
    be kept as reference rows (anomalies included) do not look more normal than the rest."""
    import torch
    from sklearn.neighbors import NearestNeighbors

    from aaedetect.neighbors import hidden64

    det = AAEDetector(**FAST).fit(table)
    num, cat = (torch.from_numpy(a) for a in det.preprocessor_.transform(table))
    bank = det.graph_.neighbors
    with torch.no_grad():
        _, _, near_x, near_h, _, _ = det.graph_.raw_parts(num, cat)
        x = det.graph_.features(num, cat)
        in_bank = (x[:, None, :] == bank.x_bank[None]).all(2).any(1)  # the table's reference rows
        h = hidden64(det.graph_.aae.encoder.body, x[in_bank])
    assert int(in_bank.sum()) == len(bank.x_bank) == det.n_rows_["train"]
    for near, ref, query in ((near_x, bank.x_bank, x[in_bank]), (near_h, bank.h_bank, h)):
        ref = ref.numpy().astype(np.float64)
        others = NearestNeighbors(n_neighbors=6).fit(ref).kneighbors(query.numpy().astype(np.float64))[0]
        np.testing.assert_allclose(near.numpy()[in_bank.numpy()], others[:, 1:].mean(1), rtol=2.0 ** -22)


def test_neighbor_bank_is_a_seeded_sample_of_the_training_rows(table, tmp_path):
    det = AAEDetector(**FAST, neighbor_rows=50).fit(table)
    bank = det.graph_.neighbors
    assert bank.x_bank.shape == (50, det.net_config_.n_inputs)
    assert bank.h_bank.shape == (50, det.net_config_.hidden[1])
    again = AAEDetector(**FAST, neighbor_rows=50).fit(table)
    assert np.array_equal(bank.x_bank.numpy(), again.graph_.neighbors.x_bank.numpy())
    det.save(tmp_path / "m")
    with np.load(tmp_path / "m" / "weights.npz") as weights:
        assert weights["neighbors.x_bank"].shape == (50, det.net_config_.n_inputs)
    pd.testing.assert_frame_equal(load(tmp_path / "m").score_table(table), det.score_table(table))


def test_neighbor_weight_zero_keeps_no_training_rows(table, tmp_path):
    det = AAEDetector(**FAST, neighbor_weight=0).fit(table)
    assert det.graph_.neighbors is None
    out = det.score_table(table)
    assert (out["neighbor_score"] == 0).all()
    np.testing.assert_allclose(out["anomaly_score"], out["recon_score"] + 0.25 * out["latent_score"].clip(0, 20),
                               rtol=1e-5, atol=1e-5)
    det.save(tmp_path / "m")
    with np.load(tmp_path / "m" / "weights.npz") as weights:
        assert not [k for k in weights.files if k.startswith("neighbors.")]
    pd.testing.assert_frame_equal(load(tmp_path / "m").score_table(table), out)


def test_too_few_held_out_rows_for_the_fpr_are_named(table, caplog):
    """300 rows hold out 30: too few for a 1% threshold (99 are needed), and the log says so and
    what rate to expect instead; at --fpr 0.2 (4 needed) it does not."""
    import logging

    with caplog.at_level(logging.WARNING, logger="aaedetect"):
        det = AAEDetector(**{**FAST, "max_epochs": 1}).fit(table, source="t.csv")
    (message,) = [r.getMessage() for r in caplog.records if "held-out rows" in r.getMessage()]
    assert "t.csv" in message and "30 held-out rows" in message and "0.032" in message
    held_out_max = det.threshold_
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aaedetect"):
        lax = AAEDetector(**{**FAST, "max_epochs": 1, "fpr": 0.2}).fit(table)
    assert not [r for r in caplog.records if "held-out rows" in r.getMessage()]
    assert lax.threshold_ < held_out_max  # the 25th of the 30 held-out scores, not the largest


# ----------------------------------------------------------- reference_trim (contamination)
def contaminated(n_normal: int = 760, n_anomalies: int = 40, seed: int = 0):
    """Normal rows on a line, and a tight cluster of anomalies off it (5% of the rows): in the
    reference rows, each anomaly finds the other anomalies as its nearest neighbours."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n_normal)
    normal = np.c_[a, 2 * a + rng.normal(0, 0.1, n_normal), rng.normal(0, 1, n_normal)]
    odd = np.c_[rng.normal(0, 0.05, n_anomalies), rng.normal(4, 0.05, n_anomalies), rng.normal(0, 0.05, n_anomalies)]
    X = pd.DataFrame(np.r_[normal, odd], columns=["a", "b", "c"])
    return X, np.r_[np.zeros(n_normal), np.ones(n_anomalies)]


def test_reference_trim_leaves_the_anomalies_out_of_the_reference_rows(tmp_path):
    X, y = contaminated()
    opts = {**FAST, "max_epochs": 20}
    plain = AAEDetector(**opts).fit(X)
    trimmed = AAEDetector(**opts, reference_trim=0.1).fit(X)

    def bank_rows(det):
        import torch

        num, cat = (torch.from_numpy(v) for v in det.preprocessor_.transform(X))
        with torch.no_grad():
            x = det.graph_.features(num, cat)
        return (x[:, None, :] == det.graph_.neighbors.x_bank[None]).all(2).any(1).numpy()

    in_plain, in_trimmed = bank_rows(plain), bank_rows(trimmed)
    assert in_plain.sum() == plain.n_rows_["train"] and in_plain[y == 1].sum() > 20
    # 10% of the training rows are left out, the anomalies (5%) among them
    assert in_trimmed.sum() == plain.n_rows_["train"] - int(0.1 * plain.n_rows_["train"])
    assert in_trimmed[y == 1].sum() == 0
    # with no anomalies to hide among, every anomaly is far from the reference rows: farther than
    # 95% of the normal rows, where among the plain reference rows each is close to the others
    scores = trimmed.score_table(X)["neighbor_score"].to_numpy()
    before = plain.score_table(X)["neighbor_score"].to_numpy()
    assert scores[y == 1].min() > np.quantile(scores[y == 0], 0.95)
    assert before[y == 1].max() < np.median(before[y == 0])
    assert roc_auc_score(y, -trimmed.score_samples(X)) > roc_auc_score(y, -plain.score_samples(X))
    # the option is saved with the model and comes back with it
    trimmed.save(tmp_path / "m")
    again = load(tmp_path / "m")
    assert again.reference_trim == 0.1 and again.options_.reference_trim == 0.1
    pd.testing.assert_frame_equal(again.score_table(X), trimmed.score_table(X))


def test_reference_trim_same_data_and_seed_same_model():
    X, _ = contaminated(seed=1)
    opts = {**FAST, "reference_trim": 0.05, "recon_trim": 0.05}
    a, b = AAEDetector(**opts).fit(X), AAEDetector(**opts).fit(X)
    for (ka, va), (kb, vb) in zip(a.graph_.state_dict().items(), b.graph_.state_dict().items()):
        assert ka == kb and np.array_equal(va.numpy(), vb.numpy()), ka
    assert a.calibration_ == b.calibration_ and a.threshold_ == b.threshold_


def test_reference_trim_on_a_table_too_small_to_hold_rows_out():
    X, _ = contaminated(n_normal=18, n_anomalies=2)
    with pytest.warns(UserWarning, match="too few to hold any out"):
        det = AAEDetector(**FAST, reference_trim=0.1).fit(X)
    assert len(det.graph_.neighbors.x_bank) == 18
    assert np.isfinite(det.score_samples(X)).all()


# ------------------------------------------- reference_cluster (adaptive contamination)
def test_clustered_suspects_are_those_among_other_suspects():
    import torch

    from aaedetect.detector import _clustered

    rng = np.random.default_rng(0)
    bulk = rng.normal(0, 1, (400, 3))
    cluster = rng.normal(8, 0.05, (20, 3))  # a tight cluster far from the bulk
    x = torch.from_numpy(np.r_[bulk, cluster]).float()
    scores = np.r_[rng.normal(0, 1, 400), rng.normal(10, 0.1, 20)]
    loners = rng.choice(400, 20, replace=False)  # rows of the bulk the networks score high
    scores[loners] = 9.0 + rng.random(20)
    out = _clustered(x, scores, trim=0.1, min_suspect=4)  # 42 suspects: the cluster, the loners, 2 more
    assert out[400:].all()  # every row of the cluster has only cluster rows as its 5 nearest
    assert out[:400].sum() <= 2  # the loners sit among ordinary rows and stay
    assert not _clustered(x, scores, trim=0.0, min_suspect=4).any()
    # the cluster is far from every ordinary row: it passes a gap test of 2 (and even of 10)
    assert (_clustered(x, scores, trim=0.1, min_suspect=4, gap=10.0) == out).all()
    # a tight clump of suspects at the edge of the bulk, as close to ordinary rows as to each
    # other, is a cluster but fails the gap test
    edge = np.r_[bulk, rng.normal(0, 0.3, (20, 3)) + bulk[0]]
    scores2 = np.r_[scores[:400], np.full(20, 10.0)]
    scores2[0] = 10.0
    close = _clustered(torch.from_numpy(edge).float(), scores2, trim=0.1, min_suspect=4)
    apart = _clustered(torch.from_numpy(edge).float(), scores2, trim=0.1, min_suspect=4, gap=2.0)
    assert close[400:].sum() >= 5 and apart[400:].sum() < close[400:].sum()


def test_reference_cluster_trims_the_clustered_anomalies_and_few_clean_rows(tmp_path):
    X, y = contaminated()
    opts = {**FAST, "max_epochs": 20}
    share = AAEDetector(**opts, reference_trim=0.2).fit(X)
    opts["reference_cluster"] = 0.2
    det = AAEDetector(**opts).fit(X)
    bank = _bank_rows(det, X)
    assert bank[y == 1].sum() == 0  # every anomaly left out of the reference rows
    assert det.rows_left_out_["reference"] < share.rows_left_out_["reference"]
    assert det.rows_left_out_["calibration"] == 0  # calibration keeps every held-out row
    assert roc_auc_score(y, -det.score_samples(X)) > 0.95
    off = AAEDetector(**{**opts, "reference_cluster": 0.0}).fit(X)
    assert off.rows_left_out_["reference"] == 0 and _bank_rows(off, X)[y == 1].sum() > 20
    # clean rows: a few at most (here the sparse ends of the line are the suspects)
    clean = X[y == 0].reset_index(drop=True)
    quiet = AAEDetector(**opts).fit(clean)
    assert quiet.rows_left_out_["reference"] <= 0.05 * quiet.n_rows_["train"]
    det.save(tmp_path / "m")
    again = load(tmp_path / "m")
    assert again.options_.reference_cluster == 0.2
    pd.testing.assert_frame_equal(again.score_table(X), det.score_table(X))


def test_adaptive_trims_same_data_and_seed_same_model():
    X, _ = contaminated(seed=1)
    for opts in ({**FAST, "reference_cluster": 0.2},):
        a, b = AAEDetector(**opts).fit(X), AAEDetector(**opts).fit(X)
        for (ka, va), (kb, vb) in zip(a.graph_.state_dict().items(), b.graph_.state_dict().items()):
            assert ka == kb and np.array_equal(va.numpy(), vb.numpy()), ka
        assert a.calibration_ == b.calibration_ and a.threshold_ == b.threshold_


def _bank_rows(det, X):
    """Which rows of ``X`` are among the detector's reference rows."""
    import torch

    num, cat = (torch.from_numpy(v) for v in det.preprocessor_.transform(X))
    with torch.no_grad():
        x = det.graph_.features(num, cat)
    return (x[:, None, :] == det.graph_.neighbors.x_bank[None]).all(2).any(1).numpy()
