"""Schema capture and the table -> arrays step: which columns the model uses, and how.

This module turns a pandas DataFrame into the two arrays the scoring graph takes:

- ``numeric``: float64 (N, n_numeric), raw values, NaN where missing (inf allowed);
- ``categorical``: int64 (N, n_categorical), the code of each value in the column's vocabulary.

The numeric scaling itself (robust centre and scale, soft clipping, missing indicators, one-hot)
happens inside the torch/ONNX graph (``aaedetect.model.FeatureEncoder``) so that training, torch
scoring and ONNX scoring share one implementation. Everything here is numpy/pandas only: the ONNX
runtime imports it and must never pull in torch. All state round-trips through plain JSON.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError

logger = logging.getLogger("aaedetect")

#: Cell texts read as "missing" (pandas' default NA tokens).
MISSING_TOKENS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
#: A text column with a distinct value on at least this share of its rows is an identifier.
ID_LIKE_SHARE = 0.9
#: ... when it has at least this many values (below that, no column can look like an id).
ID_LIKE_MIN_ROWS = 20
#: A text column whose values are numbers on at least this share of rows is numeric with typos.
NUMERIC_SHARE = 0.9
#: Scaled values beyond +-SOFT_CLIP grow only logarithmically (see FeatureEncoder).
SOFT_CLIP = 5.0


@dataclass
class NumericColumn:
    """A numeric column: robust centre/scale, and whether training saw missing values."""

    name: str
    center: float
    scale: float
    indicator: bool


@dataclass
class CategoricalColumn:
    """A categorical column.

    Codes: ``0..K-1`` the known categories, ``K`` every other value (unseen in training, or beyond
    the ``max_categories`` most frequent), ``K+1`` missing (only when training saw missing values).
    """

    name: str
    categories: list[str]
    has_missing: bool
    canonical_numbers: bool = False

    @property
    def other_code(self) -> int:
        return len(self.categories)

    @property
    def width(self) -> int:
        """Number of one-hot slots."""
        return len(self.categories) + 1 + int(self.has_missing)


@dataclass
class TabularPreprocessor:
    """The columns a model uses and how each is encoded; fitted by :meth:`fit`."""

    numeric: list[NumericColumn] = field(default_factory=list)
    categorical: list[CategoricalColumn] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    clip: float = SOFT_CLIP

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, df: pd.DataFrame, *, categorical: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
            max_categories: int = 100, source: str = "data", first_line: int | None = 2
            ) -> "TabularPreprocessor":
        """Decide each column's kind and fit its encoding state on ``df`` (typed, as read)."""
        check_unique_columns(df, source)
        for name in (*categorical, *exclude):
            if name not in df.columns:
                raise DataError(f"{source}: no column {name!r} (named by --categorical/--exclude); "
                                f"columns are {_preview(df.columns)}")
        pre = cls()
        for name in df.columns:
            if name in exclude:
                continue
            series = df[name]
            if name in categorical or pd.api.types.is_bool_dtype(series):
                pre._add_categorical(name, series, max_categories, forced=name in categorical)
                continue
            if not pd.api.types.is_numeric_dtype(series):
                parsed, bad = _parse_numbers(series)
                n_present = int((~_missing_mask(series)).sum())
                n_bad = int(bad.sum())
                if n_present and n_bad <= (1 - NUMERIC_SHARE) * n_present and n_bad < n_present:
                    if n_bad:
                        raise _bad_number(source, name, series, bad, first_line, hint=True)
                    series = parsed
                else:
                    pre._add_categorical(name, series, max_categories, forced=False)
                    continue
            pre._add_numeric(name, series)
        if not pre.numeric and not pre.categorical:
            reasons = "; ".join(f"{d['column']}: {d['reason']}" for d in pre.dropped) or "no columns"
            raise DataError(f"{source}: no usable column left to train on ({reasons})")
        return pre

    def _drop(self, name: str, reason: str) -> None:
        self.dropped.append({"column": name, "reason": reason})
        logger.warning("column %r left out: %s", name, reason)

    def _add_numeric(self, name: str, series: pd.Series) -> None:
        values = _as_float(series)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            self._drop(name, "no finite values")
            return
        if np.unique(finite).size < 2:
            self._drop(name, f"constant (every value is {finite[0]:g})")
            return
        center = float(np.median(finite))
        q25, q75 = np.percentile(finite, [25, 75])
        # 1.349 * sigma is the IQR of a normal distribution; fall back to the standard deviation for
        # columns that are mostly one value (IQR 0), such as rare event counts.
        scale = float((q75 - q25) / 1.349) or float(np.std(finite))
        self.numeric.append(NumericColumn(name, center, scale, indicator=bool(np.isnan(values).any())))

    def _add_categorical(self, name: str, series: pd.Series, max_categories: int, forced: bool) -> None:
        canonical = forced and _looks_numeric(series)
        text = _category_text(series, canonical)
        present = text[text.notna()]
        counts = present.value_counts(sort=False)
        has_missing = bool(text.isna().any())
        if len(counts) + has_missing < 2:
            value = "missing" if not len(counts) else repr(counts.index[0])
            self._drop(name, f"constant (every value is {value})")
            return
        if (not forced and len(present) >= ID_LIKE_MIN_ROWS
                and len(counts) >= ID_LIKE_SHARE * len(present)):
            self._drop(name, f"looks like an identifier ({len(counts)} distinct values in "
                             f"{len(present)} rows); pass --categorical {name} to keep it")
            return
        # Most frequent first; ties broken by value so that the vocabulary is deterministic.
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(ordered) > max_categories:
            logger.warning("column %r: %d categories, keeping the %d most frequent; the rest share "
                           "one 'other' slot", name, len(ordered), max_categories)
        vocab = [str(k) for k, _ in ordered[:max_categories]]
        self.categorical.append(CategoricalColumn(name, vocab, has_missing, canonical))

    # ------------------------------------------------------------ transform
    @property
    def columns(self) -> list[str]:
        """The input columns the model needs, numeric first, in the order of the graph's inputs."""
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    def transform(self, df: pd.DataFrame, *, source: str = "data", first_line: int | None = 2
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Arrays for the scoring graph: numeric float64 (N, n_num) and codes int64 (N, n_cat).

        ``first_line`` is the file line of ``df``'s first row, used in error messages
        (``None``: say "row" with a 1-based position instead).
        """
        check_unique_columns(df, source)
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise DataError(f"{source}: missing column {missing[0]!r} that the model needs"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        n = len(df)
        numeric = np.empty((n, len(self.numeric)), dtype=np.float64)
        for j, col in enumerate(self.numeric):
            series = df[col.name]
            if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
                values = _as_float(series)
            else:
                parsed, bad = _parse_numbers(series)
                if bad.any():
                    raise _bad_number(source, col.name, series, bad, first_line, hint=False)
                values = _as_float(parsed)
            if not col.indicator:
                n_nan = int(np.isnan(values).sum())
                if n_nan:
                    logger.warning("%s: column %r has %d missing value(s), none seen in training; "
                                   "scored as the training median", source, col.name, n_nan)
            numeric[:, j] = values
        codes = np.empty((n, len(self.categorical)), dtype=np.int64)
        for j, col in enumerate(self.categorical):
            text = _category_text(df[col.name], col.canonical_numbers)
            found = pd.Index(col.categories, dtype=object).get_indexer(text).astype(np.int64)
            is_missing = text.isna().to_numpy()
            unseen = (found < 0) & ~is_missing
            found[found < 0] = col.other_code
            if col.has_missing:
                found[is_missing] = col.other_code + 1
            if unseen.any():
                logger.info("%s: column %r has %d value(s) not seen in training", source, col.name,
                            int(unseen.sum()))
            codes[:, j] = found
        return numeric, codes

    # ---------------------------------------------------------------- state
    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": [asdict(c) for c in self.numeric],
            "categorical": [asdict(c) for c in self.categorical],
            "dropped": list(self.dropped),
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TabularPreprocessor":
        return cls(
            numeric=[NumericColumn(**c) for c in data["numeric"]],
            categorical=[CategoricalColumn(**c) for c in data["categorical"]],
            dropped=list(data.get("dropped", [])),
            clip=float(data["clip"]),
        )


# ---------------------------------------------------------------------- helpers
def check_unique_columns(df: pd.DataFrame, source: str) -> None:
    duplicated = df.columns[df.columns.duplicated()]
    if len(duplicated):
        raise DataError(f"{source}: column {duplicated[0]!r} appears more than once in the header")


def _missing_mask(series: pd.Series) -> np.ndarray:
    mask = series.isna().to_numpy(dtype=bool, copy=True)
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        text = series.astype(str).str.strip()
        mask |= text.isin(MISSING_TOKENS).to_numpy(dtype=bool)
    return mask


def _parse_numbers(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Text -> float64 with NaN for missing tokens; ``bad`` marks present values that are not numbers."""
    missing = _missing_mask(series)
    text = series.astype(str).str.strip().where(~missing, None)
    parsed = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = parsed.isna().to_numpy() & ~missing
    return parsed, bad


def _as_float(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series):
        return series.astype("float64").to_numpy()
    return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)


def _looks_numeric(series: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(series):
        return True
    _, bad = _parse_numbers(series)
    return not bad.any()


def _category_text(series: pd.Series, canonical_numbers: bool) -> pd.Series:
    """Values as text (object dtype, None for missing); numbers in one canonical spelling if asked.

    Canonical spelling makes a code column read as ``1`` from CSV and ``1.0`` from a float Parquet
    column the same category.
    """
    missing = _missing_mask(series)
    if canonical_numbers:
        parsed = pd.to_numeric(series.where(~missing, None) if not pd.api.types.is_numeric_dtype(series)
                               else series, errors="coerce").astype("float64").to_numpy()
        text = series.astype(str).str.strip().to_numpy(dtype=object)
        ok = np.isfinite(parsed)
        integral = ok & (np.floor(parsed) == parsed) & (np.abs(parsed) < 2**53)
        text[integral] = [str(int(v)) for v in parsed[integral]]
        text[ok & ~integral] = [repr(float(v)) for v in parsed[ok & ~integral]]
    else:
        text = series.astype(str).to_numpy(dtype=object)
    text[missing] = None
    return pd.Series(text, index=series.index, dtype=object)


def _bad_number(source: str, column: str, series: pd.Series, bad: np.ndarray,
                first_line: int | None, *, hint: bool) -> DataError:
    i = int(np.flatnonzero(bad)[0])
    where = f"line {first_line + i}" if first_line is not None else f"row {i + 1}"
    value = str(series.iloc[i])
    if len(value) > 40:
        value = value[:37] + "..."
    more = f" ({int(bad.sum())} such values)" if bad.sum() > 1 else ""
    message = f"{source}: column {column!r}, {where}: {value!r} is not a number{more}"
    if hint:
        message += f"; fix it, or pass --categorical {column} or --exclude {column}"
    return DataError(message)


def _preview(names: Any, limit: int = 8) -> str:
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
