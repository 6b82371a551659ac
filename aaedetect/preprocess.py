"""Schema capture and the table -> arrays step: which columns the model uses, and how.

This module turns a table (a pandas DataFrame, or for scoring also an Arrow table) into the two
arrays the scoring graph takes:

- ``numeric``: float64 (N, n_numeric), raw values, NaN where missing (inf allowed);
- ``categorical``: int64 (N, n_categorical), the code of each value in the column's vocabulary.

The numeric scaling itself (robust centre and scale, soft clipping, missing indicators, one-hot)
happens inside the torch/ONNX graph (``aaedetect.model.FeatureEncoder``) so that training, torch
scoring and ONNX scoring share one implementation. Everything here is numpy/pyarrow/pandas only:
the ONNX runtime imports it and must never pull in torch; and pandas is imported only where a
DataFrame is handled, so that scoring an Arrow table (``aaedetect score``) starts without it.
All state round-trips through plain JSON.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import booleans, is_flat, is_text, null_string, strings, to_numpy
from .errors import DataError

if TYPE_CHECKING:
    import pandas as pd

#: One column of a table: a pandas Series, or (scoring an Arrow table) an Arrow array of strings,
#: numbers or booleans without nulls; Arrow columns of other types are handled as pandas Series.
Column = Union["pd.Series", pa.Array]

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
SPELLINGS = ("text", "number", "boolean")


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
    ``spelling`` says how values are normalised before lookup (see ``_spelling``).
    """

    name: str
    categories: list[str]
    has_missing: bool
    spelling: str = "text"

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
            max_categories: int = 100, scaling: str = "standard", source: str = "data",
            first_line: int | None = 2) -> "TabularPreprocessor":
        """Decide each column's kind and fit its encoding state on ``df`` (typed or text).

        ``scaling``: "standard" (mean and standard deviation) or "robust" (median and IQR / 1.349).
        """
        import pandas as pd

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
            check_cells(series, name, source, first_line)
            if name in categorical or pd.api.types.is_bool_dtype(series):
                pre._add_categorical(name, series, max_categories, forced=name in categorical)
                continue
            values, bad = _parse_numbers(series)
            n_present = int((~_missing_mask(series)).sum())
            n_bad = int(bad.sum())
            if n_present and n_bad <= (1 - NUMERIC_SHARE) * n_present and n_bad < n_present:
                if n_bad:
                    raise _bad_number(source, name, series, bad, first_line, hint=True)
                pre._add_numeric(name, values, scaling)
            else:
                pre._add_categorical(name, series, max_categories, forced=False)
        if not pre.numeric and not pre.categorical:
            reasons = "; ".join(f"{d['column']}: {d['reason']}" for d in pre.dropped) or "no columns"
            raise DataError(f"{source}: no usable column left to train on ({reasons})")
        return pre

    def _drop(self, name: str, reason: str) -> None:
        self.dropped.append({"column": name, "reason": reason})
        logger.warning("column %r left out: %s", name, reason)

    def _add_numeric(self, name: str, values: np.ndarray, scaling: str) -> None:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            self._drop(name, "no finite values")
            return
        if np.unique(finite).size < 2:
            self._drop(name, f"constant (every value is {finite[0]:g})")
            return
        # Statistics of values divided by their largest magnitude: no overflow even near 1e308.
        magnitude = float(np.max(np.abs(finite)))
        unit = finite / magnitude
        if scaling == "standard":
            center, scale = float(np.mean(unit)), float(np.std(unit))
        else:
            center = float(np.median(unit))
            q25, q75 = np.percentile(unit, [25, 75])
            # 1.349 sigma is the IQR of a normal distribution; fall back to the standard deviation
            # for columns that are mostly one value (IQR 0), such as rare event counts.
            scale = float((q75 - q25) / 1.349) or float(np.std(unit))
        center *= magnitude
        scale = scale * magnitude if scale * magnitude > 0 else 1.0  # 0 only if underflowing
        self.numeric.append(NumericColumn(name, center, scale, indicator=bool(np.isnan(values).any())))

    def _add_categorical(self, name: str, series: "pd.Series", max_categories: int, forced: bool) -> None:
        import pandas as pd

        spelling = _spelling(series)
        text = pd.Series(_category_text(series, spelling).to_pylist(), dtype=object)
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
        self.categorical.append(CategoricalColumn(name, vocab, has_missing, spelling))

    # ------------------------------------------------------------ transform
    @property
    def columns(self) -> list[str]:
        """The input columns the model needs, numeric first, in the order of the graph's inputs."""
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    def feature_fold(self) -> np.ndarray:
        """(D, C) 0/1: which of :attr:`columns` each encoded feature belongs to (a numeric value,
        its missing-value indicator, a category's one-hot slot), in the encoder's feature order:
        numeric values, indicators, one-hot groups. Folds per-feature quantities back to the
        user's columns."""
        owner = list(range(len(self.numeric)))
        owner += [j for j, c in enumerate(self.numeric) if c.indicator]
        for j, c in enumerate(self.categorical):
            owner += [len(self.numeric) + j] * c.width
        fold = np.zeros((len(owner), len(self.columns)))
        fold[np.arange(len(owner)), owner] = 1.0
        return fold

    def transform(self, df: "pd.DataFrame | pa.Table", *, source: str = "data", first_line: int | None = 2,
                  report: "InputReport | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """Arrays for the scoring graph: numeric float64 (N, n_num) and codes int64 (N, n_cat).

        ``df``: a DataFrame, or an Arrow table (read as ``df.to_pandas()`` would be, without
        pandas). ``first_line`` is the file line of ``df``'s first row, used in error messages
        (``None``: say "row" with a 1-based position instead). Tolerated oddities (missing values
        where training had none, infinities, unseen categories) are counted in ``report``; without
        one they are logged as warnings at once.
        """
        if report is None:
            report = InputReport()
            try:
                return self.transform(df, source=source, first_line=first_line, report=report)
            finally:
                report.log(source)
        check_unique_columns(df, source)
        self.check_columns(column_names(df), source)
        n = len(df)
        numeric = np.empty((n, len(self.numeric)), dtype=np.float64)
        for j, col in enumerate(self.numeric):
            series = _column(df, col.name)
            check_cells(series, col.name, source, first_line)
            values, bad = _parse_numbers(series)
            if bad.any():
                raise _bad_number(source, col.name, series, bad, first_line, hint=False)
            if not col.indicator:
                report.add(col.name, "missing", int(np.isnan(values).sum()))
            report.add(col.name, "infinite", int(np.isinf(values).sum()))
            numeric[:, j] = values
        codes = np.empty((n, len(self.categorical)), dtype=np.int64)
        for j, col in enumerate(self.categorical):
            series = _column(df, col.name)
            check_cells(series, col.name, source, first_line)
            text = _category_text(series, col.spelling)
            found = to_numpy(pc.index_in(text, value_set=strings(col.categories)))  # NaN: not found
            is_missing = to_numpy(pc.is_null(text), bool)
            unseen = np.isnan(found) & ~is_missing
            found = np.where(np.isnan(found), col.other_code, found).astype(np.int64)
            if col.has_missing:
                found[is_missing] = col.other_code + 1
            report.add(col.name, "unseen", int(unseen.sum()))
            codes[:, j] = found
        return numeric, codes

    def check_columns(self, columns, source: str) -> None:
        """Raise a :class:`DataError` naming the first model column missing from ``columns``."""
        present = set(columns)
        missing = [c for c in self.columns if c not in present]
        if missing:
            raise DataError(f"{source}: missing column {missing[0]!r} that the model needs"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))

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
        """Rebuild from ``to_dict``'s output, checking every type and range (the manifest may come
        from anywhere); ValueError says what is wrong."""
        pre = cls(
            numeric=[NumericColumn(**c) for c in data["numeric"]],
            categorical=[CategoricalColumn(**c) for c in data["categorical"]],
            dropped=list(data.get("dropped", [])),
            clip=data["clip"],
        )
        pre._validate()
        return pre

    def _validate(self) -> None:
        def number(value, what, positive=False):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
                    or (positive and value <= 0):
                raise ValueError(f"{what} must be a finite{' positive' if positive else ''} number")

        number(self.clip, "clip", positive=True)
        names = []
        for c in self.numeric:
            if not isinstance(c.name, str) or not isinstance(c.indicator, bool):
                raise ValueError(f"numeric column {c.name!r}: bad name or indicator")
            number(c.center, f"numeric column {c.name!r}: center")
            number(c.scale, f"numeric column {c.name!r}: scale", positive=True)
            names.append(c.name)
        for c in self.categorical:
            if not isinstance(c.name, str) or not isinstance(c.has_missing, bool) \
                    or c.spelling not in SPELLINGS or not isinstance(c.categories, list) \
                    or not all(isinstance(v, str) for v in c.categories) \
                    or len(set(c.categories)) != len(c.categories):
                raise ValueError(f"categorical column {c.name!r}: malformed")
            names.append(c.name)
        if len(set(names)) != len(names) or not names:
            raise ValueError("the model's columns are missing or repeated")


class InputReport:
    """Counts of tolerated oddities in scored rows, by column, logged once as warnings."""

    MESSAGES = {
        "missing": "{n:,} missing value(s), none seen in training; imputed with the training "
                   "center (mean, or median with robust scaling)",
        "infinite": "{n:,} infinite value(s); scored as beyond any training value",
        "unseen": "{n:,} value(s) not seen in training",
    }

    def __init__(self):
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, column: str, kind: str, n: int) -> None:
        if n:
            self.counts[column, kind] = self.counts.get((column, kind), 0) + n

    def log(self, source: str) -> None:
        for (column, kind), n in self.counts.items():
            logger.warning("%s: column %r has %s", source, column, self.MESSAGES[kind].format(n=n))
        self.counts.clear()


# ---------------------------------------------------------------------- helpers
def column_names(df: "pd.DataFrame | pa.Table") -> list:
    return df.column_names if isinstance(df, pa.Table) else list(df.columns)


def _column(df: "pd.DataFrame | pa.Table", name: str) -> Column:
    """One column of ``df``, as the helpers below take it. An Arrow column stays Arrow when it
    holds text, numbers, or booleans without nulls (what CSV gives, and most Parquet columns);
    any other type becomes the Series that ``to_pandas`` makes of it, so both kinds of table
    give the same values and errors."""
    if not isinstance(df, pa.Table):
        return df[name]
    column = df.column(name)
    kind = column.type
    if is_flat(kind) and not (pa.types.is_boolean(kind) and column.null_count):
        return column.combine_chunks()
    return column.to_pandas()


def check_unique_columns(df: "pd.DataFrame | pa.Table", source: str) -> None:
    seen = set()
    for name in column_names(df):
        if name in seen:
            raise DataError(f"{source}: column {name!r} appears more than once in the header")
        seen.add(name)


#: What ``pandas.api.types.infer_dtype`` says of an object column that holds scalars only.
_SCALAR_KINDS = frozenset({"string", "empty", "integer", "floating", "mixed-integer-float", "decimal",
                           "boolean", "datetime", "datetime64", "date", "timedelta", "timedelta64",
                           "time", "period", "bytes"})


def check_cells(series: Column, column: str, source: str, first_line: int | None) -> None:
    """Refuse a column that is not a table column: complex numbers, or cells holding containers
    (a dict, list, set, array, ...), which would otherwise be read as text. Object columns of plain
    values cost one pass of pandas' type inference; only mixed ones are scanned cell by cell."""
    if isinstance(series, pa.Array):  # text, numbers or booleans (see _column)
        return
    import pandas as pd

    if pd.api.types.is_complex_dtype(series):
        raise DataError(f"{source}: column {column!r} holds complex numbers, which are not supported")
    if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) in _SCALAR_KINDS:
        return
    for i, value in enumerate(series.array):
        if not (value is None or isinstance(value, (str, bytes, bool, int, float, np.generic))
                or pd.api.types.is_scalar(value)) or isinstance(value, complex):
            raise DataError(f"{source}: column {column!r}, {_where(first_line, i)}: a "
                            f"{type(value).__name__} ({_clipped(repr(value))}) is not a table value "
                            f"(a number, text, a boolean or a date)")


_MISSING_ARRAY = strings(sorted(MISSING_TOKENS))
_BOOLEAN_WORDS = strings(["true", "false"])


def _is_bool(series: Column) -> bool:
    if isinstance(series, pa.Array):
        return pa.types.is_boolean(series.type)
    import pandas as pd

    return pd.api.types.is_bool_dtype(series)


def _is_plain(series: Column) -> bool:
    """Numbers or booleans already (no text to parse)."""
    if isinstance(series, pa.Array):
        return not is_text(series.type)
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _text(series: Column) -> pa.Array:
    """The values as an Arrow string array; null where pandas sees a missing value."""
    if isinstance(series, pa.Array):
        # Numbers: Arrow's text, which differs from str() of pandas' values only where no caller
        # reads it (str(3.0) is "3.0", Arrow's "3": _category_text writes every finite number
        # itself and reads the text of infinities alone, "inf" and "-inf" in both).
        return series.cast(pa.string())
    try:
        return pa.array(series, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # an object column mixing strings and other things
        values = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in series]
        return pa.array(values, type=pa.string())


def _missing_in(text: pa.Array) -> pa.Array:
    """Boolean array: null, or one of the missing-value tokens once whitespace is trimmed."""
    # is_in gives false, not null, for a null: a missing cell of a DataFrame or Parquet column.
    return pc.or_(pc.is_in(pc.utf8_trim_whitespace(text), value_set=_MISSING_ARRAY), pc.is_null(text))


def _missing(series: Column) -> pa.Array:
    """Boolean array: the missing values (NaN and null in numbers; see _missing_in for text)."""
    if not _is_plain(series):
        return _missing_in(_text(series))
    if isinstance(series, pa.Array):
        return pc.is_null(series, nan_is_null=True)
    return booleans(series.isna().to_numpy(dtype=bool))


def _missing_mask(series: Column) -> np.ndarray:
    return to_numpy(_missing(series), bool)


def _parse_numbers(series: Column) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, ``bad``): NaN for missing tokens; ``bad`` marks present values that are
    not numbers. Numbers are what pandas.to_numeric reads (inf, 1e5, +3, .5; not 1,5 or 0x10)."""
    if _is_plain(series):
        return _as_float(series), np.zeros(len(series), dtype=bool)
    text = _text(series)
    try:
        # Fastest path: every cell is a number as it stands (Arrow reads "nan" as NaN, and fails on
        # whitespace, "" and the other missing tokens, which the path below then handles): the
        # same values as that path, without trimming and looking up missing tokens first.
        return to_numpy(pc.cast(text, pa.float64())), np.zeros(len(series), dtype=bool)
    except pa.ArrowInvalid:
        pass
    missing = _missing_in(text)
    candidate = pc.if_else(missing, null_string(), pc.utf8_trim_whitespace(text))
    missing = to_numpy(missing, bool)
    try:
        # Fast path (Arrow's parser, ~50x faster than to_numeric); it accepts a subset of what
        # to_numeric accepts, with the same values, so falling back changes no result.
        return to_numpy(pc.cast(candidate, pa.float64())), np.zeros(len(series), dtype=bool)
    except pa.ArrowInvalid:
        import pandas as pd

        values = pd.to_numeric(pd.Series(candidate.to_pandas(), dtype=object), errors="coerce")
        values = values.astype("float64").to_numpy()
        return values, np.isnan(values) & ~missing


def _as_float(series: Column) -> np.ndarray:
    if isinstance(series, pa.Array):  # numbers, or booleans without nulls; nulls become NaN
        return to_numpy(series)
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return series.astype("float64").to_numpy()
    return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)


def _spelling(series: "pd.Series") -> str:
    """How a categorical column's values are normalised: "number" for codes that are numbers
    (``1`` from CSV and ``1.0`` from a float column are one category), "boolean" for true/false
    in any case (a bool column, or ``TRUE``/``true`` in text), "text" otherwise (exact)."""
    if _is_bool(series):
        return "boolean"
    if _is_plain(series):
        return "number"
    text = _text(series)
    present = pc.filter(text, pc.invert(_missing_in(text)))
    if len(present) and pc.all(pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(present)),
                                        value_set=_BOOLEAN_WORDS)).as_py():
        return "boolean"
    _, bad = _parse_numbers(series)
    return "number" if len(present) and not bad.any() else "text"


def _category_text(series: Column, spelling: str) -> pa.Array:
    """Values as an Arrow string array (null for missing), normalised as ``spelling`` says."""
    if spelling == "number":
        parsed, _ = _parse_numbers(series)
        text = np.array(_text(series).to_pylist(), dtype=object)
        ok = np.isfinite(parsed)
        integral = ok & (np.floor(parsed) == parsed) & (np.abs(parsed) < 2**53)
        text[integral] = [str(int(v)) for v in parsed[integral]]
        text[ok & ~integral] = [repr(float(v)) for v in parsed[ok & ~integral]]
        text = strings(text)
    elif spelling == "boolean" and _is_bool(series):
        flags = series if isinstance(series, pa.Array) else booleans(series.to_numpy(dtype=bool))
        text = pc.if_else(flags, _BOOLEAN_WORDS[0], _BOOLEAN_WORDS[1])
    elif spelling == "boolean":
        text = pc.utf8_lower(pc.utf8_trim_whitespace(_text(series)))
    else:
        text = _text(series)
    return pc.if_else(_missing(series), null_string(), text)


def _bad_number(source: str, column: str, series: Column, bad: np.ndarray,
                first_line: int | None, *, hint: bool) -> DataError:
    i = int(np.flatnonzero(bad)[0])
    more = f" ({int(bad.sum())} such values)" if bad.sum() > 1 else ""
    message = (f"{source}: column {column!r}, {_where(first_line, i)}: "
               f"{_clipped(str(series[i].as_py() if isinstance(series, pa.Array) else series.iloc[i]))!r} "
               f"is not a number{more}")
    if hint:
        message += f"; fix it, or pass --categorical {column} or --exclude {column}"
    return DataError(message)


def _where(first_line: int | None, i: int) -> str:
    """Where the ``i``-th row (0-based) is: its file line, or its 1-based row number."""
    return f"line {first_line + i}" if first_line is not None else f"row {i + 1}"


def _clipped(text: str, limit: int = 40) -> str:
    return text[:limit - 3] + "..." if len(text) > limit else text


def _preview(names: Any, limit: int = 8) -> str:
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
