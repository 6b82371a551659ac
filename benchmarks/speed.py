"""Speed, end to end: `aaedetect score` against the I/O floor, `fit` split into its steps, the
start-up of a 10-row `score`, and training rows/s beside PyOD's AutoEncoder.

    python benchmarks/speed.py [--rows 1000000] [--train-rows 100000] [--columns 32] [--device cpu|cuda]

The table is synthetic (`make_table`): `--columns` columns, an eighth of them text with 8
categories, the rest numeric and correlated, like a sensor table. One run prints:

- `score`: the wall time of `aaedetect score big.csv -m model -o out.csv` (a fresh process, so
  start-up, reading, scoring and writing are all in it), its peak RSS, and the I/O floor: pyarrow
  reading the same CSV, appending five float columns and writing it (the least any tool that reads
  and writes CSV must spend). The ratio of the two is the figure that matters;
- `fit` on `--train-rows` rows of the same table (defaults, `--epochs` epochs; speed per epoch
  does not depend on their number), split into reading, training (features included), the
  neighbour bank, calibration and the ONNX export (build and parity check), plus writing;
- the wall time of `aaedetect score` on a 10-row file (median of 5): the start-up cost;
- training rows/s per epoch of aaedetect's AAE and of PyOD's AutoEncoder at the same layer widths
  and batch size (PyOD from benchmarks/requirements.txt; skipped when it is not installed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

GIB = 1024 ** 3
AAEDETECT = [sys.executable, "-m", "aaedetect_cli"]


def make_table(rows: int, columns: int, seed: int = 0) -> pd.DataFrame:
    """Correlated numeric columns plus text columns with 8 categories (an eighth of ``columns``)."""
    rng = np.random.default_rng(seed)
    n_cat = max(1, columns // 8)
    n_num = columns - n_cat
    base = rng.normal(size=(rows, 4))
    mix = rng.normal(size=(4, n_num))
    data = {f"n{j}": v.round(5) for j, v in enumerate((base @ mix + 0.1 * rng.normal(size=(rows, n_num))).T)}
    for j in range(n_cat):
        data[f"c{j}"] = np.array(list("abcdefgh"))[rng.integers(0, 8, rows)]
    return pd.DataFrame(data)


def write_csv(path: Path, rows: int, columns: int, chunk: int = 250_000) -> None:
    """A CSV of ``rows`` rows written chunk by chunk (each chunk its own seed): memory stays small."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    schema = pa.Schema.from_pandas(make_table(1, columns), preserve_index=False)
    with pacsv.CSVWriter(str(path), schema) as out:
        for i, start in enumerate(range(0, rows, chunk)):
            out.write_table(pa.Table.from_pandas(make_table(min(chunk, rows - start), columns, seed=i),
                                                 preserve_index=False))


def write_tables(big: Path, train: Path, rows: int, train_rows: int, columns: int) -> tuple[Path, Path]:
    """The table to score (``rows``, chunk by chunk) and the training table, unless already there."""
    if not big.exists():
        write_csv(big, rows, columns)
    if not train.exists():
        make_table(train_rows, columns, seed=1000).to_csv(train, index=False)
    return big, train


def measured(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of ``cmd`` run alone under a fresh wrapper process."""
    wrapper = ("import resource, subprocess, sys, time\n"
               "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode\n"
               "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True)
    seconds, kib, rc = out.stdout.split()
    if rc != "0":
        raise SystemExit(f"{' '.join(map(str, cmd))} failed with exit code {rc}")
    return float(seconds), int(kib) * 1024


def io_floor(path: Path, out: Path) -> float:
    """pyarrow: read the CSV, append five float32 columns, write it (best of two)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        table = pacsv.read_csv(str(path))
        column = pa.array(np.zeros(table.num_rows, np.float32))
        for name in ("anomaly_score", "recon_score", "latent_score", "neighbor_score", "is_anomaly"):
            table = table.append_column(name, column)
        pacsv.write_csv(table, str(out))
        best = min(best, time.perf_counter() - started)
        del table
    out.unlink()
    return best


def fit_split(path: Path, model: Path, epochs: int, device: str) -> tuple[dict[str, float], "object"]:
    """Fit as `aaedetect fit` does, timing each step; returns (seconds by step, the detector)."""
    from aaedetect import AAEDetector
    from aaedetect.tables import TableSource

    started = time.perf_counter()
    with TableSource(path) as source:
        df = source.read()
    split = {"read": time.perf_counter() - started}
    det = AAEDetector(max_epochs=epochs, patience=epochs + 1, device=device, random_state=0)
    det.fit(df, source=path.name, first_line=2)
    split.update(det.fit_seconds_)
    started = time.perf_counter()
    data, entry = det.export_onnx()
    split["export"] = time.perf_counter() - started
    started = time.perf_counter()
    det.save(model, force=True)  # exports again: timed as the whole write, export included
    split["write (with export)"] = time.perf_counter() - started
    return split, det


def startup(model: Path, work: Path, source: Path, repeat: int = 5) -> float:
    ten = work / "ten.csv"
    with open(source) as fh, open(ten, "w") as out:
        out.writelines(next(fh) for _ in range(11))
    times = [measured([*AAEDETECT, "score", str(ten), "-m", str(model), "-o", str(work / "ten-out.csv"),
                       "-q"])[0] for _ in range(repeat)]
    return statistics.median(times)


def training_rows_per_second(det, df: pd.DataFrame, epochs: int) -> tuple[float, float | None]:
    """(aaedetect, PyOD AutoEncoder) training rows/s per epoch at the same widths and batch size."""
    seconds = det.training_.seconds / max(det.training_.epochs_run, 1)
    ours = det.n_rows_["train"] / seconds
    try:
        from pyod.models.auto_encoder import AutoEncoder
    except ImportError:
        return ours, None
    import torch

    numeric, categorical = det.preprocessor_.transform(df)
    with torch.no_grad():
        x = det.graph_.features(torch.from_numpy(numeric), torch.from_numpy(categorical)).numpy()
    h1, h2 = det.net_config_.hidden
    pyod = AutoEncoder(hidden_neuron_list=[h1, h2], epoch_num=epochs, batch_size=det.batch_size,
                       preprocessing=False, verbose=0, random_state=0)
    started = time.perf_counter()
    pyod.fit(x)
    return ours, len(x) * epochs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the table scored")
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--workdir", type=Path, default=None, help="keep the generated files here")
    parser.add_argument("--demo", type=Path, default=Path(__file__).resolve().parent.parent / "datasets"
                        / "demo" / "telemetry_train.csv", help="the small fit measured besides")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="aaedetect-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    big, train = write_tables(work / f"table-{args.rows}.csv", work / f"train-{args.train_rows}.csv",
                              args.rows, args.train_rows, args.columns)
    print(f"# aaedetect speed: {args.rows:,} x {args.columns} table ({big.stat().st_size / GIB:.2f} GiB CSV), "
          f"{os.cpu_count()} CPUs, device {args.device}\n")

    model = work / "model"
    split, det = fit_split(train, model, args.epochs, args.device)
    cfg = det.net_config_
    print(f"## fit: {args.train_rows:,} rows, {args.epochs} epochs; network {cfg.hidden[0]}/{cfg.hidden[1]}, "
          f"{cfg.n_inputs} encoded features, {det.manifest()['neighbors']['rows']:,} neighbour rows\n")
    print("| step | seconds |\n| --- | ---: |")
    for step, seconds in split.items():
        print(f"| {step} | {seconds:.2f} |")
    small_split, _ = fit_split(args.demo, work / "demo-model", 100, args.device)
    outside = sum(v for k, v in small_split.items() if k not in ("train", "write (with export)"))
    total = sum(v for k, v in small_split.items() if k != "write (with export)")
    print(f"\ndemo training file ({args.demo.name}, default epochs): "
          + ", ".join(f"{k} {v:.2f}s" for k, v in small_split.items())
          + f"; everything but training: {outside / total:.0%} of the fit\n")

    # Start-up first: measured right after the 1M-row job, whose gigabyte of reading and writing
    # the machine is still settling, it took 0.65 s where it takes 0.45 s alone (2026-11-26).
    tiny = startup(model, work, train)
    out = work / "scored.csv"
    wall, peak = measured([*AAEDETECT, "score", str(big), "-m", str(model), "-o", str(out), "-q",
                           "--device", args.device])
    out.unlink()
    floor = io_floor(big, work / "floor.csv")
    print("## score\n\n| what | seconds | rows/s | peak RSS GiB |\n| --- | ---: | ---: | ---: |")
    print(f"| aaedetect score (whole process) | {wall:.1f} | {args.rows / wall:,.0f} | {peak / GIB:.2f} |")
    print(f"| I/O floor (pyarrow read, append 5 columns, write) | {floor:.1f} | {args.rows / floor:,.0f} | |")
    print(f"\nratio to the floor: {wall / floor:.2f}x\n")
    print(f"10-row `aaedetect score`, whole process (median of 5, measured before the 1M-row job): "
          f"{tiny:.2f} s\n")

    ours, pyod = training_rows_per_second(det, make_table(args.train_rows, args.columns, seed=1000), args.epochs)
    print(f"training rows/s per epoch (batch {det.batch_size}, widths {cfg.hidden[0]}/{cfg.hidden[1]}): "
          f"aaedetect {ours:,.0f}; PyOD AutoEncoder " + (f"{pyod:,.0f}" if pyod else "not installed"))


if __name__ == "__main__":
    main()
