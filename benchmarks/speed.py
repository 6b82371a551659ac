"""Scoring speed: rows/s of the ONNX path (onnxruntime) against torch eager, by batch size, and the
wall time of `aaedetect score` on a 10-row file (start-up included).

    python benchmarks/speed.py [--columns 30] [--rows 262144] [--device cpu|cuda] [--repeat 3]

The table is synthetic: `--columns` numeric columns (a quarter of them categorical) with
correlations, so the network has the width a real table of that size gets. Both engines score the
same prepared arrays, so the figures compare the engines, not the CSV parsing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

BATCHES = (1_000, 4_096, 16_384, 65_536)


def make_table(rows: int, columns: int, seed: int = 0) -> pd.DataFrame:
    """Correlated numeric columns plus categorical ones (a quarter of ``columns``)."""
    rng = np.random.default_rng(seed)
    n_cat = columns // 4
    n_num = columns - n_cat
    base = rng.normal(size=(rows, 4))
    mix = rng.normal(size=(4, n_num))
    data = {f"n{j}": v for j, v in enumerate((base @ mix + 0.1 * rng.normal(size=(rows, n_num))).T)}
    for j in range(n_cat):
        data[f"c{j}"] = np.array(list("abcdefgh"))[rng.integers(0, 8, rows)]
    return pd.DataFrame(data)


def rows_per_second(run, n_rows: int, repeat: int) -> float:
    run()  # warm-up: session and allocator caches
    best = min(_timed(run) for _ in range(repeat))
    return n_rows / best


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=30)
    parser.add_argument("--rows", type=int, default=262_144, help="rows scored per measurement")
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (speed does not depend on them)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import torch

    from aaedetect import AAEDetector
    from aaedetect.runtime import OnnxScorer

    print(f"python {sys.version.split()[0]}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs, device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        train = make_table(args.train_rows, args.columns, seed=1)
        det = AAEDetector(max_epochs=args.epochs, random_state=0, device=args.device).fit(train)
        det.save(model_dir)
        print(f"table: {args.columns} columns -> {det.net_config_.n_inputs} encoded features, "
              f"network {det.net_config_.hidden} latent {det.net_config_.latent_dim}")
        test = make_table(args.rows, args.columns, seed=2)
        numeric, categorical = det.preprocessor_.transform(test)

        scorer = OnnxScorer(model_dir, device=args.device)
        print(f"onnxruntime provider: {scorer.provider}")
        print()
        print(f"| batch rows | onnxruntime rows/s | torch eager rows/s | onnx / torch |")
        print(f"| ---: | ---: | ---: | ---: |")
        from aaedetect.config import SCORE_BATCH_ROWS

        for batch in BATCHES:
            scorer.batch_rows = batch
            onnx_rate = rows_per_second(lambda: scorer.run_arrays(numeric, categorical), len(test), args.repeat)
            SCORE_BATCH_ROWS[det.device_.type] = batch  # the torch path's batches
            torch_rate = rows_per_second(lambda: det.run_arrays(numeric, categorical), len(test), args.repeat)
            print(f"| {batch:,} | {onnx_rate:,.0f} | {torch_rate:,.0f} | {onnx_rate / torch_rate:.2f} |")

        small = Path(tmp) / "ten.csv"
        make_table(10, args.columns, seed=3).to_csv(small, index=False)
        command = [sys.executable, "-m", "aaedetect_cli", "score", str(small), "-m", str(model_dir),
                   "-o", str(Path(tmp) / "out.csv"), "--quiet", "--device", args.device]
        times = []
        for _ in range(max(args.repeat, 3)):
            started = time.perf_counter()
            subprocess.run(command, check=True)
            times.append(time.perf_counter() - started)
        print()
        print(f"`aaedetect score` on a 10-row file (whole process): median {np.median(times):.3f}s, "
              f"best {min(times):.3f}s over {len(times)} runs")


if __name__ == "__main__":
    main()
