"""GPU figures: training rows/s on CUDA, ONNX CUDA scoring rows/s on a large table, and the parity of
the CUDA scores with the CPU provider's on the same rows.

    python benchmarks/gpu.py train --workdir W [--train-rows 100000] [--epochs 5]
    python benchmarks/gpu.py score --workdir W [--rows 1000000] [--batches 16384,65536,262144]

`train` writes the tables of `benchmarks/speed.py` (`--columns` wide) into W, fits the default model
on CUDA (after a one-epoch warm-up fit, so CUDA's start-up stays out of the figure) and on the CPU,
and prints training rows/s per epoch for both; the CUDA model is saved as W/model. `score` runs
W/model's ONNX graph on the pre-encoded rows of the big table with the CUDA provider at each batch
size (the graph alone: median of 3 passes after a warm-up), once with the CPU provider, compares
the two (largest and median differences of each score, flags that differ), then times
`aaedetect score` end to end on the CSV with each provider beside the I/O floor. Needs
onnxruntime-gpu and a working NVIDIA GPU; it stops with a message otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import (AAEDETECT, GIB, fit_split, io_floor, make_table, measured, write_csv,  # noqa: E402
                   write_tables)


def train(args) -> None:
    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        raise SystemExit("torch sees no CUDA device")
    gpu_name = "dry run on the CPU" if args.dry_run else torch.cuda.get_device_name(0)
    print(f"# GPU training: {gpu_name}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs\n")
    work = args.workdir
    started = time.perf_counter()
    big, trainfile = write_tables(work / "big.csv", work / "train.csv", args.rows, args.train_rows, args.columns)
    print(f"tables written in {time.perf_counter() - started:.1f} s "
          f"({big.stat().st_size / GIB:.2f} GiB big table)\n")
    warm = work / "warm.csv"
    make_table(2_000, args.columns, seed=7).to_csv(warm, index=False)
    fit_split(warm, work / "warm-model", 1, args.device)
    print("| device | batch | epochs | training s | rows/s per epoch | export s |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    runs = ((args.device, "model"), ("cpu", "model-cpu"))
    for device, name in runs[:1] if args.no_cpu else runs:
        split, det = fit_split(trainfile, work / name,
                               args.epochs, device)
        per_epoch = det.training_.seconds / max(det.training_.epochs_run, 1)
        print(f"| {device} | {det.batch_size} | {det.training_.epochs_run} | {det.training_.seconds:.2f} "
              f"| {det.n_rows_['train'] / per_epoch:,.0f} | {split['export']:.2f} |", flush=True)


def _placement(model: Path) -> str:
    """How many graph nodes onnxruntime placed on each provider (its verbose log, in a child)."""
    code = ("import onnxruntime as ort, sys\n"
            "ort.set_default_logger_severity(0); o = ort.SessionOptions(); o.log_severity_level = 0\n"
            "ort.InferenceSession(sys.argv[1], o, providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])\n")
    out = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True)
    lines = [line.split("VerifyEachNodeIsAssignedToAnEp] ")[-1] for line in (out.stdout + out.stderr).splitlines()
             if "VerifyEachNodeIsAssignedToAnEp" in line or "were not assigned" in line]
    return "\n".join(lines[:40]) or "no placement lines in the log"


def score(args) -> None:
    import onnxruntime as ort

    from aaedetect.runtime import CUDA, OnnxScorer, run_session

    print(f"# ONNX CUDA scoring: onnxruntime {ort.__version__}, providers {ort.get_available_providers()}\n")
    work = args.workdir
    model, big = work / "model", work / "big.csv"
    if not big.exists():
        write_csv(big, args.rows, args.columns)
    import pandas as pd

    df = pd.read_csv(big)
    gpu = OnnxScorer(model, device=args.device)
    if gpu.provider != CUDA and not args.dry_run:
        raise SystemExit(f"the scorer fell back to {gpu.provider}")
    numeric, categorical = gpu.preprocessor.transform(df)
    print(f"{len(df):,} rows x {df.shape[1]} columns; encoded: {numeric.shape[1]} numeric, "
          f"{categorical.shape[1]} categorical\n")
    print("node placement (onnxruntime's log):\n" + _placement(model / "model.onnx") + "\n")

    print("| provider | batch rows | graph seconds (median of 3) | rows/s |\n| --- | ---: | ---: | ---: |")
    rows = len(df)
    results = {}

    def timed(key, label: str, session, batch: int) -> None:
        """A warm-up call, then three passes over every row: their median, and the outputs."""
        run_session(session, numeric[:batch], categorical[:batch], batch_rows=batch)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            results[key] = run_session(session, numeric, categorical, batch_rows=batch)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(f"| {label} | {batch:,} | {median:.3f} | {rows / median:,.0f} |", flush=True)

    for batch in args.batches:
        timed(batch, "CUDA", gpu.session, batch)
    if not args.dry_run:  # onnxruntime's default, TF32 on, beside ours (runtime.CUDA_OPTIONS)
        tf32 = ort.InferenceSession(str(model / "model.onnx"), providers=[(CUDA, {"use_tf32": "1"})])
        timed("tf32", "CUDA, TF32 on", tf32, args.batches[-1])
    cpu = OnnxScorer(model, device="cpu")
    started = time.perf_counter()
    reference = run_session(cpu.session, numeric, categorical, batch_rows=cpu.batch_rows)
    seconds = time.perf_counter() - started
    print(f"| CPU ({os.cpu_count()} cores) | {cpu.batch_rows:,} | {seconds:.3f} (one pass) "
          f"| {rows / seconds:,.0f} |\n")

    flags_cpu = reference["anomaly_score"] > cpu.threshold
    for key in (args.batches[-1], "tf32"):
        if key not in results:
            continue
        ours = results[key]
        what = f"batch {key:,}" if key != "tf32" else "TF32 on"
        print(f"## parity, CUDA ({what}) against CPU, all {rows:,} rows\n")
        print("| output | largest abs difference | median abs difference | scale (median abs CPU value) |\n"
              "| --- | ---: | ---: | ---: |")
        for name, ref in reference.items():
            diff = np.abs(ours[name].astype(np.float64) - ref)
            print(f"| {name} | {diff.max():.3g} | {np.median(diff):.3g} | {np.median(np.abs(ref)):.3g} |")
        flags_gpu = ours["anomaly_score"] > gpu.threshold
        print(f"\nflags that differ: {int((flags_gpu != flags_cpu).sum())} of {rows:,} "
              f"({int(flags_cpu.sum()):,} flagged on CPU)\n")
    for name in ("anomaly_score", "neighbor_score"):
        batches = [np.abs(results[b][name] - results[args.batches[0]][name]).max() for b in args.batches]
        print(f"{name}, CUDA batch sizes against each other: largest difference {max(batches):.3g}")
    del df, results, reference

    print("\n## aaedetect score, whole process (read CSV, score, write CSV)\n\n"
          "| what | seconds | rows/s | peak RSS GiB |\n| --- | ---: | ---: | ---: |")
    out = work / "scored.csv"
    runs = [(args.device, ["--device", args.device]),
            (f"{args.device}, --chunk-rows 262144 --batch-rows 65536",
             ["--device", args.device, "--chunk-rows", "262144", "--batch-rows", "65536"]),
            ("cpu", ["--device", "cpu"])]
    for label, extra in runs:
        wall, peak = measured([*AAEDETECT, "score", str(big), "-m", str(model), "-o", str(out), "-q", *extra])
        print(f"| aaedetect score {label} | {wall:.1f} | {rows / wall:,.0f} | {peak / GIB:.2f} |", flush=True)
    out.unlink()
    floor = io_floor(big, work / "floor.csv")
    print(f"| I/O floor (pyarrow read, append 5 columns, write) | {floor:.1f} | {rows / floor:,.0f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["train", "score"])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")],
                        default=[16_384, 65_536, 262_144])
    parser.add_argument("--no-cpu", action="store_true", help="train: skip the CPU fit beside the GPU's")
    parser.add_argument("--dry-run", action="store_true",
                        help="the same steps on the CPU, to check this script where there is no GPU")
    args = parser.parse_args()
    args.device = "cpu" if args.dry_run else "cuda"
    args.workdir.mkdir(parents=True, exist_ok=True)
    (train if args.phase == "train" else score)(args)


if __name__ == "__main__":
    main()
