#!/usr/bin/env python
"""Where each score part wins, and what other weights would give: one default fit per dataset,
seed and protocol, then every weighting of the same calibrated parts, on the same rows.

    python benchmarks/weights.py --data ../shared/datasets --seeds 0,1,2
    python benchmarks/weights.py --protocols novelty --latent-weights 0,0.25 --neighbor-weights 2,4

``anomaly_score`` is ``recon + latent_weight * clip(latent, 0, 20) + neighbor_weight *
min(neighbor, 20)`` (README, "Scores"), each part a robust z-score on held-out normal rows; the
neighbour part is the mean of two z-scores, in the encoded input and in the encoder's hidden
layer. Changing the weights changes no network and no calibration, so one fit per (dataset,
seed) gives every weighting exactly: this script fits once with the defaults (the splits of
quality.py) and recombines the parts of the test rows.

Prints, per protocol: each part's AUROC by dataset (mean over seeds) beside the defaults'; then
a table of mean AUROC and AUPRC over the datasets for every (latent weight, neighbour weight)
and for the neighbour part's input-space share, with the paired difference to the defaults,
its standard error across datasets and on how many datasets it is ahead or behind. Picking the
best row of that table after the fact favours it: read a gain within two standard errors as none.
``--cache DIR`` keeps each fit's parts (``.npz``) so that a second run only recombines.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from aaedetect.config import Options
from aaedetect.scoring import Calibration

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (the splits and dataset loading of the quality benchmark)
import studies  # noqa: E402

# latent weight, neighbour weight, input-space share of the neighbour part (the mean of its two
# spaces' z-scores: aaedetect.model, ScoringGraph)
DEFAULTS = (Options().latent_weight, Options().neighbor_weight, 0.5)


def parts(data: Path, name: str, protocol: str, seed: int, cache: Path | None,
          options: dict | None = None) -> dict[str, np.ndarray]:
    """The test rows' labels and calibrated parts of one default fit (``options`` on top of the
    defaults), from ``cache`` when it is there."""
    path = cache / f"{protocol}-{name}-{seed}.npz" if cache else None
    if path is not None and path.is_file():
        return dict(np.load(path))
    from aaedetect import AAEDetector
    from aaedetect.detector import _batched

    frame, y = quality.load_dataset(data / f"{name}.csv.gz")
    train_idx, test_idx = quality.SPLITS[protocol](y, seed)
    train = frame.iloc[train_idx].reset_index(drop=True)
    test = frame.iloc[test_idx].reset_index(drop=True)
    model = AAEDetector(**{**(options or {}), "random_state": seed}).fit(train)
    table = model.score_table(test)
    numeric, categorical = model.preprocessor_.transform(test)[:2]
    raw = _batched(model.graph_.raw_parts, numeric, categorical, model.device_)
    cal = model.calibration_
    out = {"y": y[test_idx], "anomaly": table["anomaly_score"].to_numpy(),
           **{p: table[f"{p}_score"].to_numpy() for p in ("recon", "latent", "neighbor")},
           "neighbor_x": cal.neighbor_x.z(raw[2].astype(np.float64)),
           "neighbor_h": cal.neighbor_h.z(raw[3].astype(np.float64))}
    if path is not None:
        np.savez(path, **out)
    return out


def combined(p: dict[str, np.ndarray], latent_w: float, neighbor_w: float, x_share: float) -> np.ndarray:
    """The package's combination (``Calibration.combine``) of the calibrated parts with these weights."""
    weights = replace(Calibration.identity(Options().latent_signal), latent_weight=latent_w, neighbor_weight=neighbor_w)
    return weights.combine(p["recon"], p["latent"], x_share * p["neighbor_x"] + (1.0 - x_share) * p["neighbor_h"])


def metrics(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    return roc_auc_score(y, score), average_precision_score(y, score)


def report(protocol: str, fits: dict[str, list[dict]], latent_ws, neighbor_ws, x_shares) -> None:
    names = sorted(fits)
    drift = max(float(np.abs(combined(p, *DEFAULTS) - p["anomaly"]).max()) for v in fits.values() for p in v)
    if drift > 1e-3:  # the formula above no longer matches the package's
        raise SystemExit(f"error: the default weights give scores {drift:.3g} away from anomaly_score")
    print(f"\n## {protocol}: {len(names)} datasets, {sum(len(v) for v in fits.values())} fits\n")
    # each part on its own
    columns = ("recon", "latent", "neighbor_x", "neighbor_h", "neighbor", "anomaly")
    print("AUROC of each part on its own (mean over seeds); `anomaly` is the defaults' combination.\n")
    print("| dataset | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in names:
        cells = [np.mean([metrics(p["y"], p[c])[0] for p in fits[name]]) for c in columns]
        best = max(cells[:-1])
        print(f"| {name} | " + " | ".join(f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in cells) + " |")

    def table(settings):
        per = {s: np.array([np.mean([metrics(p["y"], combined(p, *s)) for p in fits[n]], 0) for n in names])
               for s in settings}
        base = per[DEFAULTS]
        rows = []
        for s, m in per.items():
            d = m[:, 0] - base[:, 0]
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            rows.append((m[:, 0].mean(), m[:, 1].mean(), d.mean(), se,
                         int((d > 5e-4).sum()), int((d < -5e-4).sum()), s))
        print("| latent weight | neighbour weight | input share | mean AUROC | mean AUPRC | "
              "AUROC - defaults | se | ahead / behind |")
        print("|---:|---:|---:|---:|---:|---:|---:|---|")
        for auroc, auprc, d, se, up, down, s in sorted(rows, key=lambda r: -r[0]):
            mark = " (defaults)" if s == DEFAULTS else ""
            print(f"| {s[0]:g} | {s[1]:g} | {s[2]:g}{mark} | {auroc:.4f} | {auprc:.4f} | {d:+.4f} | "
                  f"{se:.4f} | {up} / {down} |")

    print("\nEvery (latent weight, neighbour weight), neighbour part as in the defaults:\n")
    table(sorted({DEFAULTS, *itertools.product(latent_ws, neighbor_ws, [DEFAULTS[2]])}))
    print("\nThe input space's share of the neighbour part (the rest: the hidden layer), default weights:\n")
    table(sorted({DEFAULTS, *((DEFAULTS[0], DEFAULTS[1], x) for x in x_shares)}))


def main(argv=None) -> int:
    p = studies.parser(__doc__, "directory for each fit's parts (.npz), reused when present")
    p.add_argument("--latent-weights", default="0,0.25,0.5,1")
    p.add_argument("--neighbor-weights", default="1,2,3,4,6")
    p.add_argument("--input-shares", default="0,0.25,0.75,1")
    args = p.parse_args(argv)
    data, names, cache = studies.setup(p, args)
    floats = lambda text: [float(v) for v in text.split(",") if v]  # noqa: E731
    print("# aaedetect: score parts and their weights\n")
    print(", ".join(f"{k} {v}" for k, v in quality.environment().items()))
    print(f"data {data}; seeds {args.seeds}; defaults: latent weight {DEFAULTS[0]}, neighbour weight "
          f"{DEFAULTS[1]}, input share {DEFAULTS[2]}")
    for protocol in args.protocols.split(","):
        fits = studies.fits(names, args.seeds, protocol,
                            lambda name, seed: parts(data, name, protocol, seed, cache))
        report(protocol, fits, floats(args.latent_weights), floats(args.neighbor_weights),
               floats(args.input_shares))
    return 0


if __name__ == "__main__":
    sys.exit(main())
