"""Reading tables (CSV, compressed CSV, Parquet, CSV on stdin) and writing results atomically.

pyarrow does the parsing and writing (it is several times faster than pandas' CSV code and checks
that every row has as many fields as the header); this module decides the format, reads in
chunks, turns parser exceptions into one-line :class:`DataError`/:class:`PathError` messages that
name the file and line, and writes outputs to a temporary file that is renamed into place only
once everything succeeded.

CSV cells are read as text, exactly as written: the model's columns are parsed by
``aaedetect.preprocess`` (the same way at fit and at score time), and every other column passes
through untouched.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .config import DEFAULT_CHUNK_ROWS
from .errors import DataError, PathError, check_not_stopped

if TYPE_CHECKING:  # pandas is imported where a DataFrame is made: `aaedetect score` never needs it
    import pandas as pd

STDIO = "-"
_SNIFF_BYTES = 64 * 1024
_PARQUET_MAGIC = b"PAR1"
#: Compressions pyarrow reads, by their magic bytes.
_COMPRESSIONS = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\x28\xb5\x2f\xfd": "zstd"}


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == STDIO else str(path)


def is_parquet_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith((".parquet", ".pq"))


class TableSource:
    """An input table: a path or ``-`` (stdin, spooled to a temporary file so it can be re-read).

    Use as a context manager; it checks the path and sniffs the format on entry. CSV columns come
    as text (pandas string columns, exactly as in the file); Parquet columns keep their types.
    """

    def __init__(self, path: str | os.PathLike, *, sep: str = ","):
        self.path = str(path)
        self.name = display_name(path)
        if len(sep) != 1:
            raise DataError(f"--sep {sep!r}: the separator must be one character")
        self.sep = sep
        self._spool: str | None = None

    def __enter__(self) -> "TableSource":
        if self.path == STDIO:
            fd, self._spool = tempfile.mkstemp(prefix="aaedetect-stdin-", suffix=".csv")
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            self.file = self._spool
        else:
            self.file = self.path
            _check_readable(self.path)
        with open(self.file, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
        if not head:
            raise DataError(f"{self.name}: the file is empty (no header, no rows)")
        self.format = "parquet" if head.startswith(_PARQUET_MAGIC) or is_parquet_path(self.path) else "csv"
        self.compression = next((c for magic, c in _COMPRESSIONS.items() if head.startswith(magic)), None)
        if self.format == "csv":
            self.header = self._read_header()
        return self

    def __exit__(self, *exc) -> None:
        if self._spool:
            with contextlib.suppress(OSError):
                os.unlink(self._spool)

    # ---------------------------------------------------------------- CSV
    def _stream(self):
        return pa.input_stream(self.file, compression=self.compression)

    def _read_header(self) -> list[str]:
        """The header row as written (refusing duplicate names, which pandas would rename)."""
        try:
            with self._stream() as raw:
                data = raw.read(_SNIFF_BYTES)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{self.name}: cannot be read ({exc})") from None
        if b"\x00" in data:
            raise DataError(f"{self.name}: holds NUL bytes; it is a binary file, not CSV")
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        try:
            block = decoder.decode(data, final=False)
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.name}: not UTF-8 text (byte {exc.start}: "
                            f"{exc.object[exc.start:exc.start + 1]!r}); is it a binary file?") from None
        first = block.splitlines()[0] if block.strip() else ""
        if not first.strip():
            raise DataError(f"{self.name}: the first line is empty; expected a header row")
        header = next(csv.reader(io.StringIO(block, newline=""), delimiter=self.sep))
        if len(header) == 1:
            for other in (";", "\t", "|", ","):
                if other != self.sep and other in first:
                    raise DataError(f"{self.name}: the header has one column but contains "
                                    f"{other!r}; is the file separated by {other!r}? pass --sep")
        seen = set()
        for name in header:
            if name in seen:
                raise DataError(f"{self.name}: column {name!r} appears more than once in the header")
            seen.add(name)
        return header

    def _csv_options(self):
        read = pacsv.ReadOptions(block_size=4 << 20, encoding="utf8")
        self._invalid_rows = []

        def invalid_row(row) -> str:  # a row with another number of fields than the header
            self._invalid_rows.append(row)
            return "error"

        parse = pacsv.ParseOptions(delimiter=self.sep, newlines_in_values=True,
                                   invalid_row_handler=invalid_row)
        convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in self.header},
                                       strings_can_be_null=False, quoted_strings_can_be_null=False)
        return dict(read_options=read, parse_options=parse, convert_options=convert)

    def read(self) -> "pd.DataFrame":
        """The whole table."""
        if self.format == "parquet":
            return next(self._parquet_chunks(None))[0].to_pandas()
        return self._read_csv().to_pandas()

    def _read_csv(self) -> pa.Table:
        with self._errors():
            with self._stream() as raw:
                return pacsv.read_csv(raw, **self._csv_options())

    def chunks(self, *, chunk_rows: int | None = DEFAULT_CHUNK_ROWS, arrow: bool = False
               ) -> Iterator[tuple["pd.DataFrame | pa.Table", int | None]]:
        """(chunk, file line of its first row) pairs; the line is None for Parquet. Chunks are
        DataFrames, or with ``arrow=True`` Arrow tables (as read, without pandas).

        Line numbers assume one line per row (no blank lines, no line breaks inside quotes).
        """
        tables = self._arrow_chunks(chunk_rows)
        if arrow:
            for table, line in tables:
                yield _without_pandas_index(table), line
            return
        for table, line in tables:
            try:
                df = table.to_pandas()
            except pa.ArrowException as exc:  # a Parquet type pandas has no counterpart for
                raise DataError(f"{self.name}: cannot be read as a table ({str(exc).splitlines()[0]})") from None
            yield df, line

    def _arrow_chunks(self, chunk_rows: int | None) -> Iterator[tuple[pa.Table, int | None]]:
        if self.format == "parquet":
            yield from self._parquet_chunks(chunk_rows)
            return
        if chunk_rows is None:
            yield self._read_csv(), 2
            return
        line = 2
        with self._errors(), self._stream() as raw:
            reader = pacsv.open_csv(raw, **self._csv_options())
            pending: list[pa.RecordBatch] = []
            rows = 0
            yielded = False
            for batch in reader:
                pending.append(batch)
                rows += batch.num_rows
                while rows >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    yield table.slice(0, chunk_rows), line
                    rest = table.slice(chunk_rows)
                    line, pending, rows, yielded = line + chunk_rows, rest.to_batches(), rest.num_rows, True
            if rows or not yielded:  # the rest; or, for a header-only file, an empty table
                yield pa.Table.from_batches(pending, schema=reader.schema), line

    def sample(self, rows: int, *, seed: int = 0, chunk_rows: int = DEFAULT_CHUNK_ROWS
               ) -> tuple["pd.DataFrame", int]:
        """(a seeded uniform sample of at most ``rows`` rows, the table's row count), read in chunks.

        Bottom-k reservoir sampling: each row gets a random key from one seeded stream, and the
        ``rows`` rows with the smallest keys are kept; memory holds the sample and one chunk,
        whatever the file's size. The keys follow the rows, not the chunks, so the same file and
        seed give the same sample at any ``chunk_rows``. The sample keeps the file's row order,
        and its index is each row's 0-based position in the file.
        """
        if rows < 1:
            raise DataError(f"--max-rows {rows}: must be at least 1")
        import pandas as pd

        rng = np.random.default_rng(seed)
        kept: pd.DataFrame | None = None
        kept_keys = np.empty(0)
        total = 0
        for chunk, _ in self.chunks(chunk_rows=chunk_rows):
            keys = rng.random(len(chunk))
            chunk = chunk.set_axis(pd.RangeIndex(total, total + len(chunk)), axis=0)
            total += len(chunk)
            if kept is None:
                kept, kept_keys = chunk.iloc[:0], keys[:0]
            if len(kept) + len(chunk) <= rows:
                kept, kept_keys = pd.concat([kept, chunk]), np.concatenate([kept_keys, keys])
                continue
            pool_keys = np.concatenate([kept_keys, keys])
            best = np.argpartition(pool_keys, rows - 1)[:rows]
            best.sort()  # positions in (kept, chunk) order: the file's order
            from_kept, from_chunk = best[best < len(kept)], best[best >= len(kept)] - len(kept)
            kept = pd.concat([kept.iloc[from_kept], chunk.iloc[from_chunk]])
            kept_keys = pool_keys[best]
        return kept, total

    @contextlib.contextmanager
    def _errors(self):
        """pyarrow's CSV errors as one-line DataErrors naming the file and, where possible, the line."""
        try:
            yield
        except pa.ArrowInvalid as exc:
            if self._invalid_rows:  # the parser told us which row, through invalid_row_handler
                raise DataError(f"{self.name}: {self._bad_row(self._invalid_rows[0])}") from None
            offset = self._first_non_utf8_byte()
            if offset is not None:
                raise DataError(f"{self.name}: not UTF-8 text (byte {offset:,}); is it a binary "
                                f"file?") from None
            raise DataError(f"{self.name}: malformed CSV: {str(exc).splitlines()[0]}") from None
        except (OSError, EOFError, pa.ArrowException) as exc:
            raise DataError(f"{self.name}: cannot be read ({str(exc).splitlines()[0]})") from None

    def _bad_row(self, invalid) -> str:
        """Where the row pyarrow refused (a ``pyarrow.csv.InvalidRow``) is: pyarrow does not know
        its line when values may hold line breaks, so the file is read again to find it."""
        with self._stream() as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
            reader = csv.reader(text, delimiter=self.sep)
            expected = len(next(reader))
            for row in reader:
                if row and len(row) != expected:
                    return f"line {reader.line_num} has {len(row)} fields, the header has {expected}"
        return (f"a row has {invalid.actual_columns} fields, the header has "
                f"{invalid.expected_columns}: {invalid.text[:80]!r}")

    def _first_non_utf8_byte(self) -> int | None:
        """The offset of the first byte that is not UTF-8 text, or None (only on a parse error)."""
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        with self._stream() as raw:
            while block := raw.read(1 << 20):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    return offset + exc.start
                offset += len(block)
        return None

    def _parquet_chunks(self, chunk_rows: int | None) -> Iterator[tuple[pa.Table, None]]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.file)
            names = pf.schema_arrow.names
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise DataError(f"{self.name}: column {dup!r} appears more than once")
            if chunk_rows is None:
                yield pf.read(), None
                return
            empty = True
            for batch in pf.iter_batches(batch_size=chunk_rows):
                empty = False
                yield pa.Table.from_batches([batch]), None
            if empty:
                yield pf.schema_arrow.empty_table(), None
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.name}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def _without_pandas_index(table: pa.Table) -> pa.Table:
    """The columns ``table.to_pandas()`` keeps as columns: a Parquet file written by pandas holds
    a non-default index as a column (``__index_level_0__``) that pandas makes the index again,
    and a scored table does not keep; also drops the schema's metadata, which would describe the
    input's columns, not the output's."""
    import json

    metadata = table.schema.metadata or {}
    if b"pandas" in metadata:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            index = json.loads(metadata[b"pandas"]).get("index_columns", [])
            table = table.drop_columns([c for c in index if isinstance(c, str) and c in table.column_names])
    return table.replace_schema_metadata(None)


def _check_readable(path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise PathError(f"{path}: no such file")
    if p.is_dir():
        raise PathError(f"{path}: is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise PathError(f"{path}: permission denied")


class AtomicOutput:
    """Write a table to ``path`` (or stdout) all at once: chunks go to a temporary file that is
    renamed into place on :meth:`commit`; on error nothing appears at ``path``.

    CSV unless ``path`` ends in ``.parquet``; ``.gz`` gzips CSV. Output to stdout is also held
    back until commit, so a failure half way writes nothing there either.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.name = "<stdout>" if self.path == STDIO else self.path
        self.parquet = self.path != STDIO and is_parquet_path(self.path)
        if self.path == STDIO:
            directory = None
        else:
            target = Path(self.path)
            if target.is_dir():
                raise PathError(f"{self.path}: is a directory; give a file name for the output")
            directory = target.parent
            if not directory.is_dir():
                raise PathError(f"{self.path}: directory {str(directory)!r} does not exist")
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{Path(self.path).name}.tmp-"
                                             if directory else "aaedetect-out-", dir=directory)
        except OSError as exc:
            raise PathError(f"{self.path}: cannot write here ({exc.strerror or exc})") from exc
        os.close(fd)
        self._parquet_writer = None
        self._csv = None
        self.rows = 0

    def write(self, table: "pa.Table | pd.DataFrame") -> None:
        """Append rows: an Arrow table, or a DataFrame (its index is not written)."""
        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table, preserve_index=False)
        if self.parquet:
            import pyarrow.parquet as pq

            if self._parquet_writer is None:
                self._parquet_writer = pq.ParquetWriter(self._tmp, table.schema)
            else:
                table = table.cast(self._parquet_writer.schema)
            self._parquet_writer.write_table(table)
        else:
            if self._csv is None:
                gz = self.path.lower().endswith(".gz")
                self._csv = gzip.open(self._tmp, "wb") if gz else open(self._tmp, "wb")
                header = io.StringIO()
                csv.writer(header, lineterminator="\n").writerow(table.column_names)
                self._csv.write(header.getvalue().encode("utf-8"))
            _write_csv_rows(table, self._csv)
        self.rows += table.num_rows

    def write_bytes(self, data: bytes) -> None:
        """Raw bytes as the whole output (for files that are not tables, such as an ONNX graph)."""
        with open(self._tmp, "wb") as fh:
            fh.write(data)

    def _close(self) -> None:
        if self._parquet_writer is not None:
            self._parquet_writer.close()
            self._parquet_writer = None
        if self._csv is not None:
            self._csv.close()
            self._csv = None

    def commit(self) -> None:
        try:
            check_not_stopped()
        except BaseException:
            self.abort()
            raise
        self._close()
        if self.path == STDIO:
            with open(self._tmp, "rb") as fh:
                shutil.copyfileobj(fh, sys.stdout.buffer, 1 << 20)
            sys.stdout.flush()
            os.unlink(self._tmp)
            return
        with open(self._tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(self._tmp, 0o644 & ~_umask())
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)

    def __enter__(self) -> "AtomicOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.commit()


def _write_csv_rows(table: pa.Table, out) -> None:
    """Rows as CSV: Arrow's fast writer where no value needs quotes (the usual case), pandas'
    minimal quoting otherwise, so that text passes through as it came. Floats are formatted by
    Arrow (shortest round-trip form) in both cases, so a file looks the same throughout."""
    for i, f in enumerate(table.schema):
        if pa.types.is_floating(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
    buffer = io.BytesIO()  # Arrow may fail part way: write the chunk only once it is whole
    try:
        pacsv.write_csv(table, buffer, write_options=pacsv.WriteOptions(include_header=False,
                                                                        quoting_style="none"))
        out.write(buffer.getvalue())
    except pa.ArrowInvalid:  # a value holds a separator, quote or line break: it needs quoting
        text = table.to_pandas()
        out.write(text.to_csv(index=False, header=False, lineterminator="\n").encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
