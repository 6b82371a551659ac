"""What the studies on one default fit per dataset, seed and protocol share (weights.py,
parts_study.py): their common options, the datasets they run on, and the loop over the fits."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

import quality


def parser(doc: str, cache_help: str) -> argparse.ArgumentParser:
    """``--data``, ``--datasets``, ``--seeds``, ``--protocols`` and ``--cache``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("AAEDETECT_DATA"),
                   help="directory of *.csv.gz datasets [default: $AAEDETECT_DATA]")
    p.add_argument("--datasets", help="comma list [default: all but " + ", ".join(quality.SKIP_BY_DEFAULT) + "]")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--protocols", default="novelty,unsupervised")
    p.add_argument("--cache", help=cache_help)
    return p


def setup(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, list[str], Path | None]:
    """The data folder, the dataset names and the cache folder (made if missing), after the
    usage error for a missing ``--data``."""
    if not args.data:
        p.error("give --data DIR or set AAEDETECT_DATA")
    data = Path(args.data)
    names = ([n for n in args.datasets.split(",") if n] if args.datasets else
             [quality.dataset_name(f) for f in sorted(data.glob("*.csv.gz"))
              if quality.dataset_name(f) not in quality.SKIP_BY_DEFAULT])
    cache = Path(args.cache) if args.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    quality.show_aaedetect_log(False)
    return data, names, cache


def fits(names: list[str], seeds: str, protocol: str, fit: Callable[[str, int], dict]) -> dict[str, list[dict]]:
    """``fit(name, seed)`` for every dataset and seed (warnings silenced, progress on stderr)."""
    out: dict[str, list[dict]] = {}
    for name in names:
        for seed in (int(s) for s in seeds.split(",") if s):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.setdefault(name, []).append(fit(name, seed))
            print(f"{protocol} {name} seed={seed}", file=sys.stderr, flush=True)
    return out
