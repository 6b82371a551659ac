#!/usr/bin/env python
"""Do aaedetect's explanations name the column that broke? Top-1 and top-2 hits per kind of break.

For each dataset and seed: fit ``AAEDetector(random_state=seed)`` with the defaults (``--epochs``
sets ``max_epochs``) on the training file, save the model to a temporary directory, score the test
file with ``OnnxScorer(model_dir).score_table(test, explain=2)`` and compare each broken row's
``top_columns`` (most contributing first, ``";"``-joined) with the columns known to be broken:

- ``breaks``: datasets/breaks/ (``aaedetect.datasets.make_breaks``): each anomaly breaks exactly
  one column (``broken_column``), by a spike, a broken relation or a category that never comes
  with the rest of the row;
- ``demo``: datasets/demo/ (``make_telemetry``): each anomaly changes one to three columns; their
  names come from ``make_telemetry(broken_columns=True)``, checked against the committed file. A
  row's top-1 is a hit when it is one of them.

Reported per dataset and kind of break, and over all broken rows: rows, the share whose top-1
column is a broken one, the share with a broken one among the top 2, and the share flagged
``is_anomaly`` (rows the detector did not flag are counted too); mean ± sample std over seeds.
Beside them, what a random order of the model's columns would score (a demo anomaly that
changed three of twelve columns is hit by chance more often than a single broken column).
The data are the same for every seed, the seed is the model's. The goal: top-1 >= 0.80 on
spikes and top-2 >= 0.70 over all broken rows.

Usage (from the repository root)::

    python benchmarks/explain.py [--seeds 0,1,2] [--epochs N] [--datasets breaks,demo] [--json FILE]

The table goes to stdout (markdown), one progress line per dataset and seed to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
#: Columns asked of the explanation (top_columns holds this many names).
EXPLAIN = 2
DATASETS = ("breaks", "demo")
OVERALL = "overall"
METRICS = ("top1", "top2", "flagged")
#: (kind, metric, least mean share over seeds) that the explanations aim for, on each dataset
#: that has that kind.
GOALS = (("spike", "top1", 0.80), (OVERALL, "top2", 0.70))
BREAKS_ANSWERS = ["label", "break_kind", "broken_column"]
DEMO_ANSWERS = ["label", "anomaly_kind"]


def _quality_module():
    """benchmarks/quality.py, for its markdown table and mean ± std formatting."""
    spec = importlib.util.spec_from_file_location("aaedetect_quality_benchmark",
                                                  Path(__file__).with_name("quality.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


quality = _quality_module()


@dataclass
class Case:
    """One dataset: what the model trains on and scores, and the answers for each test row."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame  # given to the scorer: no answer columns
    kinds: np.ndarray  # per test row: kind of break, "none" for normal rows
    broken: np.ndarray  # per test row: ";"-joined broken columns, "" for normal rows
    kind_order: tuple[str, ...]
    n_columns: int  # columns the model uses (those of train): what a random explanation picks from


def load_breaks(root: Path = ROOT) -> Case:
    """datasets/breaks/: one broken column per anomaly."""
    from aaedetect.datasets import BREAK_KINDS

    folder = root / "datasets" / "breaks"
    train = pd.read_csv(folder / "breaks_train.csv")
    test = pd.read_csv(folder / "breaks_test.csv")
    kinds = test["break_kind"].fillna("none").to_numpy(dtype=object)
    broken = test["broken_column"].fillna("").to_numpy(dtype=object)
    return Case("breaks", train, test.drop(columns=BREAKS_ANSWERS), kinds, broken, BREAK_KINDS,
                train.shape[1])


def load_demo(root: Path = ROOT) -> Case:
    """datasets/demo/, with each anomaly's changed columns from ``make_telemetry``."""
    from aaedetect.datasets import ANOMALY_KINDS, make_telemetry

    folder = root / "datasets" / "demo"
    # reading_id is an identifier, which fit would leave out (with a warning) anyway.
    train = pd.read_csv(folder / "telemetry_train.csv").drop(columns="reading_id")
    test = pd.read_csv(folder / "telemetry_test.csv")
    _, truth = make_telemetry(broken_columns=True)  # generate_demo.py's defaults
    same = (len(truth) == len(test) and all((truth[c].to_numpy() == test[c].to_numpy()).all()
                                            for c in ["reading_id", *DEMO_ANSWERS]))
    if not same:
        raise SystemExit(f"error: {folder / 'telemetry_test.csv'} is not what make_telemetry() "
                         f"writes; regenerate it with datasets/generate_demo.py")
    return Case("demo", train, test.drop(columns=DEMO_ANSWERS),
                truth["anomaly_kind"].to_numpy(dtype=object),
                truth["broken_columns"].to_numpy(dtype=object), ANOMALY_KINDS, train.shape[1])


LOADERS = {"breaks": load_breaks, "demo": load_demo}


#: What the shares are computed from (``--attribution``): ``both`` is aaedetect's (the
#: reconstruction and the neighbour part, each column above its typical value); the others are
#: ablations of the same model: reconstruction errors only, above their typical values, and
#: reconstruction errors as they are (ranking the graph's ``feature_errors``).
ATTRIBUTIONS = ("both", "recon", "recon-raw")


def attributed(calibration, attribution: str):
    """The calibration that makes ``column_shares`` use only what ``attribution`` names."""
    from dataclasses import replace

    if attribution == "both":
        return calibration
    calibration = replace(calibration, neighbor_weight=0.0)
    return calibration if attribution == "recon" else replace(calibration, column_recon=())


def explain(case: Case, seed: int, epochs: int | None, attributions=("both",)) -> dict[str, pd.DataFrame]:
    """Fit on ``case.train``, save, and score ``case.test`` with explanations through ONNX, once
    per attribution (the same model)."""
    from aaedetect import AAEDetector
    from aaedetect.runtime import OnnxScorer

    options = {"random_state": seed, **({"max_epochs": epochs} if epochs else {})}
    detector = AAEDetector(**options).fit(case.train)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        detector.save(model_dir)
        scorer = OnnxScorer(model_dir)
        used = scorer.preprocessor.columns
        if len(used) != case.n_columns:  # the chance baseline assumes n_columns
            print(f"note: {case.name}: the model uses {len(used)} columns, not {case.n_columns}",
                  file=sys.stderr)
        fitted = scorer.calibration
        out = {}
        for attribution in attributions:
            scorer.calibration = attributed(fitted, attribution)
            out[attribution] = scorer.score_table(case.test, explain=EXPLAIN)
            check_explanations(out[attribution], case)
    return out


def check_explanations(scored: pd.DataFrame, case: Case) -> None:
    """Stop when the scored table breaks the contract: ``top_columns`` and ``top_shares`` present,
    at most ``EXPLAIN`` names per row, each an original column of the training table."""
    missing = [c for c in ("top_columns", "top_shares") if c not in scored.columns]
    if missing:
        raise SystemExit(f"error: score_table(explain={EXPLAIN}) returned no {', '.join(missing)}")
    lists = [names(cell) for cell in scored["top_columns"]]
    unknown = sorted({n for row in lists for n in row} - set(case.train.columns))
    if unknown:
        raise SystemExit(f"error: {case.name}: top_columns names {', '.join(unknown[:5])}, not "
                         f"columns of the training table")
    if max(map(len, lists), default=0) > EXPLAIN:
        raise SystemExit(f"error: {case.name}: top_columns holds more than {EXPLAIN} names")


def names(cell) -> list[str]:
    """``"a;b"`` -> ``["a", "b"]``; an empty or missing cell -> ``[]``."""
    return [n for n in cell.split(";") if n] if isinstance(cell, str) else []


def hits(top_columns, broken, k: int) -> np.ndarray:
    """Per row: whether one of the first ``k`` names of ``top_columns`` is among ``broken``."""
    return np.array([bool(set(names(top)[:k]) & set(names(truth)))
                     for top, truth in zip(top_columns, broken, strict=True)], dtype=bool)


def chance(broken, n_columns: int, k: int) -> np.ndarray:
    """Per row: the chance that ``k`` of ``n_columns`` columns picked at random include one of
    ``broken`` (what an explanation that knows nothing would score)."""
    return np.array([1 - comb(n_columns - len(names(b)), k) / comb(n_columns, k) for b in broken])


def evaluate(kinds, broken, top_columns, flagged, n_columns: int, kind_order=()) -> list[dict]:
    """One record per kind of break (those of ``kind_order`` first), then one over all broken
    rows: ``rows``, the shares ``top1``, ``top2`` and ``flagged``, and ``chance1`` and
    ``chance2``, the mean top-1 and top-2 shares of a random order of ``n_columns`` columns.
    Normal rows (kind "none") are left out."""
    kinds = np.asarray(kinds, dtype=object)
    found = {k: hits(top_columns, broken, k) for k in (1, 2)}
    luck = {k: chance(broken, n_columns, k) for k in (1, 2)}
    flagged = np.asarray(flagged, dtype=bool)
    present = [k for k in kind_order if (kinds == k).any()]
    present += sorted(set(kinds) - set(present) - {"none"})
    groups = [(k, kinds == k) for k in present] + [(OVERALL, kinds != "none")]
    return [{"kind": kind, "rows": int(rows.sum()), "top1": float(found[1][rows].mean()),
             "top2": float(found[2][rows].mean()), "flagged": float(flagged[rows].mean()),
             "chance1": float(luck[1][rows].mean()), "chance2": float(luck[2][rows].mean())}
            for kind, rows in groups if rows.any()]


def summarise(records: list[dict]) -> list[dict]:
    """Per (dataset, kind), in the order first seen: rows, seeds, and each metric's mean and
    sample std over seeds (std 0 for one seed)."""
    keys = list(dict.fromkeys((r["dataset"], r["kind"]) for r in records))
    out = []
    for dataset, kind in keys:
        mine = [r for r in records if (r["dataset"], r["kind"]) == (dataset, kind)]
        stats = {}
        for m in METRICS:
            values = [r[m] for r in mine]
            stats[m] = {"mean": float(np.mean(values)),
                        "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                        "values": values}
        out.append({"dataset": dataset, "kind": kind, "rows": mine[0]["rows"], "seeds": len(mine),
                    "chance1": mine[0]["chance1"], "chance2": mine[0]["chance2"], **stats})
    return out


def check_goals(summary: list[dict]) -> list[dict]:
    """Each goal of ``GOALS`` on each dataset that has its kind: the mean and whether it is met."""
    return [{"dataset": s["dataset"], "kind": kind, "metric": metric, "goal": least,
             "mean": s[metric]["mean"], "met": s[metric]["mean"] >= least}
            for kind, metric, least in GOALS for s in summary if s["kind"] == kind]


def markdown(summary: list[dict], dataset: str) -> str:
    """One dataset's rows of the summary as a markdown table: mean ± sample std over seeds."""
    rows = [[s["kind"], str(s["rows"]), str(s["seeds"])]
            + [quality.mean_std(s[m]["values"]) for m in METRICS]
            + [f"{s['chance1']:.3f} / {s['chance2']:.3f}"]
            for s in summary if s["dataset"] == dataset]
    return quality.table(["kind", "broken rows", "seeds", "top-1", "top-2", "flagged",
                          "by chance (top-1 / top-2)"], rows)


def goal_lines(goals: list[dict]) -> list[str]:
    """One line per goal: ``breaks spike top-1 0.912 >= 0.80: met``."""
    return [f"{g['dataset']} {g['kind']} {g['metric'].replace('top', 'top-')} {g['mean']:.3f} "
            f"{'>=' if g['met'] else '<'} {g['goal']:.2f}: {'met' if g['met'] else 'NOT met'}"
            for g in goals]


def run(args) -> list[dict]:
    """One record per (dataset, seed, kind); Ctrl-C stops early and keeps what finished."""
    records: list[dict] = []
    started = time.perf_counter()
    try:
        for name in args.datasets:
            case = LOADERS[name]()
            for seed in args.seeds:
                for attribution, scored in explain(case, seed, args.epochs, args.attribution).items():
                    found = evaluate(case.kinds, case.broken, scored["top_columns"].to_numpy(),
                                     scored["is_anomaly"].to_numpy(), case.n_columns, case.kind_order)
                    label = name if attribution == "both" else f"{name}, attribution {attribution}"
                    records += [{"dataset": label, "seed": seed, **r} for r in found]
                    overall = found[-1]
                    print(f"[{time.perf_counter() - started:7.1f}s] {label} seed={seed}: "
                          f"{overall['rows']} broken rows, top-1 {overall['top1']:.3f}, "
                          f"top-2 {overall['top2']:.3f}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: reporting the results so far", file=sys.stderr)
    return records


def environment() -> dict:
    """Versions, printed and saved with the results."""
    import onnxruntime
    import torch

    import aaedetect
    return {"aaedetect": aaedetect.__version__, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "python": platform.python_version()}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds [default: 0,1,2]")
    p.add_argument("--epochs", type=int, default=None,
                   help="max_epochs of every fit (a quick run: 5) [default: aaedetect's]")
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help="comma list from " + ", ".join(DATASETS) + " [default: all]")
    p.add_argument("--attribution", default="both",
                   help="comma list from " + ", ".join(ATTRIBUTIONS) + ": the shares from both parts "
                        "(aaedetect's), or ablations from the reconstruction errors alone [default: both]")
    p.add_argument("--json", help="write every per-seed result, the summary and the settings here")
    args = p.parse_args(argv)
    args.attribution = [a.strip() for a in args.attribution.split(",") if a.strip()]
    if not args.attribution or set(args.attribution) - set(ATTRIBUTIONS):
        p.error(f"--attribution: choose from {', '.join(ATTRIBUTIONS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: not a comma list of integers")
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown or not args.datasets or not args.seeds:
        p.error(f"--datasets: choose from {', '.join(DATASETS)}; --seeds: at least one")
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be at least 1")
    return args


def main(argv=None) -> int:
    """Run the benchmark and print the table and the goals."""
    args = parse_args(argv)
    env = environment()
    print("# aaedetect explanation benchmark\n")
    print(", ".join(f"{k} {v}" for k, v in env.items()))
    print(f"datasets {', '.join(args.datasets)}; seeds {args.seeds}; max_epochs "
          f"{args.epochs or 'default'}; explain={EXPLAIN} through OnnxScorer; shares of the "
          f"broken rows whose top-1 / top-2 columns name a broken column, and flagged\n")
    records = run(args)
    summary = summarise(records)
    goals = check_goals(summary)
    for dataset in dict.fromkeys(s["dataset"] for s in summary):
        print(f"## {dataset}\n\n{markdown(summary, dataset)}\n")
    print("goals (mean over seeds):")
    print("\n".join(f"- {line}" for line in goal_lines(goals)) or "- none measured")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        Path(args.json).write_text(json.dumps({"environment": env, "settings": settings,
                                               "summary": summary, "goals": goals,
                                               "results": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
