#!/usr/bin/env python
"""Candidate score parts measured against the defaults on the same fits: one default fit per
dataset, seed and protocol (quality.py's splits), then each candidate computed from that fit's
raw parts on the held-out normal rows (where calibration is fitted) and on the test rows.

    python benchmarks/parts_study.py --data ../shared/datasets --cache /tmp/parts
    python benchmarks/parts_study.py --datasets kddcup99_10pct --seeds 0 --protocols novelty

The candidates (each in place of, or added to, the defaults' ``anomaly_score``):

- ``recon/column``: the reconstruction part with each column's error divided by its median on
  the held-out rows (floored at a tenth of the columns' mean median), so that a column that is
  always hard to reconstruct weighs less; calibrated like the reconstruction part.
- ``+iforest W``: scikit-learn's IsolationForest (defaults, on quality.py's peer features of
  the training rows), its score as a robust z-score on the training rows, capped at 20, times W.
- ``+pattern W``: how unusual the row's combination of parts is. The four calibrated parts
  (reconstruction, latent, both neighbour spaces; each clipped to +-20) of the held-out rows give
  a mean and a covariance (Ledoit-Wolf shrinkage); the row's Mahalanobis distance to them, times
  W. A row whose parts are each ordinary but disagree as normal rows' parts never do (a clustered
  anomaly: near its fellows, so a small neighbour part, with an unusual code) scores high.

The held-out rows' raw parts are taken by wrapping ``Calibration.fit`` (they are not kept on the
model). Thresholds are not studied here: a candidate fitted on the held-out rows also needs
scores for them that it was not fitted on before it can set a threshold. ``--cache DIR`` keeps
each fit's arrays (``.npz``) so that a second run only recomputes the candidates.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.ensemble import IsolationForest

from aaedetect import scoring
from aaedetect.config import PART_CAP, Options
from aaedetect.scoring import PartCalibration, robust_location_scale

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (the splits, dataset loading and metrics of the quality benchmark)
import studies  # noqa: E402

#: The raw parts kept for the held-out rows (``held_*``) and the test rows (``test_*``): the
#: first four outputs of ``ScoringGraph.raw_parts`` and its per-column reconstruction errors.
RAW_PARTS = ("recon", "latent", "near_x", "near_h", "errors")
IFOREST_WEIGHTS = (0.5, 1.0)
PATTERN_WEIGHTS = (0.75, 1.0, 1.25)


def fit_arrays(data: Path, name: str, protocol: str, seed: int, cache: Path | None,
               options: dict | None = None) -> dict[str, np.ndarray]:
    """Raw parts of the held-out rows (``held_*``) and of the test rows (``test_*``), the test
    labels, the model's anomaly scores and IsolationForest's z-score of the test rows, for one
    default fit (``options`` on top of the defaults)."""
    path = cache / f"{protocol}-{name}-{seed}.npz" if cache else None
    if path is not None and path.is_file():
        return dict(np.load(path))
    from aaedetect import AAEDetector
    from aaedetect.detector import _batched

    frame, y = quality.load_dataset(data / f"{name}.csv.gz")
    train_idx, test_idx = quality.SPLITS[protocol](y, seed)
    train, test = (frame.iloc[i].reset_index(drop=True) for i in (train_idx, test_idx))
    held: dict[str, np.ndarray] = {}
    fit = scoring.Calibration.fit.__func__

    def capture(cls, recon_raw, latent_raw, **kw):
        held.update(zip(RAW_PARTS, (recon_raw, latent_raw, *kw["neighbor_raw"], kw["column_raw"][0])))
        return fit(cls, recon_raw, latent_raw, **kw)

    scoring.Calibration.fit = classmethod(capture)
    try:
        model = AAEDetector(**{**(options or {}), "random_state": seed}).fit(train)
    finally:
        scoring.Calibration.fit = classmethod(fit)
    numeric, categorical = model.preprocessor_.transform(test)[:2]
    recon, latent, near_x, near_h, errors, _ = _batched(model.graph_.raw_parts, numeric, categorical,
                                                        model.device_)
    x_train, x_test = quality.peer_features(train, test)
    forest = IsolationForest(random_state=seed).fit(x_train)
    center, scale = robust_location_scale(-forest.score_samples(x_train), 1e-6)
    out = {"y": y[test_idx], "anomaly": model.score_table(test)["anomaly_score"].to_numpy(),
           "iforest_z": (-forest.score_samples(x_test) - center) / scale,
           **{f"held_{k}": np.asarray(v) for k, v in held.items()},
           **{f"test_{k}": np.asarray(v) for k, v in zip(RAW_PARTS, (recon, latent, near_x, near_h, errors))}}
    if path is not None:
        np.savez(path, **out)
    return out


def candidates(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each candidate's anomaly scores for the test rows (and the defaults', recomputed with the
    package's own calibration and combination)."""
    opts = Options()
    cal = scoring.Calibration.fit(a["held_recon"], a["held_latent"], latent_log=opts.latent_signal == "discriminator",
                                  latent_weight=opts.latent_weight, neighbor_weight=opts.neighbor_weight,
                                  neighbor_raw=(a["held_near_x"], a["held_near_h"]))
    parts = (cal.recon, cal.latent, cal.neighbor_x, cal.neighbor_h)

    def z(prefix):  # (N, 4): the calibrated parts, as the scoring graph computes them
        return np.stack([c.z(a[f"{prefix}_{k}"].astype(np.float64)) for c, k in zip(parts, RAW_PARTS)], 1)

    held, test = z("held"), z("test")

    def combine(recon):
        return cal.combine(recon, test[:, 1], 0.5 * (test[:, 2] + test[:, 3]))

    defaults = combine(test[:, 0])
    out = {"defaults": defaults}
    typical = np.median(a["held_errors"].astype(np.float64), 0)
    typical = np.maximum(typical, 0.1 * typical.mean() + 1e-12)
    per_column = PartCalibration.fit((a["held_errors"] / typical).sum(1), True)
    out["recon/column"] = combine(per_column.z((a["test_errors"] / typical).sum(1)))
    for w in IFOREST_WEIGHTS:
        out[f"+iforest {w:g}"] = defaults + w * np.minimum(a["iforest_z"], PART_CAP)
    held, test = (np.clip(v, -PART_CAP, PART_CAP) for v in (held, test))
    cov = LedoitWolf().fit(held)
    diff = test - cov.location_
    distance = np.sqrt(np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov.covariance_), diff))
    for w in PATTERN_WEIGHTS:
        out[f"+pattern {w:g}"] = defaults + w * distance
    return out


def report(protocol: str, fits: dict[str, list[dict]]) -> None:
    names = sorted(fits)
    scores = {name: [candidates(p) for p in fits[name]] for name in names}
    drift = max(float(np.abs(s["defaults"] - p["anomaly"]).max()) for n in names for p, s in zip(fits[n], scores[n]))
    # per dataset, per candidate: mean over seeds of (auroc, auprc, f1)
    table: dict[str, np.ndarray] = {}
    for name in names:
        runs = [{k: quality.quality(p["y"], v) for k, v in s.items()} for p, s in zip(fits[name], scores[name])]
        for k in runs[0]:
            table.setdefault(k, []).append([np.mean([r[k][m] for r in runs]) for m in quality.METRICS])
    table = {k: np.array(v) for k, v in table.items()}
    base = table["defaults"]
    print(f"\n## {protocol}: {len(names)} datasets, {sum(len(v) for v in fits.values())} fits "
          f"(defaults recomputed from the raw parts: largest difference {drift:.2g})\n")
    f1_names = [n for n in ("thyroid", "arrhythmia", "kddcup99_10pct") if n in names]
    print("| candidate | mean AUROC | AUROC - defaults | se | ahead / behind | mean AUPRC | AUPRC - defaults |"
          + "".join(f" {n} F1 |" for n in f1_names))
    print("|---|---:|---:|---:|---|---:|---:|" + "---:|" * len(f1_names))
    for k, v in table.items():
        d = v[:, 0] - base[:, 0]
        se = f"{d.std(ddof=1) / np.sqrt(len(d)):.4f}" if len(d) > 1 else "-"
        f1 = "".join(f" {v[names.index(n), 2]:.3f} |" for n in f1_names)
        print(f"| {k} | {v[:, 0].mean():.4f} | {d.mean():+.4f} | {se} | {(d > 5e-4).sum()} / {(d < -5e-4).sum()} "
              f"| {v[:, 1].mean():.4f} | {(v[:, 1] - base[:, 1]).mean():+.4f} |{f1}")
    print("\nAUROC - defaults by dataset (mean over seeds):\n")
    print("| candidate | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for k, v in table.items():
        if k != "defaults":
            print(f"| {k} | " + " | ".join(f"{x:+.3f}" for x in v[:, 0] - base[:, 0]) + " |")


def main(argv=None) -> int:
    p = studies.parser(__doc__, "directory for each fit's arrays (.npz), reused when present")
    args = p.parse_args(argv)
    data, names, cache = studies.setup(p, args)
    print("# aaedetect: candidate score parts\n")
    print(", ".join(f"{k} {v}" for k, v in quality.environment().items()))
    print(f"data {data}; seeds {args.seeds}")
    for protocol in args.protocols.split(","):
        report(protocol, studies.fits(names, args.seeds, protocol,
                                      lambda name, seed: fit_arrays(data, name, protocol, seed, cache)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
