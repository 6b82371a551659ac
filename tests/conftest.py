"""Shared fixtures: small tables and one small fitted model per test session."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "datasets" / "demo"
#: Few epochs: these fixtures test plumbing, not detection quality.
FAST = dict(max_epochs=4, batch_size=64, random_state=0)
#: Folder of the shared benchmark CSVs; tests that need it are skipped when the variable is not
#: set, and the whole run fails when it is set but unusable (see pytest_configure).
SHARED_DATA = os.environ.get("AAEDETECT_DATA")
needs_shared_data = pytest.mark.skipif(
    SHARED_DATA is None, reason="set AAEDETECT_DATA to a folder of benchmark CSVs (e.g. ../shared/datasets)")


def shared_data_problem(value: str | None) -> str | None:
    """Why ``AAEDETECT_DATA=value`` cannot serve the shared-data tests; None when it can or is unset."""
    if value is None:
        return None
    folder = Path(value)
    if not value or not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
        return f"AAEDETECT_DATA={value!r} is not a readable folder"
    if not any(folder.glob("*.csv.gz")):
        return f"AAEDETECT_DATA={value!r} holds no *.csv.gz benchmark tables"
    return None


def pytest_configure(config):
    # A set but wrong AAEDETECT_DATA must not turn the quality floors into silent skips.
    problem = shared_data_problem(SHARED_DATA)
    if problem:
        raise pytest.UsageError(f"{problem}; fix it, or unset it to skip the shared-data tests")


def make_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Mixed numeric/categorical rows with a correlation, some missing values and an id column."""
    rng = np.random.default_rng(seed)
    a = rng.normal(10, 2, n)
    kind = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    b = 3 * a + np.where(kind == "red", 5, -5) + rng.normal(0, 0.5, n)
    c = rng.exponential(1.0, n)
    c[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "id": [f"row-{i}" for i in range(n)],
        "a": a.round(4), "b": b.round(4), "c": c.round(4),
        "kind": kind,
        "code": rng.choice([1, 2, 3], n),
        "const": 7.0,
    })


@pytest.fixture(scope="session")
def table() -> pd.DataFrame:
    return make_table()


@pytest.fixture(scope="session")
def fitted(table):
    """One small fitted detector (treat as read-only)."""
    from aaedetect import AAEDetector

    return AAEDetector(**FAST).fit(table)


@pytest.fixture(scope="session")
def model_dir(fitted, tmp_path_factory) -> Path:
    """The small fitted model saved to a directory (treat as read-only)."""
    path = tmp_path_factory.mktemp("models") / "model"
    fitted.save(path)
    return path


@pytest.fixture
def csv_file(table, tmp_path) -> Path:
    path = tmp_path / "data.csv"
    table.to_csv(path, index=False)
    return path


def load_benchmark(name: str):
    """``benchmarks/NAME.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"aaedetect_benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def labelled_folder(tmp_path_factory) -> Path:
    """A folder with one small labelled dataset (``toy.csv.gz``), laid out as the shared ones are:
    feature columns and a final ``label`` column, 1 = anomaly (20 rows, shifted so they can be found)."""
    folder = tmp_path_factory.mktemp("data")
    table = make_table()
    rng = np.random.default_rng(0)
    label = np.zeros(len(table), dtype=int)
    label[rng.choice(len(table), 20, replace=False)] = 1
    table.loc[label == 1, table.select_dtypes("number").columns[0]] += 8.0
    table.assign(label=label).to_csv(folder / "toy.csv.gz", index=False)
    return folder
