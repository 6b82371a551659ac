"""Processes killed at random moments: the target path holds the complete result or nothing
(or, for `fit --force` over a model, the old model intact)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from aaedetect import load

CLI = [sys.executable, "-m", "aaedetect_cli"]
#: Kill moments as shares of an uninterrupted run's duration: random, but the same in every run,
#: spread over start-up, reading, training or scoring, and writing. `make test` tries every other
#: one (early, middle, late); the rest run with the slow tests (`make test-all`).
SHARES = tuple(pytest.param(share, marks=[pytest.mark.slow] if i % 2 else [])
               for i, share in enumerate(sorted(np.round(np.random.default_rng(7).uniform(0.05, 0.98, 6), 2))))
#: Rows of the file that `score` is killed while scoring (a few seconds of work).
SCORE_ROWS = 100_000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Training and scoring files, a model, and how long each command takes when left alone."""
    from conftest import make_table

    tmp = tmp_path_factory.mktemp("kill")
    make_table(3000, seed=1).to_csv(tmp / "train.csv", index=False)
    make_table(SCORE_ROWS, seed=2).to_csv(tmp / "big.csv", index=False)
    started = time.perf_counter()
    subprocess.run([*CLI, *FIT_ARGS(tmp, tmp / "model")], check=True)
    durations = {"fit": time.perf_counter() - started}
    started = time.perf_counter()
    subprocess.run([*CLI, *SCORE_ARGS(tmp, tmp / "scored.csv")], check=True)
    durations["score"] = time.perf_counter() - started
    return tmp, durations


def FIT_ARGS(tmp, target):
    return ["fit", str(tmp / "train.csv"), "-o", str(target), "--epochs", "8", "--quiet", "--force"]


def SCORE_ARGS(tmp, out):
    return ["score", str(tmp / "big.csv"), "-m", str(tmp / "model"), "-o", str(out),
            "--chunk-rows", "20000", "--quiet"]


def run_and_kill(args, delay, sig=signal.SIGKILL):
    proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=120)
    return proc


@pytest.mark.parametrize("share", SHARES)
def test_killed_fit_never_harms_the_model_at_the_target(files, tmp_path, share):
    tmp, durations = files
    target = tmp_path / "model"
    shutil.copytree(tmp / "model", target)
    run_and_kill(FIT_ARGS(tmp, target), share * durations["fit"])
    load(target)  # complete and valid: every checksum matches, old model or new


@pytest.mark.parametrize("share", SHARES)
def test_killed_fit_leaves_nothing_or_a_whole_model(files, tmp_path, share):
    tmp, durations = files
    target = tmp_path / "model"
    run_and_kill(FIT_ARGS(tmp, target), share * durations["fit"])
    if target.exists():
        load(target)


@pytest.mark.parametrize("share", SHARES)
def test_killed_score_leaves_old_output_or_the_whole_new_one(files, tmp_path, share):
    tmp, durations = files
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    run_and_kill(SCORE_ARGS(tmp, out), share * durations["score"])
    if out.read_text()[:4] != "old\n":
        scored = pd.read_csv(out, usecols=["anomaly_score"])
        assert len(scored) == SCORE_ROWS and np.isfinite(scored["anomaly_score"]).all()


def test_sigterm_cleans_up_and_says_so(files, tmp_path):
    """SIGTERM while the output is being written (its temporary file exists): exit 143, and
    neither the output nor the temporary file is left."""
    tmp, _ = files
    out = tmp_path / "out.parquet"
    proc = subprocess.Popen([*CLI, *map(str, SCORE_ARGS(tmp, out))], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    started = time.monotonic()
    deadline = started + 60
    while not list(tmp_path.glob(".out.parquet.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    seen = time.monotonic() - started
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    stderr = proc.stderr.read().decode()
    assert proc.returncode == 143, (f"exit {proc.returncode}: the signal (sent {seen:.2f}s after the "
                                    f"start) did not stop the command; its stderr: {stderr[-2000:]!r}")
    assert stderr.strip().splitlines()[-1] == "error: terminated (SIGTERM); nothing was written"
    assert list(tmp_path.iterdir()) == []  # no output and no temporary file


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_whose_exception_was_lost_still_puts_nothing_in_place(tmp_path, monkeypatch):
    """A signal handler's exception raised while a finalizer runs is only printed by Python; the
    stop must still keep the output and the model directory from being put in place."""
    from aaedetect import errors
    from aaedetect.artifacts import write_model_dir
    from aaedetect.tables import AtomicOutput

    monkeypatch.setattr(errors, "_STOP_REQUESTED", False)

    class Finalizer:
        def __del__(self):
            errors.request_stop()  # as the CLI's SIGTERM handler does

    with pytest.raises(errors.Terminated):
        with AtomicOutput(tmp_path / "out.csv") as out:
            out.write(pd.DataFrame({"a": [1, 2]}))
            Finalizer()  # deleted at once: its exception is lost
    with pytest.raises(errors.Terminated):
        write_model_dir(tmp_path / "model", {"format": "x"}, {"weights.npz": b"0"})
    assert list(tmp_path.iterdir()) == []
