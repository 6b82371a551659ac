"""Write the demo telemetry files committed in datasets/demo/ (deterministic: same seed, same rows).

    python datasets/generate_demo.py [--out datasets/demo] [--seed 7] [--broken-columns]

``--broken-columns`` adds the test file's ``broken_columns`` column (the columns each anomaly
changed); the committed files are written without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aaedetect.datasets import make_telemetry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "demo"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train-rows", type=int, default=5000)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--broken-columns", action="store_true",
                        help="add a broken_columns column to the test file")
    args = parser.parse_args()
    train, test = make_telemetry(args.train_rows, args.test_rows, seed=args.seed,
                                 broken_columns=args.broken_columns)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "telemetry_train.csv", index=False)
    test.to_csv(out / "telemetry_test.csv", index=False)
    print(f"wrote {out / 'telemetry_train.csv'} ({len(train)} rows) and "
          f"{out / 'telemetry_test.csv'} ({len(test)} rows, {int(test['label'].sum())} anomalies)")


if __name__ == "__main__":
    main()
