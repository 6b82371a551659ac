"""Write the single-column-break files committed in datasets/breaks/ (deterministic: same seed,
same rows): building HVAC readings in which each anomaly breaks exactly one known column, the
data of benchmarks/explain.py.

    python datasets/generate_breaks.py [--out datasets/breaks] [--seed 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aaedetect.datasets import make_breaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "breaks"))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--train-rows", type=int, default=5000)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--break-share", type=float, default=0.1)
    args = parser.parse_args()
    train, test = make_breaks(args.train_rows, args.test_rows, args.break_share, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "breaks_train.csv", index=False)
    test.to_csv(out / "breaks_test.csv", index=False)
    counts = ", ".join(f"{n} {kind}" for kind, n in
                       test.loc[test["label"] == 1, "break_kind"].value_counts().sort_index().items())
    print(f"wrote {out / 'breaks_train.csv'} ({len(train)} rows) and "
          f"{out / 'breaks_test.csv'} ({len(test)} rows, {int(test['label'].sum())} broken: {counts})")


if __name__ == "__main__":
    main()
