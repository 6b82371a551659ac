"""Demo and test data: a deterministic machine-telemetry generator with labelled anomalies, a
building-HVAC generator whose anomalies each break one known column (to judge explanations), and
labelled anomaly tables built from the datasets that ship inside scikit-learn.

``datasets/generate_demo.py`` writes the committed demo files from :func:`make_telemetry`,
``datasets/generate_breaks.py`` those of :func:`make_breaks`.
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


# ------------------------------------------------------------- single-column breaks
BREAK_KINDS = ("spike", "relation", "category")
# building type -> (share, heating setpoint °C, mean occupancy, base airflow m³/h, HVAC units)
BUILDINGS = {
    "office": (0.35, 21.5, 120, 1500.0, ("RT-40", "RT-60")),
    "school": (0.25, 20.5, 300, 2500.0, ("RT-20", "RT-40")),
    "warehouse": (0.20, 16.0, 15, 4000.0, ("AH-10",)),
    "hospital": (0.20, 23.0, 200, 6000.0, ("CH-200",)),
}
#: HVAC mode -> (setpoint shift °C, coefficient of performance: thermal kW per electric kW)
MODES = {"heating": (-0.5, 3.0), "ventilation": (0.0, np.inf), "cooling": (1.0, 3.5)}
#: Outdoor temperatures (°C) below / above which a unit heats / cools (each row's own threshold
#: is drawn around these with MODE_SWITCH_SD).
HEAT_BELOW, COOL_ABOVE, MODE_SWITCH_SD = 10.0, 20.0, 1.5
CATEGORY_COLUMNS = ("building", "hvac_unit", "mode")
#: A relation break moves a value at least this many noise standard deviations away from what
#: the rest of its row predicts, and at least RELATION_SPREAD of the column's standard deviation
#: in training (so that the change is large on the column's own scale too, not only against
#: a small multiplicative noise).
RELATION_SIGMAS, RELATION_SPREAD = 5.0, 0.5


def _building_of(df: pd.DataFrame, field: int) -> np.ndarray:
    """Field ``field`` of ``BUILDINGS`` for each row's building."""
    return df["building"].map({b: spec[field] for b, spec in BUILDINGS.items()}).to_numpy(float)


def _mode_of(df: pd.DataFrame, field: int) -> np.ndarray:
    """Field ``field`` of ``MODES`` for each row's mode."""
    return df["mode"].map({m: spec[field] for m, spec in MODES.items()}).to_numpy(float)


def _setpoint(df):
    return _building_of(df, 1) + _mode_of(df, 0)


def _indoor(df):
    return df["setpoint_c"].to_numpy() + 0.1 * (df["outdoor_c"] - df["setpoint_c"]).to_numpy()


def _occupancy(df):
    return _building_of(df, 2)


def _airflow(df):
    return _building_of(df, 3) + 25.0 * df["occupancy"].to_numpy()


def _co2(df):
    # Outdoor CO2 plus 18 l/h of CO2 per person diluted in the supplied air (steady state).
    return 420.0 + 18_000.0 * df["occupancy"].to_numpy() / df["airflow_m3h"].to_numpy()


def _supply_air(df):
    outdoor, mode = df["outdoor_c"].to_numpy(), df["mode"].to_numpy()
    heated = 30.0 + 0.3 * (df["setpoint_c"].to_numpy() - outdoor)
    cooled = np.full(len(df), 13.0)
    return np.select([mode == "heating", mode == "cooling"], [heated, cooled], outdoor + 1.5)


def _power(df):
    # Heat moved into the supply air (1.2 kg/m³, 1.005 kJ/kg·K) over the unit's COP, plus the fan.
    airflow = df["airflow_m3h"].to_numpy()
    lift = np.abs(df["supply_air_c"].to_numpy() - df["outdoor_c"].to_numpy())
    return airflow / 3600 * 1.2 * 1.005 * lift / _mode_of(df, 1) + 0.0004 * airflow


def _humidity(df):
    outdoor, mode = df["outdoor_c"].to_numpy(), df["mode"].to_numpy()
    return np.select([mode == "heating", mode == "cooling"],
                     [30.0 + 0.4 * outdoor, np.full(len(df), 48.0)], 55.0 - 0.3 * (outdoor - 15.0))


#: Numeric column -> (its value expected from the rest of the row, noise standard deviation,
#: whether the noise is multiplicative (then the deviation is in log units), decimals). In the
#: order they are generated: each depends only on the columns before it.
RELATIONS = {
    "setpoint_c": (_setpoint, 0.3, False, 1),
    "indoor_c": (_indoor, 0.4, False, 1),
    "occupancy": (_occupancy, 0.35, True, 0),
    "airflow_m3h": (_airflow, 0.05, True, 0),
    "co2_ppm": (_co2, 25.0, False, 0),
    "supply_air_c": (_supply_air, 0.8, False, 1),
    "power_kw": (_power, 0.06, True, 2),
    "humidity_pct": (_humidity, 3.0, False, 1),
}
#: Numeric column -> (direction of its spikes: +1 up, -1 down, 0 either; decimals; hard limits).
SPIKES = {
    "outdoor_c": (0, 1, None), "setpoint_c": (0, 1, None), "indoor_c": (0, 1, None),
    "occupancy": (1, 0, None), "airflow_m3h": (1, 0, None), "co2_ppm": (1, 0, None),
    "supply_air_c": (0, 1, None), "power_kw": (1, 2, None), "humidity_pct": (1, 1, (0.0, 100.0)),
}
#: The columns each kind of break can hit.
BREAKABLE = {"spike": tuple(SPIKES), "relation": tuple(RELATIONS), "category": CATEGORY_COLUMNS}


def _building_rows(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Normal readings of building HVAC units, one per row, in the column order of the table."""
    names = list(BUILDINGS)
    building = rng.choice(names, size=n, p=[BUILDINGS[b][0] for b in names])
    pick = rng.random(n)  # which of its building's HVAC units a row has, all equally likely
    unit = np.array([BUILDINGS[b][4][int(p * len(BUILDINGS[b][4]))] for b, p in zip(building, pick)])
    outdoor = (12.0 + 11.0 * np.sin(2 * np.pi * rng.random(n)) + rng.normal(0, 3.0, n)).round(1)
    heating = outdoor < HEAT_BELOW + rng.normal(0, MODE_SWITCH_SD, n)
    cooling = outdoor > COOL_ABOVE + rng.normal(0, MODE_SWITCH_SD, n)
    mode = np.where(heating, "heating", np.where(cooling, "cooling", "ventilation"))
    df = pd.DataFrame({"building": building, "hvac_unit": unit, "mode": mode, "outdoor_c": outdoor})
    for column, (expected, sd, log, decimals) in RELATIONS.items():
        centre = expected(df)
        noise = rng.normal(0, sd, n)
        value = centre * np.exp(noise) if log else centre + noise
        if column == "occupancy":
            value = np.maximum(value, 1)  # someone is in when the unit runs
        df[column] = _rounded(value, decimals)
    df.loc[rng.random(n) < 0.04, "humidity_pct"] = np.nan  # the humidity sensor drops out now and then
    return df


def _rounded(value, decimals: int):
    """``value`` rounded to ``decimals``; integers (int64) for 0 decimals."""
    value = np.round(value, decimals)
    return value.astype(np.int64) if decimals == 0 else value


class _Breaker:
    """Breaks one column of one row of ``clean`` (normal rows), with the training table's values
    at hand."""

    def __init__(self, train: pd.DataFrame, clean: pd.DataFrame, rng: np.random.Generator):
        self.train, self.clean, self.rng = train, clean, rng
        self.pools = {c: train[c].dropna().to_numpy() for c in RELATIONS}
        self.spreads = {c: float(np.std(pool)) for c, pool in self.pools.items()}
        self.centres = {c: expected(clean) for c, (expected, *_) in RELATIONS.items()}
        self.categories = {c: sorted(train[c].unique()) for c in CATEGORY_COLUMNS}
        self.mode_range = {m: (g.min(), g.max()) for m, g in train.groupby("mode")["outdoor_c"]}

    def __call__(self, kind: str, i: int, column: str):
        """The broken value of ``column`` in row ``i``, or None where that row cannot take this
        break (a missing value, no category that fits)."""
        if kind != "category" and pd.isna(self.clean.at[i, column]):
            return None
        return getattr(self, kind)(i, column)

    def spike(self, i: int, column: str):
        """Far outside the column's training range: beyond its minimum or maximum by a quarter to
        a whole of that range."""
        direction, decimals, limits = SPIKES[column]
        lo, hi = self.train[column].min(), self.train[column].max()
        push = self.rng.uniform(0.25, 1.0) * (hi - lo)
        up = direction > 0 or (direction == 0 and self.rng.random() < 0.5)
        value = hi + push if up else lo - push
        if limits is not None:
            value = min(max(value, limits[0]), limits[1])
        return _rounded(value, decimals)

    def relation(self, i: int, column: str, tries: int = 64):
        """The column's value in a random training row, far from what the rest of this row
        predicts (see ``RELATION_SIGMAS``)."""
        _, sd, log, _ = RELATIONS[column]
        centre = self.centres[column][i]
        draws = self.rng.choice(self.pools[column], tries)
        gap = np.abs(np.log(draws) - np.log(centre)) if log else np.abs(draws - centre)
        far = np.abs(draws - centre) >= RELATION_SPREAD * self.spreads[column]
        fits = (gap >= RELATION_SIGMAS * sd) & far & (draws != self.clean.at[i, column])
        return draws[np.argmax(fits)] if fits.any() else None

    def category(self, i: int, column: str):
        """A category of the training data that never comes with the rest of this row there."""
        row = self.clean.loc[i]
        if column == "building":  # a building that never has this row's HVAC unit
            fits = [b for b in self.categories[column] if row["hvac_unit"] not in BUILDINGS[b][4]]
        elif column == "hvac_unit":  # a unit never installed in this row's building
            fits = [u for u in self.categories[column] if u not in BUILDINGS[row["building"]][4]]
        else:  # a mode never seen at this outdoor temperature (2 °C margin)
            low_high = self.mode_range
            fits = [m for m in self.categories[column] if m != row["mode"]
                    and not low_high[m][0] - 2 <= row["outdoor_c"] <= low_high[m][1] + 2]
        return str(self.rng.choice(fits)) if fits else None


def _break_tables(n_train: int, n_test: int, break_share: float,
                  seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(train, clean, test)`` of :func:`make_breaks`: ``clean`` is ``test``'s feature columns
    before the breaks (same rows, same order)."""
    if not 0 <= break_share <= 1:
        raise ValueError(f"break_share {break_share} must be between 0 and 1")
    rng = np.random.default_rng(seed)
    train = _building_rows(n_train, rng)
    clean = _building_rows(n_test, rng)
    breaker = _Breaker(train, clean, rng)
    kinds, columns = np.full(n_test, "none", dtype=object), np.full(n_test, "", dtype=object)
    values: dict[str, dict[int, object]] = {}
    order = rng.permutation(n_test)
    n_broken = int(round(break_share * n_test))
    for kind, part in zip(BREAK_KINDS, np.array_split(np.arange(n_broken), len(BREAK_KINDS))):
        # The kind's columns in turn, in a shuffled order, so that each gets about as many breaks.
        for column in map(str, np.resize(rng.permutation(BREAKABLE[kind]), len(part))):
            for i in order[kinds[order] == "none"]:
                value = breaker(kind, i, column)
                if value is not None:
                    break
            else:
                raise ValueError(f"too few test rows ({n_test}) for {n_broken} breaks: no row left "
                                 f"that can take a {kind} break of {column!r}")
            kinds[i], columns[i] = kind, column
            values.setdefault(column, {})[i] = value
    test = clean.copy()
    for column, broken in values.items():
        test.loc[list(broken), column] = list(broken.values())
    test["label"] = (kinds != "none").astype(np.int64)
    test["break_kind"], test["broken_column"] = kinds.astype(str), columns.astype(str)
    return train, clean, test


def make_breaks(n_train: int = 5000, n_test: int = 2000, break_share: float = 0.1,
                seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Building HVAC readings with single-column breaks: ``(train, test)``, deterministic for a
    given seed; a benchmark for explanations, where the broken column is known.

    Features: three categorical columns (``building``; ``hvac_unit``, tied to the building;
    ``mode``, heating/ventilation/cooling, set by the outdoor temperature) and nine numeric ones,
    each but ``outdoor_c`` computed from the columns before it plus noise (see ``RELATIONS``);
    ``humidity_pct`` has missing values. ``train`` holds normal rows only. In ``test``, a share
    ``break_share`` of the rows has exactly one column broken, the kinds of ``BREAK_KINDS`` in
    about equal numbers, spread over the columns each kind can hit (``BREAKABLE``):

    - ``spike``: a numeric value far outside the column's training range;
    - ``relation``: a numeric value taken from a random training row (so normal on its own), at
      least ``RELATION_SIGMAS`` noise deviations (and ``RELATION_SPREAD`` of the column's spread)
      from what the rest of the row predicts;
    - ``category``: a category of the training data that never comes with the rest of the row
      there (a building with another building's HVAC unit, or the reverse; heating in summer).

    ``test`` adds ``label`` (1 = broken), ``break_kind`` ("none" for normal rows) and
    ``broken_column`` ("" for normal rows).
    """
    train, _, test = _break_tables(n_train, n_test, break_share, seed)
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
