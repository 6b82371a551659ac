"""Reading tables (CSV, gzipped CSV, Parquet, CSV on stdin) and writing results atomically.

pandas and pyarrow do the parsing; this module decides the format, reads in chunks, turns their
exceptions into one-line :class:`DataError`/:class:`PathError` messages naming the file, and writes
outputs to a temporary file that is renamed into place only once everything succeeded.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

import pandas as pd

from .errors import DataError, PathError
from .preprocess import check_unique_columns

STDIO = "-"
#: Rows per chunk when scoring: bounds memory for files of any size.
DEFAULT_CHUNK_ROWS = 100_000
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 64 * 1024


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == STDIO else str(path)


def is_parquet_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith((".parquet", ".pq"))


class TableSource:
    """An input table: a path or ``-`` (stdin, spooled to a temporary file so it can be re-read).

    Use as a context manager; it checks the path and sniffs the format on entry.
    """

    def __init__(self, path: str | os.PathLike, *, sep: str = ","):
        self.path = str(path)
        self.name = display_name(path)
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
        self.format = "parquet" if head.startswith(_PARQUET_MAGIC) or is_parquet_path(self.path) else "csv"
        self.compression = "gzip" if head.startswith(_GZIP_MAGIC) else "infer"
        if not head:
            raise DataError(f"{self.name}: the file is empty (no header, no rows)")
        if self.format == "csv":
            self.header = self._read_header()
        return self

    def __exit__(self, *exc) -> None:
        if self._spool:
            with contextlib.suppress(OSError):
                os.unlink(self._spool)

    # ---------------------------------------------------------------- CSV
    def _open_text(self) -> IO[str]:
        raw = gzip.open(self.file, "rb") if self.compression == "gzip" else open(self.file, "rb")
        return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")

    def _read_header(self) -> list[str]:
        """The header row as written (pandas renames duplicate names; we want to refuse them)."""
        try:
            with self._open_text() as fh:
                block = fh.read(_SNIFF_BYTES)
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.name}: not UTF-8 text (byte {exc.start}: "
                            f"{exc.object[exc.start:exc.start + 1]!r}); is it a binary file?") from None
        except (OSError, EOFError) as exc:
            raise DataError(f"{self.name}: cannot be read as CSV ({exc})") from None
        if "\x00" in block:
            raise DataError(f"{self.name}: holds NUL bytes; it is a binary file, not CSV")
        first = block.splitlines()[0] if block.strip() else ""
        if not first.strip():
            raise DataError(f"{self.name}: the first line is empty; expected a header row")
        header = next(csv.reader([first], delimiter=self.sep))
        if len(header) == 1:
            for other in (";", "\t", "|"):
                if other != self.sep and other in first:
                    raise DataError(f"{self.name}: the header has one column but contains "
                                    f"{other!r}; is the file separated by {other!r}? pass --sep")
        seen = set()
        for name in header:
            if name in seen:
                raise DataError(f"{self.name}: column {name!r} appears more than once in the header")
            seen.add(name)
        return header

    def _csv_kwargs(self, as_text: bool) -> dict:
        kwargs = dict(sep=self.sep, compression=self.compression, encoding="utf-8-sig")
        if as_text:
            # Every cell as the text it was: columns the model does not use pass through untouched.
            kwargs.update(dtype=str, keep_default_na=False, na_filter=False)
        else:
            kwargs.update(low_memory=False)
        return kwargs

    def read(self, *, as_text: bool = False) -> pd.DataFrame:
        """The whole table; typed columns unless ``as_text`` (CSV only)."""
        frames = [df for df, _ in self.chunks(as_text=as_text, chunk_rows=None)]
        return frames[0]

    def chunks(self, *, as_text: bool = True, chunk_rows: int | None = DEFAULT_CHUNK_ROWS
               ) -> Iterator[tuple[pd.DataFrame, int | None]]:
        """(chunk, file line of its first row) pairs; the line is None for Parquet."""
        if self.format == "parquet":
            yield from self._parquet_chunks(chunk_rows)
            return
        line = 2
        try:
            reader = pd.read_csv(self.file, chunksize=chunk_rows, **self._csv_kwargs(as_text))
            if chunk_rows is None:
                reader = [reader]
            with contextlib.ExitStack() as stack:
                if hasattr(reader, "close"):
                    stack.callback(reader.close)
                for df in reader:
                    check_unique_columns(df, self.name)
                    yield df, line
                    line += len(df)
        except pd.errors.EmptyDataError:
            raise DataError(f"{self.name}: the file is empty (no header, no rows)") from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{self.name}: malformed CSV: {_parser_message(exc)}") from None
        except UnicodeDecodeError:
            raise DataError(f"{self.name}: not UTF-8 text; is it a binary file?") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"{self.name}: cannot be read ({exc})") from None

    def _parquet_chunks(self, chunk_rows: int | None) -> Iterator[tuple[pd.DataFrame, None]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.file)
            names = pf.schema_arrow.names
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise DataError(f"{self.name}: column {dup!r} appears more than once")
            if chunk_rows is None:
                yield pf.read().to_pandas(), None
                return
            empty = True
            for batch in pf.iter_batches(batch_size=chunk_rows):
                empty = False
                yield batch.to_pandas(), None
            if empty:
                yield pf.schema_arrow.empty_table().to_pandas(), None
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.name}: not a readable Parquet file ({exc})") from None


def _check_readable(path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise PathError(f"{path}: no such file")
    if p.is_dir():
        raise PathError(f"{path}: is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise PathError(f"{path}: permission denied")


def _parser_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1]
    # pandas: "Error tokenizing data. C error: Expected 3 fields in line 5, saw 4"
    return text.split("C error: ")[-1]


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
        self._writer = None
        self._fh = None
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._writer is None:
                self._writer = pq.ParquetWriter(self._tmp, table.schema)
            else:
                table = table.cast(self._writer.schema)
            self._writer.write_table(table)
        else:
            if self._fh is None:
                gz = self.path.lower().endswith(".gz")
                self._fh = (gzip.open(self._tmp, "wt", encoding="utf-8", newline="") if gz
                            else open(self._tmp, "w", encoding="utf-8", newline=""))
                df.to_csv(self._fh, index=False)
            else:
                df.to_csv(self._fh, index=False, header=False)
        self.rows += len(df)

    def write_bytes(self, data: bytes) -> None:
        """Raw bytes as the whole output (for files that are not tables, such as an ONNX graph)."""
        with open(self._tmp, "wb") as fh:
            fh.write(data)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def commit(self) -> None:
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
