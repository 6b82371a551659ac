"""``AAEDetector``: the scikit-learn style estimator that ties preprocessing, training, calibration
and the model directory together.

Score convention: ``score_samples`` follows scikit-learn (higher = more normal) and is the negated
``anomaly_score`` of the output table (higher = more anomalous). The flip happens in
:meth:`AAEDetector.score_samples` and nowhere else.
"""

from __future__ import annotations

import io
import logging
import math
import os
import platform
import time
import warnings
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pandas as pd
import sklearn.exceptions
import torch
from sklearn.base import BaseEstimator, OutlierMixin

from . import artifacts
from ._version import __version__
from .config import (CLUSTER_GAP, CLUSTER_MIN_SUSPECTS, DEFAULT_OPSET, NEIGHBORS, SCORE_BATCH_ROWS,
                     Options, defaults, size_network)
from .errors import AAEDetectError, DataError, ModelFormatError, OptionError, SmallTableWarning, TrainingError
from .manifest import FittedState
from .model import AAE, FeatureEncoder, ScoringGraph
from .neighbors import Neighbors, sample_rows
from .preprocess import TabularPreprocessor
from .priors import make_prior
from .runtime import ONNX_FILE, OUTPUTS
from .scoring import Calibration, FrameScorer, threshold_for_fpr, threshold_shortfall
from .train import cpu_threads_for, resolve_device, train_aae

logger = logging.getLogger("aaedetect")

#: Fewest held-out rows that calibration and the threshold are fitted on.
MIN_VALIDATION_ROWS = 8
#: Fewest rows left to train on.
MIN_TRAIN_ROWS = 16
#: Below this many rows nothing is held out: the model is trained, calibrated and thresholded on
#: all of them, with a :class:`~aaedetect.errors.SmallTableWarning`.
MIN_SPLIT_ROWS = MIN_TRAIN_ROWS + MIN_VALIDATION_ROWS
#: Fewest rows a fit accepts (a spread needs two rows; so does the neighbour part).
MIN_ROWS = 2
WEIGHTS = artifacts.WEIGHTS
#: Prefix of the neighbour part's reference rows among the arrays in ``weights.npz``.
NEIGHBOR_KEY = "neighbors."

_D = defaults()

#: The scikit-learn estimator checks that ``AAEDetector`` cannot pass by design, with the reason
#: (``check_estimator(AAEDetector(...), expected_failed_checks=EXPECTED_FAILED_CHECKS)``).
EXPECTED_FAILED_CHECKS = {
    "check_methods_subset_invariance":
        "the networks compute in float32, and matrix kernels choose their blocking by the number "
        "of rows, so a row's score may move in its last float32 bits (about 1e-7 relative) with "
        "the size of the batch it is scored in; the check allows 1e-7 absolute",
}


class NotFittedError(AAEDetectError, sklearn.exceptions.NotFittedError):
    """The detector was used before ``fit`` (or ``load``)."""


class AAEDetector(FrameScorer, OutlierMixin, BaseEstimator):
    """Adversarial Autoencoder anomaly detector for tables.

    Train on normal rows with :meth:`fit`. :meth:`score_table` returns the table with
    ``anomaly_score`` (higher = more anomalous), ``recon_score``, ``latent_score``,
    ``neighbor_score`` and ``is_anomaly`` appended; ``predict``, ``fit_predict``,
    ``decision_function`` and ``score_samples`` follow scikit-learn's outlier detectors exactly
    (+1 normal / -1 anomaly; higher = more normal; there is no ``score``, as for IsolationForest).
    Parameters are described in :class:`aaedetect.config.Options` and in ``aaedetect fit --help``;
    ``verbose`` > 0 logs one line per epoch.

    Input: a DataFrame (numeric, string, categorical and boolean columns; missing values allowed)
    or a 2-D array-like. The scikit-learn methods check columns as scikit-learn does (the same
    names in the same order as in ``fit``, or as many columns for arrays); :meth:`score_table`
    finds the model's columns by name and passes every other column through.

    After ``fit`` (or ``load``), ``history_`` holds one dict per completed training epoch, in
    order, with the keys of :data:`aaedetect.manifest.HISTORY_KEYS` (``epoch``, ``recon_loss``,
    ``generator_loss``, ``discriminator_loss``, ``discriminator_accuracy``, ``validation_loss``);
    ``pandas.DataFrame(detector.history_)`` makes it a table. It is saved in the model directory
    (empty for models saved by aaedetect releases that did not record it).
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values are a feature of the data, not an error
        tags.input_tags.string = True  # text columns become categories
        tags.input_tags.categorical = True  # pandas categorical (and boolean) columns too
        return tags

    def __init__(self, *, scaling=_D["scaling"], noise=_D["noise"],
                 hidden_dims=_D["hidden_dims"], latent_dim=_D["latent_dim"],
                 dropout=_D["dropout"], prior=_D["prior"], regularizer=_D["regularizer"],
                 adv_weight=_D["adv_weight"],
                 max_epochs=_D["max_epochs"], batch_size=_D["batch_size"], lr=_D["lr"],
                 disc_lr=_D["disc_lr"], patience=_D["patience"],
                 validation_fraction=_D["validation_fraction"], recon_trim=_D["recon_trim"],
                 latent_signal=_D["latent_signal"],
                 latent_weight=_D["latent_weight"], neighbor_weight=_D["neighbor_weight"],
                 neighbor_rows=_D["neighbor_rows"], reference_trim=_D["reference_trim"],
                 reference_cluster=_D["reference_cluster"], fpr=_D["fpr"],
                 categorical=_D["categorical"], exclude=_D["exclude"],
                 max_categories=_D["max_categories"], device=_D["device"],
                 random_state=_D["random_state"], verbose=0):
        self.scaling = scaling
        self.noise = noise
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.prior = prior
        self.regularizer = regularizer
        self.adv_weight = adv_weight
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.disc_lr = disc_lr
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.recon_trim = recon_trim
        self.latent_signal = latent_signal
        self.latent_weight = latent_weight
        self.neighbor_weight = neighbor_weight
        self.neighbor_rows = neighbor_rows
        self.reference_trim = reference_trim
        self.reference_cluster = reference_cluster
        self.fpr = fpr
        self.categorical = categorical
        self.exclude = exclude
        self.max_categories = max_categories
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, progress: Callable[[int, int, dict], None] | None = None,
            source: str = "data", first_line: int | None = None):
        """Train on ``X`` (normal rows: a DataFrame, or a 2-D array) and calibrate the scores.

        ``y`` is ignored. ``progress(epoch, max_epochs, record)`` is called after each completed
        epoch with its ``history_`` record.
        ``source`` names the data in error messages (the CLI gives the file name), and
        ``first_line`` is the file line of the first row (None: rows are counted from 1).
        Returns ``self``.
        """
        marks = [time.perf_counter()]
        opts = Options(**{k: v for k, v in self.get_params().items() if k != "verbose"})
        df, named = _table(X, source, min_rows=MIN_ROWS)
        n = len(df)
        pre = TabularPreprocessor.fit(df, categorical=opts.categorical, exclude=opts.exclude,
                                      max_categories=opts.max_categories, scaling=opts.scaling,
                                      source=source, first_line=first_line)
        numeric, categorical = pre.transform(df, source=source, first_line=first_line)
        seed = (opts.random_state if opts.random_state is not None
                else int(np.random.SeedSequence().generate_state(1)[0]))
        if n >= MIN_SPLIT_ROWS:
            n_val = max(MIN_VALIDATION_ROWS, int(round(opts.validation_fraction * n)))
            order = np.random.default_rng(seed).permutation(n)
            val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        else:
            warnings.warn(f"{source}: only {n} rows, too few to hold any out: the model is trained, "
                          f"calibrated and thresholded on the same rows, so its threshold is weak "
                          f"(at least {MIN_SPLIT_ROWS} rows hold some out)", SmallTableWarning,
                          stacklevel=2)
            val_idx = train_idx = np.arange(n)
        held_out = len(val_idx) if n >= MIN_SPLIT_ROWS else 0
        device = resolve_device(opts.device)

        if progress is None and self.verbose:
            progress = _log_progress
        # fork_rng: seeding for reproducibility must not disturb the caller's global RNG state.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            features = FeatureEncoder(pre).to(device)
            with torch.no_grad():
                x = features(torch.from_numpy(numeric).to(device), torch.from_numpy(categorical).to(device))
            cfg = size_network(features.n_features, opts.hidden_dims, opts.latent_dim, opts.dropout)
            aae = AAE(cfg, make_prior(opts.prior, cfg.latent_dim)).to(device)
            logger.info("training on %d rows (%d held out), %d columns -> %d features, network %s, "
                        "device %s", len(train_idx), held_out, features.n_columns, cfg.n_inputs,
                        cfg.to_dict(), device)
            index = torch.from_numpy(train_idx).to(device), torch.from_numpy(val_idx).to(device)
            with cpu_threads_for(aae, device):
                result = train_aae(aae, features, x[index[0]], x[index[1]], opts, progress)
        result.validation_rows = held_out  # 0 when calibrated on the training rows themselves
        marks.append(time.perf_counter())

        # reference_trim: the rows that look most anomalous to the networks stay out of the
        # neighbour part's reference rows and of calibration (a share of each set); or
        # reference_cluster: the clusters of such rows stay out of the reference rows.
        bank_rows, calibration_rows = train_idx, np.arange(len(val_idx))
        left_out = {"reference": 0, "calibration": 0}
        clusters = opts.reference_trim == 0 and opts.reference_cluster > 0 and opts.neighbor_weight > 0
        if opts.reference_trim > 0 or clusters:
            suspicion = _network_scores(ScoringGraph(features, aae, opts.latent_signal).eval(),
                                        numeric, categorical, val_idx, opts.latent_weight, device)
            if clusters:
                # only the suspects that sit among other suspects, apart from the ordinary rows: a
                # cluster of anomalies finds itself in the reference rows, a rare normal row
                # among ordinary ones stays (the reference rows' sample is drawn first)
                sample = sample_rows(train_idx, seed, opts.neighbor_rows)
                bank_rows = sample[~_clustered(x[torch.from_numpy(sample).to(device)], suspicion[sample],
                                               opts.reference_cluster, CLUSTER_MIN_SUSPECTS, CLUSTER_GAP)]
                left = len(sample)
            else:
                bank_rows = np.sort(train_idx[_least(suspicion[train_idx], opts.reference_trim)])
                left = len(train_idx)
                calibration_rows = np.sort(_least(suspicion[val_idx], opts.reference_trim))
            left_out = {"reference": left - len(bank_rows),
                        "calibration": len(val_idx) - len(calibration_rows)}
            logger.info("left out as suspect: %d of %d training rows from the reference rows, %d of "
                        "%d held-out rows from calibration", left_out["reference"], left,
                        left_out["calibration"], len(val_idx))
        neighbors = None
        if opts.neighbor_weight > 0:
            neighbors = Neighbors.from_training(aae.encoder.body, x, bank_rows, seed, opts.neighbor_rows,
                                                pre.feature_fold())
        marks.append(time.perf_counter())
        graph = ScoringGraph(features, aae, opts.latent_signal, neighbors=neighbors).eval()
        recon_raw, latent_raw, near_x, near_h, errors, near_columns = _batched(
            graph.raw_parts, numeric[val_idx], categorical[val_idx], device)
        kept = calibration_rows
        calibration = Calibration.fit(recon_raw[kept], latent_raw[kept], latent_log=graph.latent_log,
                                      latent_weight=opts.latent_weight,
                                      neighbor_raw=None if neighbors is None else (near_x[kept], near_h[kept]),
                                      neighbor_weight=opts.neighbor_weight,
                                      column_raw=(errors[kept], near_columns[kept]))
        graph.calibration = calibration
        # The held-out rows' scores from the raw parts already computed (a second pass through the
        # graph would repeat the networks and the neighbour search).
        with torch.no_grad():
            val_scores = graph.calibrated(*(torch.from_numpy(raw).to(device)
                                            for raw in (recon_raw, latent_raw, near_x, near_h)))[0]
        val_scores = val_scores.cpu().numpy()
        if not np.isfinite(val_scores).all():
            raise TrainingError("training ended with a model whose scores are not finite; try a "
                                "smaller --lr or --adv-weight")
        marks.append(time.perf_counter())
        state = FittedState(options=opts, seed=seed, input_columns=tuple(str(c) for c in df.columns),
                            preprocessor=pre, network=cfg, calibration=calibration,
                            threshold=self._threshold(val_scores, opts, source, warn=held_out > 0),
                            training=result,
                            named_columns=named)
        self._set_fitted(state, graph, device)
        #: Seconds spent in each step of the last fit (training includes preparing the features).
        self.fit_seconds_ = dict(zip(("train", "neighbors", "calibrate"), np.diff(marks).round(4).tolist()))
        #: Rows the last fit left out as suspect (``reference_trim``, ``reference_cluster``): training
        #: rows out of the neighbour part's reference rows, held-out rows out of calibration.
        self.rows_left_out_ = left_out
        return self

    @staticmethod
    def _threshold(val_scores: np.ndarray, opts: Options, source: str, warn: bool) -> float:
        """The threshold for ``opts.fpr`` from the held-out rows' scores, with a warning (``warn``)
        when they are too few to keep that promise (see :func:`aaedetect.scoring.threshold_for_fpr`)."""
        expect = threshold_shortfall(len(val_scores), opts.fpr)
        if expect is not None and warn:
            logger.warning("%s: the threshold for --fpr %g comes from %d held-out rows, too few for "
                           "that rate (it needs %d): it is their largest score, so expect about %.3f "
                           "of new normal rows above it; more rows, or a larger --validation-fraction, "
                           "bring it to --fpr", source, opts.fpr, len(val_scores),
                           math.ceil(1.0 / opts.fpr - 1.0), expect)
        return threshold_for_fpr(val_scores, opts.fpr)

    def _set_fitted(self, state: FittedState, graph: ScoringGraph, device: torch.device) -> None:
        """The fitted attributes, from ``fit`` or from a model directory (``load``)."""
        self.options_ = state.options
        self.seed_ = state.seed
        self.preprocessor_ = state.preprocessor
        self.net_config_ = state.network
        self.calibration_ = state.calibration
        self.training_ = state.training
        #: One record per completed epoch (copies: editing them does not change what ``save`` writes).
        self.history_ = [dict(record) for record in state.training.history]
        self.n_rows_ = {"train": state.training.rows, "validation": state.training.validation_rows}
        self.columns_ = state.input_columns
        self.n_features_in_ = len(state.input_columns)
        # scikit-learn's convention: feature_names_in_ only when fit saw string column names.
        if state.named_columns:
            self.feature_names_in_ = np.asarray(state.input_columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.threshold_ = state.threshold
        self.offset_ = -state.threshold
        self.graph_ = graph.to(device)
        self.device_ = device

    def _fitted_state(self) -> FittedState:
        return FittedState(options=self.options_, seed=self.seed_,
                           input_columns=self.columns_, preprocessor=self.preprocessor_,
                           network=self.net_config_, calibration=self.calibration_,
                           threshold=self.threshold_, training=self.training_,
                           named_columns=hasattr(self, "feature_names_in_"))

    # -------------------------------------------------------------- scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "graph_"):
            raise NotFittedError("this AAEDetector is not fitted yet: call fit() or aaedetect.load()")

    @property
    def preprocessor(self) -> TabularPreprocessor:
        self._check_fitted()
        return self.preprocessor_

    @property
    def threshold(self) -> float:
        self._check_fitted()
        return self.threshold_

    @property
    def calibration(self) -> Calibration:
        self._check_fitted()
        return self.calibration_

    @property
    def fitted_fpr(self) -> float:
        """The false-positive rate on held-out normal rows that ``threshold_`` was fitted for."""
        self._check_fitted()
        return self.options_.fpr

    def run_arrays(self, numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
        """The scoring graph on raw arrays, in batches: calibrated scores and per-column errors."""
        self._check_fitted()
        return dict(zip(OUTPUTS, _batched(self.graph_, numeric, categorical, self.device_)))

    def score_table(self, X, *, source: str = "data", explain: int = 0) -> pd.DataFrame:
        """``X`` with ``anomaly_score, recon_score, latent_score, neighbor_score, is_anomaly``
        appended (see :data:`aaedetect.scoring.SCORE_COLUMNS`); ``explain=K`` adds
        ``top_columns`` and ``top_shares``, the K columns that contribute most to each row's
        anomaly_score (see :meth:`FrameScorer.score_frame`).

        A DataFrame keeps its index and every column, the model's found by name; an array's
        columns are taken in the order ``fit`` saw them."""
        return self.score_frame(self._lenient(X, source), source=source, first_line=None, explain=explain)

    def explain_table(self, X, *, source: str = "data") -> pd.DataFrame:
        """Each row's shares of its anomaly_score by model column (rows sum to 1), as a table
        with the model's columns (see :func:`aaedetect.scoring.column_shares`)."""
        return super().explain_table(self._lenient(X, source), source=source)

    def _lenient(self, X, source: str) -> pd.DataFrame:
        """``X`` for the table methods: a DataFrame as it is (the model's columns are found by
        name), anything else through :meth:`_checked`."""
        self._check_fitted()
        return X if isinstance(X, pd.DataFrame) else self._checked(X, source)

    def score_samples(self, X) -> np.ndarray:
        """Normality of each row (scikit-learn convention: higher = more normal), shape (N,)."""
        self._check_fitted()
        numeric, categorical = self.preprocessor_.transform(self._checked(X, "X"), first_line=None)
        return -self.run_arrays(numeric, categorical)["anomaly_score"].astype(np.float64)

    def _checked(self, X, source: str) -> pd.DataFrame:
        """``X`` as the table ``fit`` saw, after scikit-learn's checks of its columns: their number,
        and their names and order when ``fit`` saw names. Positional input (an array, or a
        DataFrame when ``fit`` had an array) takes the fitted columns' names."""
        from sklearn.utils.validation import validate_data

        df, _ = _table(X, source, min_rows=1)
        try:
            # an array's width is all scikit-learn checks: an empty one of that width stands in
            validate_data(self, X if isinstance(X, pd.DataFrame) else np.empty((0, df.shape[1])),
                          reset=False, skip_check_array=True)
        except ValueError as exc:
            raise DataError(f"{source}: {exc}") from None
        if not (isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_")):
            df = df.set_axis(list(self.columns_), axis=1)
        return df

    def decision_function(self, X) -> np.ndarray:
        """``score_samples - offset_``: negative for rows flagged as anomalies."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 for normal rows, -1 for anomalies (scikit-learn convention)."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    # ---------------------------------------------------------- persistence
    def manifest(self) -> dict[str, Any]:
        """What ``save`` writes as ``manifest.json`` (without the file checksums)."""
        self._check_fitted()
        state = self._fitted_state().to_dict()
        neighbors = self.graph_.neighbors
        return {
            "format": artifacts.FORMAT_NAME,
            "format_version": artifacts.FORMAT_VERSION,
            "package_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **state,
            "neighbors": None if neighbors is None else {
                "rows": len(neighbors.x_bank), "k": neighbors.k,
                "hidden_axes": None if neighbors.h_axes is None else neighbors.h_axes.shape[1]},
            "training": {**state["training"], "device": str(self.device_),
                         "torch_version": torch.__version__, "python": platform.python_version()},
        }

    def save(self, path: str | os.PathLike, *, force: bool = False, onnx: bool = True,
             opset: int | None = None) -> None:
        """Write the model directory ``path`` atomically.

        ``force``: replace a model already there. ``onnx``: also write ``model.onnx``, the whole
        scoring graph for onnxruntime (checked against torch before anything is written).
        """
        self._check_fitted()
        manifest = self.manifest()
        files = {WEIGHTS: self._weights_bytes()}
        if onnx:
            files[ONNX_FILE], manifest["onnx"] = self.export_onnx(opset=opset)
        artifacts.write_model_dir(path, manifest, files, force=force)

    def export_onnx(self, *, opset: int | None = None) -> tuple[bytes, dict[str, Any]]:
        """(ONNX model bytes, its manifest entry): built from the weights, checked, and verified
        against the torch graph on probe rows."""
        from .export import check_parity, probe_rows
        from .onnx_graph import build, manifest_entry

        self._check_fitted()
        opset = opset or DEFAULT_OPSET
        data = build(self._fitted_state(), self._weight_arrays(), opset=opset)
        error = check_parity(self.graph_, data, *probe_rows(self.preprocessor_))
        return data, manifest_entry(self.preprocessor_, opset, error)

    def _weight_arrays(self) -> dict[str, np.ndarray]:
        """What ``weights.npz`` holds: the networks' state and the neighbour part's reference rows."""
        state = {k: v.detach().cpu().numpy() for k, v in self.graph_.aae.state_dict().items()}
        if self.graph_.neighbors is not None:
            state.update({NEIGHBOR_KEY + k: v.detach().cpu().numpy()
                          for k, v in self.graph_.neighbors.state_dict().items()})
        return state

    def _weights_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **self._weight_arrays())
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None,
             ignore: tuple[str, ...] = ()) -> "AAEDetector":
        """Rebuild a fitted detector from a model directory; nothing in it is unpickled or executed.

        Every file's checksum is verified, except for the files named in ``ignore``.
        """
        model_dir = artifacts.ModelDir(path, ignore=ignore)
        state = FittedState.from_manifest(model_dir.manifest, str(model_dir.path / artifacts.MANIFEST))
        weights = _read_weights(model_dir.read(WEIGHTS), model_dir.path / WEIGHTS)
        graph = _rebuild_graph(state, weights, model_dir.path / WEIGHTS)
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in state.options.to_dict().items()}
        if device is not None:
            params["device"] = device
        est = cls(**params)
        est._set_fitted(state, graph, resolve_device(params["device"]))
        return est


def _rebuild_graph(state: FittedState, weights: dict[str, torch.Tensor], where) -> ScoringGraph:
    """The scoring graph of a saved model: networks sized from the manifest, then its weights."""
    cfg = state.network
    features = FeatureEncoder(state.preprocessor)
    if features.n_features != cfg.n_inputs:
        raise ModelFormatError(f"{where}: the network takes {cfg.n_inputs} features, the "
                               f"manifest's columns give {features.n_features}")
    aae = AAE(cfg, make_prior(state.options.prior, cfg.latent_dim))
    banks = {k[len(NEIGHBOR_KEY):]: weights.pop(k) for k in list(weights) if k.startswith(NEIGHBOR_KEY)}
    try:
        aae.load_state_dict(weights, strict=True)
        neighbors = None
        if state.calibration.neighbor_weight > 0 or banks:
            x_bank, h_bank = banks.pop("x_bank"), banks.pop("h_bank")
            # models written before the hidden layer's axes have neither array (and full rows)
            axes = (banks.pop("h_mean"), banks.pop("h_axes")) if "h_axes" in banks else None
            if banks:
                raise ValueError(f"unknown arrays {', '.join(sorted(banks))}")
            # the hidden layer's width: its rows' (version 3), or its axes' (then the rows are projected)
            width = h_bank.shape[1:2] if axes is None else axes[1].shape[:1]
            if x_bank.ndim != 2 or h_bank.ndim != 2 or x_bank.shape[1] != cfg.n_inputs \
                    or width != (cfg.hidden[1],):
                raise ModelFormatError(f"{where}: the neighbour rows do not match the manifest's network")
            neighbors = Neighbors(x_bank, h_bank, state.preprocessor.feature_fold(), axes)
    except (KeyError, ValueError) as exc:
        raise ModelFormatError(f"{where}: the neighbour rows are missing or malformed ({exc})") from None
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelFormatError(f"{where}: does not match the manifest's network "
                               f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    return ScoringGraph(features, aae, state.options.latent_signal, state.calibration, neighbors).eval()


def _read_weights(data: bytes, where) -> dict[str, torch.Tensor]:
    """The state dict from ``weights.npz`` (see :func:`aaedetect.artifacts.read_arrays`)."""
    return {k: torch.from_numpy(v) for k, v in artifacts.read_arrays(data, where).items()}


class labelled_scorer:
    """A scikit-learn scorer that judges a detector on fixed labelled rows, whatever the fold.

    For ``GridSearchCV`` and ``cross_validate`` over normal training rows:
    ``GridSearchCV(AAEDetector(), grid, scoring=labelled_scorer(X_val, y_val))`` trains each
    candidate on the folds' normal rows and scores it by how well it ranks ``X_val``, whose
    ``y_val`` says 1 for an anomaly and 0 for a normal row (as ``aaedetect score --label``).
    ``metric``: ``"average_precision"`` (AUPRC, the default: it rewards the top of the ranking,
    where alerts are) or ``"roc_auc"``. Higher is better for both, as scikit-learn expects.
    """

    METRICS = ("average_precision", "roc_auc")

    def __init__(self, X, y, metric: str = "average_precision"):
        if metric not in self.METRICS:
            raise OptionError(f"metric {metric!r} is not one of {', '.join(self.METRICS)}")
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(X) or not np.isin(labels, (0, 1)).all() \
                or np.unique(labels).size != 2:
            raise DataError("y: labels must be 0 (normal) and 1 (anomaly), both present, one per row of X")
        self.X, self.y, self.metric = X, labels.astype(int), metric

    def __call__(self, estimator, X=None, y=None) -> float:
        from sklearn.metrics import average_precision_score, roc_auc_score

        anomaly = -estimator.score_samples(self.X)
        metric = average_precision_score if self.metric == "average_precision" else roc_auc_score
        return float(metric(self.y, anomaly))


def load(path: str | os.PathLike, *, device: str | None = None) -> AAEDetector:
    """Load a fitted :class:`AAEDetector` from a model directory written by ``save``/``aaedetect fit``."""
    return AAEDetector.load(path, device=device)


# ---------------------------------------------------------------------- helpers
def _table(X, source: str, *, min_rows: int) -> tuple[pd.DataFrame, bool]:
    """(``X`` as a DataFrame, whether its columns have names), after scikit-learn's input checks.

    Arrays and array-likes go through ``sklearn.utils.check_array`` (dense only, any dtype, NaN
    and inf allowed: the preprocessor handles them) and get the column names ``x0, x1, ...``; so
    do DataFrames whose column names are not all strings (scikit-learn's rule for feature names).
    Every failure is a :class:`DataError` (a ``ValueError``) naming ``source``.
    """
    from sklearn.utils.validation import check_array

    if isinstance(X, pd.DataFrame):
        sparse = [str(c) for c, dtype in X.dtypes.items() if isinstance(dtype, pd.SparseDtype)]
        if sparse:
            raise DataError(f"{source}: sparse columns are not supported ({', '.join(sparse)}); "
                            f"densify them with df.sparse.to_dense()")
        if X.shape[1] == 0:
            raise DataError(f"{source}: 0 feature(s) (shape={X.shape}) while a minimum of 1 is required")
        if len(X) < min_rows:
            raise DataError(f"{source}: {len(X)} row(s) (n_samples={len(X)}); "
                            f"at least {min_rows} are needed")
        if all(isinstance(c, str) for c in X.columns):
            return X, True
        return X.set_axis([f"x{i}" for i in range(X.shape[1])], axis=1), False
    try:
        array = check_array(X, accept_sparse=False, dtype=None, ensure_all_finite=False,
                            ensure_min_samples=min_rows, ensure_min_features=1, input_name="X")
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: {exc}") from None
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])]), False


def _network_scores(graph: ScoringGraph, numeric: np.ndarray, categorical: np.ndarray,
                    val_idx: np.ndarray, latent_weight: float, device: torch.device) -> np.ndarray:
    """Every row's anomaly score from the networks alone (reconstruction and latent parts,
    calibrated on the held-out rows ``val_idx``, combined as the anomaly score combines them)."""
    recon_raw, latent_raw = _batched(graph.raw_parts, numeric, categorical, device)[:2]
    cal = Calibration.fit(recon_raw[val_idx], latent_raw[val_idx], latent_log=graph.latent_log,
                          latent_weight=latent_weight)
    return cal.combine(cal.recon.z(recon_raw.astype(np.float64)),
                       cal.latent.z(latent_raw.astype(np.float64)), np.zeros(len(recon_raw)))


def _clustered(x: torch.Tensor, scores: np.ndarray, trim: float, min_suspect: int,
               gap: float = 0.0) -> np.ndarray:
    """Which rows of ``x`` (N, F, the encoded input) are suspects, among the ``floor(trim * N)``
    highest ``scores``, with at least ``min_suspect`` suspects among their ``NEIGHBORS`` nearest
    other rows (Euclidean distance in float64; ties: the earlier row is nearer) and, ``gap`` > 0,
    no row that is not a suspect within ``gap`` times their mean distance to those neighbours
    (a cluster apart from the rest, not the edge of the ordinary rows)."""
    n = len(scores)
    suspect = np.zeros(n, dtype=bool)
    suspect[np.argsort(scores, kind="stable")[n - int(trim * n):]] = True
    k = min(NEIGHBORS, n - 1)
    if k < 1 or not suspect.any():
        return np.zeros(n, dtype=bool)
    bank = x.double()
    rows = np.flatnonzero(suspect)
    counts = np.zeros(n, dtype=np.int64)
    apart = np.ones(n, dtype=bool)
    flags = torch.from_numpy(suspect).to(x.device)
    step = SCORE_BATCH_ROWS[x.device.type]
    with torch.no_grad():
        for start in range(0, len(rows), step):
            part = torch.from_numpy(rows[start:start + step]).to(x.device)
            dist = torch.cdist(bank[part], bank)
            dist[torch.arange(len(part), device=x.device), part] = math.inf  # not its own neighbour
            # stable sort: among equal distances the earlier row comes first
            ordered, nearest = torch.sort(dist, dim=1, stable=True)
            counts[rows[start:start + step]] = flags[nearest[:, :k]].sum(1).cpu().numpy()
            if gap > 0:
                ordinary = dist.masked_fill(flags.unsqueeze(0), math.inf).min(1).values
                apart[rows[start:start + step]] = (ordinary > gap * ordered[:, :k].mean(1)).cpu().numpy()
    return suspect & (counts >= min_suspect) & apart


def _least(scores: np.ndarray, trim: float) -> np.ndarray:
    """Positions of ``scores`` without the ``floor(trim * N)`` highest (ties: the later rows go)."""
    keep = len(scores) - int(trim * len(scores))
    return np.argsort(scores, kind="stable")[:keep]


@torch.no_grad()
def _batched(fn, numeric: np.ndarray, categorical: np.ndarray, device: torch.device) -> list[np.ndarray]:
    """``fn(num, cat)`` (the graph, or its ``raw_parts``) over batches of rows; each output
    concatenated as a numpy array."""
    batches = []
    rows = SCORE_BATCH_ROWS[device.type]
    for start in range(0, max(len(numeric), 1), rows):
        num = torch.from_numpy(np.ascontiguousarray(numeric[start:start + rows])).to(device)
        cat = torch.from_numpy(np.ascontiguousarray(categorical[start:start + rows])).to(device)
        batches.append([o.cpu().numpy() for o in fn(num, cat)])
    return [np.concatenate(outputs) for outputs in zip(*batches)]


def _log_progress(epoch: int, max_epochs: int, record: dict) -> None:
    logger.info("epoch %d/%d: recon %s, val %s, generator %s, disc %s (accuracy %s)", epoch, max_epochs,
                *(_number(record[k]) for k in ("recon_loss", "validation_loss", "generator_loss",
                                               "discriminator_loss", "discriminator_accuracy")))


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"

