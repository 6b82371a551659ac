"""How well anomaly scores match 0/1 labels (1 = anomaly): the numbers behind
``aaedetect evaluate`` and ``aaedetect score --label``. Pure functions of arrays (numpy and
scikit-learn); reading and scoring files is :mod:`aaedetect.pipeline`'s.

:func:`label_metrics` returns one dict with stable keys (``aaedetect evaluate --json`` prints it):

- ``rows``, ``anomalies``, ``normal``: counts of rows and of each label;
- ``auroc``, ``auprc``: ``roc_auc_score`` and ``average_precision_score`` of ``anomaly_score``;
  None when the labels hold one class only (both are undefined or meaningless then);
- ``model_threshold``: the model's flags (``anomaly_score > threshold``): ``threshold``,
  ``target_fpr`` (the false-positive rate it was fitted for on held-out rows), and
  :func:`flag_metrics`' ``flagged, precision, recall, f1, fpr, tn, fp, fn, tp``, where ``fpr`` is
  the share of the rows labelled normal that are flagged;
- ``best_threshold``: the same for the threshold that maximises F1 (rows with ``anomaly_score >=
  threshold`` flagged; the highest such threshold on ties), from scikit-learn's
  ``precision_recall_curve``; None when the labels hold one class only.

A rate whose denominator is 0 (precision with nothing flagged, recall without anomalies, the
false-positive rate without normal rows, F1 with neither anomalies nor flags) is None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def flag_metrics(y_true: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1, the false-positive rate and the confusion matrix of 0/1 flags
    against 0/1 labels (1 = anomaly)."""
    y = np.asarray(y_true).astype(bool)
    f = np.asarray(flagged).astype(bool)
    tp, fp = int((y & f).sum()), int((~y & f).sum())
    fn, tn = int((y & ~f).sum()), int((~y & ~f).sum())
    return {"flagged": tp + fp, "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn), "fpr": _ratio(fp, fp + tn),
            "tn": tn, "fp": fp, "fn": fn, "tp": tp}


def best_f1_threshold(y_true: np.ndarray, anomaly_score: np.ndarray) -> float:
    """The threshold (one of the scores) that maximises F1 when rows with ``anomaly_score >=
    threshold`` are flagged; the highest such threshold on ties. Both classes must be present."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, anomaly_score)
    precision, recall = precision[:len(thresholds)], recall[:len(thresholds)]
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator),
                   where=denominator > 0)
    return float(thresholds[len(f1) - 1 - int(np.argmax(f1[::-1]))])  # thresholds increase


def label_metrics(y_true: np.ndarray, anomaly_score: np.ndarray, threshold: float, *,
                  is_anomaly: np.ndarray | None = None, target_fpr: float | None = None) -> dict[str, Any]:
    """Every metric of ``anomaly_score`` against the 0/1 labels ``y_true`` (see the module's
    docstring for the keys). ``is_anomaly``: the model's flags, as scored (default:
    ``anomaly_score > threshold``); ``target_fpr``: the rate the threshold was fitted for."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y_true).astype(np.int8)
    scores = np.asarray(anomaly_score, dtype=np.float64)
    flags = scores > threshold if is_anomaly is None else np.asarray(is_anomaly).astype(bool)
    anomalies = int(y.sum())
    both = 0 < anomalies < len(y)
    out: dict[str, Any] = {
        "rows": int(len(y)), "anomalies": anomalies, "normal": int(len(y) - anomalies),
        "auroc": float(roc_auc_score(y, scores)) if both else None,
        "auprc": float(average_precision_score(y, scores)) if both else None,
        "model_threshold": {"threshold": float(threshold), "target_fpr": target_fpr,
                            **flag_metrics(y, flags)},
        "best_threshold": None,
    }
    if both:
        best = best_f1_threshold(y, scores)
        out["best_threshold"] = {"threshold": best, **flag_metrics(y, scores >= best)}
    return out
