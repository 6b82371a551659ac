#!/usr/bin/env python
"""Detection quality of aaedetect next to the detectors a user would pick instead.

Two protocols (``--protocol``), every method on the same rows:

- ``novelty`` (DAGMM, GOAD, NeuTraL-AD; the default): for each dataset and seed, train on a random
  half of the normal rows (label 0) and test on the other half plus every anomaly (label 1).
- ``unsupervised`` (ADBench's unsupervised setting): fit on every row, anomalies included, and
  score those same rows. Each detector reports its honest scores of its own training rows: a
  nearest-neighbour method leaves the row itself out (PyOD's ``decision_scores_``, scikit-learn's
  ``negative_outlier_factor_``), as aaedetect's ``score`` does for its reference rows.

Reported per dataset, method and seed: AUROC, AUPRC (average precision), F1 with the top-k test
rows flagged (k = number of anomalies in the test set), fit and score seconds.

Usage (from the repository root; PyOD is a benchmark-only dependency)::

    pip install -r benchmarks/requirements.txt
    python benchmarks/quality.py --data ../shared/datasets --seeds 0,1,2
    python benchmarks/quality.py --protocol unsupervised
    python benchmarks/quality.py --datasets thyroid,cardio --methods aaedetect,iforest,knn
    python benchmarks/quality.py --datasets thyroid --aae-options 'max_epochs=50,hidden_dims=(64,16)'
    python benchmarks/quality.py --variants 'mmd:regularizer=mmd;mix:prior=mixture:4' \
        --json results.json

Datasets are gzipped CSVs (feature columns, then ``label``) in ``--data DIR`` or $AAEDETECT_DATA;
by default every ``*.csv.gz`` there except kddcup99_10pct, which runs only when named. Its label is
flipped (DAGMM protocol: "normal" traffic is the anomaly class), and OCSVM/LOF/KNN train on a
subsample of at most ``--peer-train-cap`` rows there (reported in the table's note column).

Peers get what a careful user would give them: numeric columns median-imputed and standardised,
string columns one-hot encoded, both fitted on the training split. aaedetect gets the raw
DataFrame. Tables go to stdout (markdown), progress lines to stderr. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import OneClassSVM

from aaedetect.config import defaults

SKIP_BY_DEFAULT = ("kddcup99_10pct",)
#: aaedetect's score parts, reported beside its anomaly_score (same fit, other output column).
SCORE_PARTS = ("recon", "latent", "neighbor")
#: aaedetect's 0/1 flags among its outputs (not a score: they give the false-positive rate).
FLAGS = "is_anomaly"
#: Datasets evaluated with the label flipped (DAGMM protocol for KDDCUP99).
FLIPPED = ("kddcup99_10pct",)
PEERS = ("iforest", "ocsvm", "lof", "knn", "ae", "vae", "deepsvdd")
PROTOCOLS = ("novelty", "unsupervised")
#: Peers with honest scores of their own training rows (a row is not its own neighbour), and the
#: attribute, as (name, sign), that holds them; the others score their training rows like any.
TRAINING_SCORES = {"lof": ("negative_outlier_factor_", -1.0), "knn": ("decision_scores_", 1.0),
                   "ae": ("decision_scores_", 1.0), "vae": ("decision_scores_", 1.0),
                   "deepsvdd": ("decision_scores_", 1.0)}
METHODS = ("aaedetect",) + PEERS
#: Peers whose cost grows with the square of the training rows: these train on a subsample.
SLOW_PEERS = ("ocsvm", "lof", "knn")
DEFAULT_PEER_TRAIN_CAP = 25_000
#: PyOD 3.6's own default epochs (AutoEncoder epoch_num, VAE epoch_num, DeepSVDD epochs).
PYOD_EPOCHS = {"ae": 10, "vae": 30, "deepsvdd": 100}
METRICS = ("auroc", "auprc", "f1")


def split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside brackets, so ``a=(1,2),b=3`` gives two items."""
    parts = re.split(re.escape(sep) + r"(?![^([]*[)\]])", text or "")
    return [p.strip() for p in parts if p.strip()]


def parse_options(text: str) -> dict:
    """``'key=value,key=value'`` to a dict; values are Python literals where they parse."""
    options = {}
    for item in split_top(text, ","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SystemExit(f"error: option {item!r} is not key=value")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return options


def parse_variants(text: str) -> list[tuple[str, dict]]:
    """``'name:key=value,...;name2:...'`` to ``[(name, options), ...]``."""
    variants = []
    for item in split_top(text, ";"):
        name, colon, rest = item.partition(":")
        if not colon or not name.strip():
            raise SystemExit(f"error: variant {item!r} is not name:key=value,...")
        variants.append((name.strip(), parse_options(rest)))
    return variants


def load_dataset(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature columns and 0/1 labels (1 = anomaly) of one CSV, flipped for FLIPPED datasets."""
    df = pd.read_csv(path)
    if "label" not in df.columns:
        raise ValueError(f"{path}: no 'label' column")
    y = df.pop("label").to_numpy().astype(int)
    if dataset_name(path) in FLIPPED:
        y = 1 - y
    return df, y


def dataset_name(path: Path) -> str:
    """``thyroid`` for ``.../thyroid.csv.gz``."""
    return path.name.removesuffix(".gz").removesuffix(".csv")


def novelty_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train on a random half of the normal rows; test on the rest plus all anomalies (shuffled,
    so that ties in the scores are not broken in label order)."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    half = len(normal) // 2
    test = rng.permutation(np.concatenate([normal[half:], np.flatnonzero(y == 1)]))
    return np.sort(normal[:half]), test


def unsupervised_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train on every row and test on the same rows, in one shuffled order (so that ties in the
    scores are not broken in label order); the two index arrays are equal."""
    order = np.random.default_rng(seed).permutation(len(y))
    return order, order


SPLITS = {"novelty": novelty_split, "unsupervised": unsupervised_split}


def peer_features(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Median-impute and standardise numeric columns, one-hot string columns; fit on train."""
    numeric = [c for c in train.columns if pd.api.types.is_numeric_dtype(train[c])]
    strings = [c for c in train.columns if c not in numeric]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("str", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)), strings),
    ])
    as_text = {c: object for c in strings}  # one dtype (str or object) for imputer and encoder
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found unknown categories")
        x_train = prep.fit_transform(train.astype(as_text))
        x_test = prep.transform(test.astype(as_text))
    return x_train.astype(np.float64), x_test.astype(np.float64)


def make_peer(name: str, seed: int, n_features: int, epochs: int | None):
    """A fresh peer detector and a function giving its anomaly scores (higher = more anomalous).

    PyOD deep models get ``preprocessing=False``: the inputs are already standardised, and PyOD's
    own scaling divides by ``std + 1e-8``, which blows up columns constant in the training half.
    """
    def negated(model, x):
        return -model.score_samples(x)

    def pyod(model, x):
        return model.decision_function(x)

    if name == "iforest":
        return IsolationForest(random_state=seed), negated
    if name == "ocsvm":
        return OneClassSVM(), negated
    if name == "lof":
        return LocalOutlierFactor(novelty=True), negated
    if name == "knn":
        from pyod.models.knn import KNN
        return KNN(), pyod
    if name == "ae":
        from pyod.models.auto_encoder import AutoEncoder
        return AutoEncoder(epoch_num=epochs or PYOD_EPOCHS["ae"], preprocessing=False,
                           random_state=seed, verbose=0), pyod
    if name == "vae":
        from pyod.models.vae import VAE
        return VAE(epoch_num=epochs or PYOD_EPOCHS["vae"], preprocessing=False,
                   random_state=seed, verbose=0), pyod
    if name == "deepsvdd":
        from pyod.models.deep_svdd import DeepSVDD
        return DeepSVDD(n_features=n_features, epochs=epochs or PYOD_EPOCHS["deepsvdd"],
                        preprocessing=False, random_state=seed, verbose=0), pyod
    raise ValueError(f"unknown method {name!r}")


def fit_and_score(kind: str, options: dict, seed: int, train, test, epochs: int | None,
                  own_rows: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], float, float]:
    """Fit one method, score the test rows (higher = more anomalous): scores by part, fit and
    score seconds. The part "" is the method's score; aaedetect adds its score parts.

    aaedetect takes the raw training and test frames, the peers preprocessed arrays.
    ``own_rows`` (unsupervised protocol): for each training row, its position among the test
    rows; peers with honest training scores (``TRAINING_SCORES``) report those for these rows.
    """
    if kind == "aaedetect":
        from aaedetect import AAEDetector
        model = AAEDetector(**{**options, "random_state": seed})

        def score(m, x):
            out = m.score_table(x)
            return {"": out["anomaly_score"], **{p: out[f"{p}_score"] for p in SCORE_PARTS},
                    FLAGS: out["is_anomaly"]}
    else:
        model, peer_score = make_peer(kind, seed, train.shape[1], epochs)

        def score(m, x):
            return {"": peer_score(m, x)}
    start = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    scores = {part: np.asarray(v, dtype=np.float64).ravel() for part, v in score(model, test).items()}
    if own_rows is not None and kind in TRAINING_SCORES:
        name, sign = TRAINING_SCORES[kind]
        scores[""][own_rows] = sign * np.asarray(getattr(model, name), dtype=np.float64)
    return scores, fitted - start, time.perf_counter() - fitted


def quality(y: np.ndarray, scores: np.ndarray) -> dict:
    """AUROC, AUPRC and F1 with the k highest scores flagged, k = number of anomalies."""
    if len(scores) != len(y) or not np.all(np.isfinite(scores)):
        raise ValueError(f"{np.sum(~np.isfinite(scores))} non-finite scores of {len(scores)}")
    k = int(y.sum())
    top = np.argsort(-scores, kind="stable")[:k]
    f1 = float(y[top].sum()) / k  # k flagged, k true: precision = recall = F1
    return {"auroc": float(roc_auc_score(y, scores)),
            "auprc": float(average_precision_score(y, scores)), "f1": f1}


def run(args, datasets: list[Path], methods: list[tuple[str, str, dict]]) -> list[dict]:
    """Every (dataset, seed, method); one record each, failures included. Ctrl-C stops early."""
    records: list[dict] = []
    started = time.perf_counter()
    try:
        for path in datasets:
            frame, y = load_dataset(path)
            for seed in args.seeds:
                for rec in run_split(args, dataset_name(path), frame, y, seed, methods):
                    records.append(rec)
                    progress(rec, time.perf_counter() - started)
    except KeyboardInterrupt:
        print("interrupted: reporting the results so far", file=sys.stderr)
    return records


def run_split(args, name: str, frame: pd.DataFrame, y: np.ndarray, seed: int, methods):
    """Yield one record per method for one dataset and seed, all on the same split."""
    train_idx, test_idx = SPLITS[args.protocol](y, seed)
    train = frame.iloc[train_idx].reset_index(drop=True)
    test = frame.iloc[test_idx].reset_index(drop=True)
    y_test = y[test_idx]
    cap = args.peer_train_cap
    sub = (np.sort(np.random.default_rng([seed, 1]).choice(len(train), cap, replace=False))
           if cap and len(train) > cap else None)
    features: list = []  # the peers' arrays, built once on first use
    for label, kind, options in methods:
        rec = {"dataset": name, "method": label, "seed": seed, "n_train": len(train),
               "n_test": len(test), "n_anomalies": int(y_test.sum()), "note": ""}
        if kind == "aaedetect":
            rec["options"] = options
        parts: dict[str, dict] = {}
        # Unsupervised: the training rows are the test rows, in the same order.
        own_rows = np.arange(len(train)) if args.protocol == "unsupervised" else None
        try:
            if kind == "aaedetect":
                x_train, x_test = train, test
            else:
                features = features or list(peer_features(train, test))
                x_train, x_test = features
                if kind in SLOW_PEERS and sub is not None:
                    x_train = x_train[sub]
                    own_rows = sub if own_rows is not None else None
                    rec["n_train"] = len(sub)
                    rec["note"] = f"train subsampled to {len(sub)} of {len(train)} rows"
            scores, fit_s, score_s = fit_and_score(kind, options, seed, x_train, x_test,
                                                   args.pyod_epochs, own_rows)
            flags = scores.pop(FLAGS, None)
            rec.update(quality(y_test, scores.pop("")), fit_s=fit_s, score_s=score_s, status="ok")
            if flags is not None and (y_test == 0).any():  # aaedetect: its own threshold's promise
                rec.update(fpr=float(flags[y_test == 0].mean()), target_fpr=float(options.get("fpr", defaults()["fpr"])))
            if label == "aaedetect":  # the default's parts, from the same fit
                parts = {f"{label}[{p}]": {**{k: v for k, v in rec.items() if k not in ("fpr", "target_fpr")},
                                           "method": f"{label}[{p}]", "part": p,
                                           **quality(y_test, v)} for p, v in scores.items()}
        except Exception as exc:  # noqa: BLE001 - a failing method must not stop the run
            rec.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        yield rec
        yield from parts.values()


def progress(rec: dict, elapsed: float) -> None:
    """One stderr line per finished (dataset, seed, method)."""
    head = f"[{elapsed:7.1f}s] {rec['dataset']} seed={rec['seed']} {rec['method']}:"
    if rec["status"] == "ok":
        line = (f"{head} AUROC {rec['auroc']:.3f}  AUPRC {rec['auprc']:.3f}  F1 {rec['f1']:.3f}  "
                f"fit {rec['fit_s']:.1f}s  score {rec['score_s']:.2f}s")
    else:
        line = f"{head} FAILED {rec['error']}"
    print(line, file=sys.stderr, flush=True)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A markdown table with aligned columns: text columns left-aligned, numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    left = [i == 0 or h == "note" for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) if lft else str(c).rjust(w)
                                 for c, w, lft in zip(cells, widths, left, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) if lft else "-" * (w + 1) + ":"
                          for w, lft in zip(widths, left, strict=True)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in rows])


def mean_std(values: list[float]) -> str:
    """``0.912 ± 0.013`` (sample std over seeds), or the mean alone for one seed."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def _signed(values: list[float]) -> str:
    """``+0.012 ± 0.004`` (sample std over seeds), or the signed mean alone for one seed."""
    if len(values) == 1:
        return f"{values[0]:+.3f}"
    return f"{np.mean(values):+.3f} ± {np.std(values, ddof=1):.3f}"


def dataset_table(records: list[dict], dataset: str, labels: list[str]) -> str:
    """Method rows for one dataset: mean ± std over seeds, mean seconds, notes and failures."""
    rows = []
    for label in labels:
        recs = [r for r in records if r["dataset"] == dataset and r["method"] == label]
        ok = [r for r in recs if r["status"] == "ok"]
        notes = sorted({r["note"] for r in recs if r["note"]})
        errors = sorted({r["error"] for r in recs if r["status"] != "ok"})
        if errors:
            notes.append(f"FAILED {len(recs) - len(ok)}/{len(recs)}: " + "; ".join(errors)[:160])
        cells = ([mean_std([r[m] for r in ok]) for m in METRICS]
                 + [f"{np.mean([r[k] for r in ok]):.2f}" for k in ("fit_s", "score_s")]
                 if ok else ["-"] * 5)
        rows.append([label, f"{len(ok)}/{len(recs)}"] + cells + ["; ".join(notes)])
    return table(["method", "seeds", "AUROC", "AUPRC", "F1", "fit s", "score s", "note"], rows)


def summary(records: list[dict], datasets: list[str], labels: list[str]) -> tuple[str, dict]:
    """Mean metrics across datasets and mean AUROC rank (1 = best; ranked among the methods with
    at least one successful seed on that dataset, ties averaged)."""
    ok = pd.DataFrame([r for r in records if r["status"] == "ok"], columns=[
        "dataset", "method", "seed", *METRICS])
    per_ds = ok.groupby(["dataset", "method"])[list(METRICS)].mean()
    auroc = per_ds["auroc"].unstack("method")
    # The field: the peers and aaedetect's default. A variant or score part is ranked as if it
    # stood in for the default, so that adding rows never changes anyone else's rank.
    field = [m for m in auroc.columns if m in PEERS or m == "aaedetect"]
    rows, out = [], {}
    for label in labels:
        if label not in per_ds.index.get_level_values("method"):
            rows.append([label, f"0/{len(datasets)}", "-", "-", "-", "-"])
            continue
        mine = per_ds.xs(label, level="method")
        contenders = auroc[field if label in field else
                           [m for m in field if m != "aaedetect"] + [label]]
        rank = contenders.rank(axis=1, ascending=False, method="average")[label].dropna().mean()
        out[label] = {**{m: float(mine[m].mean()) for m in METRICS}, "rank": float(rank),
                      "datasets": len(mine)}
        rows.append([label, f"{len(mine)}/{len(datasets)}"]
                    + [f"{mine[m].mean():.3f}" for m in METRICS] + [f"{rank:.2f}"])
    rows.sort(key=lambda r: float(r[-1]) if r[-1] != "-" else float("inf"))
    return table(["method", "datasets", "mean AUROC", "mean AUPRC", "mean F1", "mean rank"],
                 rows), out


def paired_to_best_peer(records: list[dict], label: str = "aaedetect", metric: str = "auroc") -> tuple[str, dict]:
    """Per dataset: the peer with the best mean ``metric`` there, and ``label``'s difference to it
    seed by seed (the same split for both), as mean ± sample std over seeds; then the mean of
    the per-dataset differences with its standard error across datasets. A markdown table and
    the numbers; an empty table when no peer ran."""
    ok = pd.DataFrame([r for r in records if r["status"] == "ok"])
    if ok.empty or label not in set(ok["method"]) or not set(ok["method"]) & set(PEERS):
        return "", {}
    rows, diffs = [], {}
    for dataset, part in ok.groupby("dataset", sort=False):
        peers = part[part["method"].isin(PEERS)]
        mine = part[part["method"] == label].set_index("seed")[metric]
        if peers.empty or mine.empty:
            continue
        best = peers.groupby("method")[metric].mean().idxmax()
        theirs = peers[peers["method"] == best].set_index("seed")[metric]
        paired = (mine - theirs).dropna()
        if paired.empty:
            continue
        diffs[dataset] = {"best_peer": best, "mean": float(paired.mean()),
                          "std": float(paired.std(ddof=1)) if len(paired) > 1 else 0.0, "seeds": len(paired)}
        rows.append([dataset, best, f"{theirs.mean():.3f}", f"{mine.mean():.3f}",
                     _signed(paired.tolist()), str(len(paired))])
    if not diffs:
        return "", {}
    means = np.array([d["mean"] for d in diffs.values()])
    se = float(means.std(ddof=1) / np.sqrt(len(means))) if len(means) > 1 else 0.0
    overall = {"mean": float(means.mean()), "se": se, "datasets": len(means),
               "ahead": int((means > 0).sum()), "per_dataset": diffs}
    rows.append(["mean over datasets", "", "", "", f"{means.mean():+.3f} (se {se:.3f})",
                 f"ahead on {overall['ahead']}/{len(means)}"])
    text = (f"{label} against the best peer on each dataset ({metric.upper()}, paired by seed: the "
            f"same split for both):\n\n"
            + table(["dataset", "best peer", "peer", label, f"{label} - peer, mean ± std over seeds", "seeds"], rows))
    return text, overall


def fpr_table(records: list[dict], labels: list[str], protocol: str) -> str:
    """Per aaedetect configuration: the false-positive rate at the model's own threshold on the
    test's normal rows (mean over seeds per dataset; then the median, range and the datasets
    within 0.005-0.015 across datasets) beside the rate it was fitted for."""
    rows = []
    for label in labels:
        recs = pd.DataFrame([r for r in records if r["method"] == label and r["status"] == "ok" and "fpr" in r])
        if recs.empty:
            continue
        per_ds = recs.groupby("dataset")["fpr"].mean()
        within = int(((per_ds >= 0.005) & (per_ds <= 0.015)).sum())
        rows.append([label, f"{recs['target_fpr'].iloc[0]:.3f}", f"{per_ds.median():.4f}",
                     f"{per_ds.min():.4f} - {per_ds.max():.4f}", f"{within}/{len(per_ds)}",
                     ", ".join(f"{d} {v:.3f}" for d, v in per_ds.items())])
    if not rows:
        return ""
    seen = "unseen normal rows" if protocol == "novelty" else "normal rows it was fitted on"
    return (f"false-positive rate at the model's own threshold, on the test's {seen}:\n\n"
            + table(["method", "fitted for", "median", "range", "in 0.005-0.015", "per dataset"], rows))


def environment() -> dict:
    """Versions and thread settings (left at their defaults), printed and saved with the results."""
    try:
        from importlib.metadata import version
        pyod_version = version("pyod")
    except Exception:  # noqa: BLE001
        pyod_version = "not installed"
    import aaedetect
    return {"aaedetect": aaedetect.__version__, "torch": torch.__version__,
            "sklearn": sklearn.__version__, "pyod": pyod_version, "numpy": np.__version__,
            "pandas": pd.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
            "load_average": round(os.getloadavg()[0], 2)}


def show_aaedetect_log(verbose: bool) -> None:
    """aaedetect's warnings (e.g. "column 'f6' left out: constant") on stderr, each text once;
    with ``verbose`` (``--aae-options verbose=1``) its info lines too, one per epoch."""
    seen: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        new = record.getMessage() not in seen
        seen.add(record.getMessage())
        return new

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("aaedetect %(levelname)s: %(message)s"))
    handler.addFilter(first_time)
    logger = logging.getLogger("aaedetect")
    logger.addHandler(handler)
    logger.propagate = False
    if verbose:
        logger.setLevel(logging.INFO)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("AAEDETECT_DATA"),
                   help="directory of *.csv.gz datasets [default: $AAEDETECT_DATA]")
    p.add_argument("--datasets", help="comma list of dataset names [default: all but "
                   + ", ".join(SKIP_BY_DEFAULT) + "]")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds [default: 0,1,2]")
    p.add_argument("--protocol", choices=PROTOCOLS, default="novelty",
                   help="novelty: train on half the normal rows, test on the rest and the "
                   "anomalies; unsupervised: fit on every row, score the same rows [default: novelty]")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma list from " + ", ".join(METHODS) + " [default: all]")
    p.add_argument("--aae-options", default="",
                   help="options for every aaedetect run, e.g. 'max_epochs=50,hidden_dims=(64,16)'")
    p.add_argument("--variants", default="", help="extra aaedetect rows: "
                   "'name:key=value,...;name2:...' (each on top of --aae-options)")
    p.add_argument("--pyod-epochs", type=int, default=None,
                   help="epochs for PyOD ae/vae/deepsvdd [default: PyOD's, "
                   + ", ".join(f"{k} {v}" for k, v in PYOD_EPOCHS.items()) + "]")
    p.add_argument("--peer-train-cap", type=int, default=DEFAULT_PEER_TRAIN_CAP,
                   help="most training rows for " + "/".join(SLOW_PEERS)
                   + f" (0: no cap) [default: {DEFAULT_PEER_TRAIN_CAP}]")
    p.add_argument("--json", help="write every per-seed result (and the settings) to this file")
    args = p.parse_args(argv)
    if not args.data:
        p.error("give --data DIR or set AAEDETECT_DATA")
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    return args


def main(argv=None) -> int:
    """Run the benchmark and print the tables."""
    args = parse_args(argv)
    data = Path(args.data)
    names = ([n.strip() for n in args.datasets.split(",") if n.strip()] if args.datasets else
             [dataset_name(p) for p in sorted(data.glob("*.csv.gz"))
              if dataset_name(p) not in SKIP_BY_DEFAULT])
    missing = [n for n in names if not (data / f"{n}.csv.gz").is_file()]
    if missing or not names:
        raise SystemExit(f"error: no dataset {', '.join(missing) or '*.csv.gz'} in {data}")
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise SystemExit(f"error: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    aae_options = parse_options(args.aae_options)
    variants = [(f"aaedetect[{n}]", "aaedetect", {**aae_options, **o})
                for n, o in parse_variants(args.variants)]
    methods = ([("aaedetect", "aaedetect", aae_options)] if "aaedetect" in chosen else []) + variants
    methods += [(m, m, {}) for m in PEERS if m in chosen]
    from aaedetect import AAEDetector
    for label, kind, options in methods:  # unknown option names fail here, not once per run
        if kind == "aaedetect":
            try:
                AAEDetector(**options)
            except TypeError as exc:
                raise SystemExit(f"error: {label}: {exc}") from None

    show_aaedetect_log(any(o.get("verbose") for _, kind, o in methods if kind == "aaedetect"))
    env = environment()
    print("# aaedetect quality benchmark\n")
    print(", ".join(f"{k} {v}" for k, v in env.items()))
    described = {"novelty": "train on half the normal rows, test on the other half + all anomalies",
                 "unsupervised": "fit on every row (anomalies included), score the same rows"}
    print(f"data {data}; seeds {args.seeds}; protocol {args.protocol}: {described[args.protocol]}; "
          f"F1 at the true anomaly count")
    for label, kind, options in methods:
        if kind == "aaedetect":
            print(f"{label}: {options or 'defaults'} (random_state = seed)")
    print(f"PyOD epochs: {args.pyod_epochs or PYOD_EPOCHS}; train cap for "
          f"{'/'.join(SLOW_PEERS)}: {args.peer_train_cap or 'none'}")

    paths = [data / f"{n}.csv.gz" for n in names]
    started = time.perf_counter()
    records = run(args, paths, methods)
    labels = [label for label, _, _ in methods]
    if "aaedetect" in labels:
        at = labels.index("aaedetect") + 1
        labels[at:at] = [f"aaedetect[{p}]" for p in SCORE_PARTS]
    done = [n for n in names if any(r["dataset"] == n for r in records)]
    for name in done:
        print(f"\n## {name}" + (" (label flipped: DAGMM protocol)" if name in FLIPPED else "") + "\n")
        print(dataset_table(records, name, labels))
    text, means = summary(records, done, labels)
    print(f"\n## summary over {len(done)} datasets (rank by mean AUROC per dataset, 1 = best)\n")
    print(text)
    paired, paired_numbers = paired_to_best_peer(records)
    if paired:
        print(f"\n{paired}")
        means["paired_to_best_peer"] = paired_numbers
    fprs = fpr_table(records, labels, args.protocol)
    if fprs:
        print(f"\n{fprs}")
    env["load_average_end"] = round(os.getloadavg()[0], 2)
    print(f"\ntotal {time.perf_counter() - started:.0f}s; load average now "
          f"{env['load_average_end']} (other work on the machine slows torch badly)", file=sys.stderr)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        Path(args.json).write_text(json.dumps({"environment": env, "settings": settings,
                                               "summary": means, "results": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
