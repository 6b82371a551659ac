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
#: spread over start-up, reading, training or scoring, and writing.
SHARES = tuple(np.round(np.random.default_rng(7).uniform(0.05, 0.98, 6), 2))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Training and scoring files, a model, and how long each command takes when left alone."""
    from conftest import make_table

    tmp = tmp_path_factory.mktemp("kill")
    make_table(3000, seed=1).to_csv(tmp / "train.csv", index=False)
    make_table(300_000, seed=2).to_csv(tmp / "big.csv", index=False)
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


@pytest.mark.parametrize("share", SHARES[:3])
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
        assert len(scored) == 300_000 and np.isfinite(scored["anomaly_score"]).all()


def test_sigterm_cleans_up_and_says_so(files, tmp_path):
    tmp, durations = files
    out = tmp_path / "out.parquet"
    proc = run_and_kill(SCORE_ARGS(tmp, out), 0.8 * durations["score"], signal.SIGTERM)
    assert proc.returncode == 143, "the signal came too late: scoring had finished"
    assert proc.stderr.read().decode().strip().splitlines()[-1] == "error: terminated (SIGTERM); nothing was written"
    assert list(tmp_path.iterdir()) == []  # no output and no temporary file
