"""Peak memory and throughput of `aaedetect score` as the file grows: it streams, so its peak
resident memory should not depend on the file's size.

    python benchmarks/memory.py [--sizes 1000000 5000000] [--columns 32] [--workdir DIR]

Writes a synthetic CSV per size (28 numeric and 4 text columns for --columns 32, correlated; the
same generator as benchmarks/speed.py), fits one model with the defaults on a 100,000-row sample of
the first file (`aaedetect fit --max-rows`; 3 epochs, since memory and speed do not depend on them),
then runs `aaedetect score FILE -m MODEL -o OUT.csv` as a fresh process per size and prints its
wall time, rows/s and peak RSS (the child's ru_maxrss).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import GIB, measured, write_csv  # noqa: E402  (the speed benchmark's table and timer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--columns", type=int, default=32)
    parser.add_argument("--workdir", type=Path, default=None, help="where the CSVs go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    aaedetect = [sys.executable, "-m", "aaedetect_cli"]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="aaedetect-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    files = []
    for rows in args.sizes:
        path = work / f"table-{rows}.csv"
        if not path.exists():
            started = time.perf_counter()
            write_csv(path, rows, args.columns)
            print(f"wrote {path} ({path.stat().st_size / GIB:.2f} GiB) in {time.perf_counter() - started:.0f}s",
                  file=sys.stderr)
        files.append((rows, path))
    model = work / "model"
    if not model.exists():
        subprocess.run([*aaedetect, "fit", str(files[0][1]), "-o", str(model), "--max-rows", "100000",
                        "--epochs", "3", "-q"], check=True)
    print(f"aaedetect score, {args.columns} columns, model fitted with the defaults "
          f"(3 epochs) on 100,000 sampled rows; {os.cpu_count()} CPUs\n")
    print("| rows | file GiB | wall s | rows/s | peak RSS GiB |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    peaks = []
    for rows, path in files:
        out = work / f"scored-{rows}.csv"
        seconds, peak = measured([*aaedetect, "score", str(path), "-m", str(model), "-o", str(out), "-q"])
        peaks.append(peak)
        print(f"| {rows:,} | {path.stat().st_size / GIB:.2f} | {seconds:.1f} | {rows / seconds:,.0f} | "
              f"{peak / GIB:.3f} |", flush=True)
        out.unlink()
    if len(peaks) > 1:
        print(f"largest peak / smallest peak: {max(peaks) / min(peaks):.3f}")
    if not args.keep and args.workdir is None:
        for _, path in files:
            path.unlink()


if __name__ == "__main__":
    main()
