"""Demo and test data: a deterministic machine-telemetry generator with labelled anomalies, and
labelled anomaly tables built from the datasets that ship inside scikit-learn.

``datasets/generate_demo.py`` writes the committed demo files from :func:`make_telemetry`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SITES = ("north", "south", "east", "west")
SITE_AMBIENT = {"north": 8.0, "south": 24.0, "east": 15.0, "west": 18.0}
# machine type -> (share of the fleet, nominal rpm, rated kW, heating per unit load, firmwares)
MACHINES = {
    "pump": (0.40, 1800.0, 55.0, 30.0, ("v1.2", "v1.3")),
    "compressor": (0.30, 3600.0, 110.0, 45.0, ("v1.3", "v2.0")),
    "fan": (0.20, 1200.0, 15.0, 15.0, ("v1.2",)),
    "turbine": (0.10, 6000.0, 400.0, 60.0, ("v2.0",)),
}
ANOMALY_KINDS = ("out_of_range", "broken_correlation", "rare_combination", "wrong_site_climate")


def _normal_rows(n: int, rng: np.random.Generator) -> pd.DataFrame:
    types = list(MACHINES)
    machine = rng.choice(types, size=n, p=[MACHINES[t][0] for t in types])
    site = rng.choice(SITES, size=n)
    rpm0 = np.array([MACHINES[t][1] for t in machine])
    kw0 = np.array([MACHINES[t][2] for t in machine])
    heat = np.array([MACHINES[t][3] for t in machine])
    firmware = np.array([rng.choice(MACHINES[t][4]) for t in machine])
    load = np.clip(rng.beta(4, 3, size=n) * 100, 5, 100)
    ambient = np.array([SITE_AMBIENT[s] for s in site]) + rng.normal(0, 4, n)
    rpm = rpm0 * (0.55 + 0.45 * load / 100) * rng.normal(1, 0.02, n)
    power = kw0 * (0.15 + 0.85 * load / 100) * rng.normal(1, 0.04, n)
    temperature = ambient + heat * load / 100 + rng.normal(0, 2.0, n)
    vibration = (0.4 + 0.9 * rpm / rpm0) * rng.lognormal(0, 0.15, n)
    pressure = np.where(np.isin(machine, ["pump", "compressor"]),
                        (2.0 + 6.0 * load / 100) * rng.normal(1, 0.05, n), np.nan)
    oil = np.clip(rng.beta(8, 2, size=n), 0, 1)
    oil[rng.random(n) < 0.03] = np.nan  # the oil sensor drops out now and then
    alarms = rng.poisson(0.2 + 0.6 * (load > 90), n)
    return pd.DataFrame({
        "site": site, "machine_type": machine, "firmware": firmware,
        "load_pct": load.round(1), "ambient_c": ambient.round(1), "rpm": rpm.round(0),
        "power_kw": power.round(2), "temperature_c": temperature.round(1),
        "vibration_mm_s": vibration.round(3), "pressure_bar": pressure.round(2),
        "oil_quality": oil.round(3), "alarm_count": alarms,
    })


def _inject(df: pd.DataFrame, kind: str, rng: np.random.Generator) -> pd.DataFrame:
    """Turn the rows of ``df`` into anomalies of one kind."""
    df = df.copy()
    n = len(df)
    if kind == "out_of_range":
        which = rng.integers(0, 3, n)
        df.loc[which == 0, "temperature_c"] += rng.uniform(35, 70, (which == 0).sum())
        df.loc[which == 1, "vibration_mm_s"] *= rng.uniform(4, 9, (which == 1).sum())
        df.loc[which == 2, "oil_quality"] = rng.uniform(0.0, 0.15, (which == 2).sum()).round(3)
    elif kind == "broken_correlation":
        # Power and heat of a heavy load while the load reads light (or the reverse).
        which = rng.integers(0, 2, n)
        flip = which == 0
        load = df.loc[flip, "load_pct"].to_numpy()
        shift = rng.uniform(35, 50, flip.sum())
        df.loc[flip, "load_pct"] = np.clip(np.where(load > 55, load - shift, load + shift), 5, 100).round(1)
        kw0 = df["machine_type"].map(lambda t: MACHINES[t][2]).to_numpy()
        rpm0 = df["machine_type"].map(lambda t: MACHINES[t][1]).to_numpy()
        df.loc[~flip, "rpm"] = (rpm0[~flip] * rng.uniform(0.25, 0.4, (~flip).sum())).round(0)
        df.loc[~flip, "power_kw"] = (kw0[~flip] * rng.uniform(0.9, 1.1, (~flip).sum())).round(2)
    elif kind == "rare_combination":
        # Firmware never installed on that machine type, with a pressure reading it cannot have.
        df["firmware"] = np.where(df["machine_type"].isin(["fan", "pump"]), "v2.0", "v1.2")
        df.loc[df["machine_type"].isin(["fan", "turbine"]), "pressure_bar"] = round(float(rng.uniform(2, 8)), 2)
    elif kind == "wrong_site_climate":
        # Ambient and machine temperature of the warmest site, reported from the coldest.
        df["site"] = "north"
        df["ambient_c"] = (SITE_AMBIENT["south"] + 8 + rng.normal(0, 2, n)).round(1)
        heat = df["machine_type"].map(lambda t: MACHINES[t][3]).to_numpy()
        df["temperature_c"] = (df["ambient_c"] + heat * df["load_pct"] / 100 + rng.normal(0, 2, n)).round(1)
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}")
    return df


def changed_columns(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    """Per row, the ``";"``-joined names of the columns of ``before`` whose value differs in
    ``after`` (same rows, same index), in column order; a missing value equals a missing value."""
    same = [(before[c] == after[c]) | (before[c].isna() & after[c].isna()) for c in before.columns]
    changed = ~np.column_stack(same) if same else np.zeros((len(before), 0), bool)
    names = np.asarray(before.columns, dtype=object)
    return [";".join(names[row]) for row in changed]


def make_telemetry(n_train: int = 5000, n_test: int = 2000, anomaly_share: float = 0.08, seed: int = 7,
                   *, broken_columns: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A machine-telemetry table: ``(train, test)``, deterministic for a given seed.

    ``train`` holds normal readings only. ``test`` holds normal readings and, mixed in, a share
    ``anomaly_share`` of anomalies of the kinds in ``ANOMALY_KINDS``, with columns ``label``
    (1 = anomaly) and ``anomaly_kind``. Both start with a ``reading_id`` column (an identifier that
    ``fit`` leaves out by itself).

    ``broken_columns``: add a ``broken_columns`` column to ``test``, the ``";"``-joined names of
    the columns that the injection actually changed in that row (``""`` for normal rows). The rows
    are the same either way: the flag draws no random numbers.
    """
    rng = np.random.default_rng(seed)
    train = _normal_rows(n_train, rng)
    n_anom = int(round(anomaly_share * n_test))
    test = _normal_rows(n_test - n_anom, rng)
    test["label"], test["anomaly_kind"] = 0, "none"
    if broken_columns:
        test["broken_columns"] = ""
    pieces = [test]
    for k, part in enumerate(np.array_split(np.arange(n_anom), len(ANOMALY_KINDS))):
        kind = ANOMALY_KINDS[k]
        clean = _normal_rows(len(part), rng)
        bad = _inject(clean, kind, rng)
        bad["label"], bad["anomaly_kind"] = 1, kind
        if broken_columns:
            bad["broken_columns"] = changed_columns(clean, bad[clean.columns])
        pieces.append(bad)
    test = pd.concat(pieces, ignore_index=True)
    test = test.iloc[rng.permutation(len(test))].reset_index(drop=True)
    train.insert(0, "reading_id", [f"r{i:06d}" for i in range(len(train))])
    test.insert(0, "reading_id", [f"t{i:06d}" for i in range(len(test))])
    return train, test


SKLEARN_TABLES = ("breast_cancer", "wine", "digits", "iris")


def load_sklearn_anomaly(name: str, *, anomaly_share: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """A labelled anomaly table from a dataset bundled with scikit-learn (no download).

    The largest class is "normal"; anomalies are drawn from the other classes so that they make up
    ``anomaly_share`` of the result (breast_cancer: benign normal, malignant anomalies). Columns
    are the features, then ``label`` (1 = anomaly).
    """
    from sklearn import datasets as skd

    loaders = {"breast_cancer": skd.load_breast_cancer, "wine": skd.load_wine,
               "digits": skd.load_digits, "iris": skd.load_iris}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(SKLEARN_TABLES)}")
    bunch = loaders[name]()
    X = pd.DataFrame(bunch.data, columns=[str(c).replace(" ", "_") for c in bunch.feature_names])
    y = np.asarray(bunch.target)
    classes, counts = np.unique(y, return_counts=True)
    normal_class = classes[np.argmax(counts)]
    rng = np.random.default_rng(seed)
    normal_idx = np.flatnonzero(y == normal_class)
    other_idx = np.flatnonzero(y != normal_class)
    n_anom = max(1, int(round(anomaly_share * len(normal_idx) / (1 - anomaly_share))))
    anom_idx = rng.choice(other_idx, size=min(n_anom, len(other_idx)), replace=False)
    idx = np.concatenate([normal_idx, anom_idx])
    out = X.iloc[idx].reset_index(drop=True)
    out["label"] = np.r_[np.zeros(len(normal_idx), int), np.ones(len(anom_idx), int)]
    return out.iloc[rng.permutation(len(out))].reset_index(drop=True)
