import gzip
import io
import sys

import numpy as np
import pandas as pd
import pytest

from aaedetect.errors import DataError, PathError
from aaedetect.tables import AtomicOutput, TableSource


def read(path, **kw):
    with TableSource(path) as src:
        return src.read(**kw)


def test_csv_cells_are_read_as_the_text_they_are(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,x,k\n007,1.50,a\n008,,"b,\nc"\n')
    text = read(path)
    assert text["id"].tolist() == ["007", "008"] and text["x"].tolist() == ["1.50", ""]
    assert text["k"].tolist() == ["a", "b,\nc"]


def test_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\n1,2\n")
    assert list(read(path).columns) == ["a", "b"]


def test_gzip_detected_by_content(tmp_path):
    path = tmp_path / "t.data"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert read(path)["b"].tolist() == ["2"]


def test_parquet(tmp_path):
    df = pd.DataFrame({"a": [1.0, 2.0], "k": ["x", "y"]})
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    pd.testing.assert_frame_equal(read(path), df, check_dtype=False)


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a,b\n1,2\n3,4\n")))
    assert read("-")["a"].tolist() == ["1", "3"]


def test_chunks_carry_line_numbers(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": range(25)}).to_csv(path, index=False)
    with TableSource(path) as src:
        got = [(len(df), line) for df, line in src.chunks(chunk_rows=10)]
    assert got == [(10, 2), (10, 12), (5, 22)]


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"a,b\n1,2\n\xff\xfe\x01,2\n", "not UTF-8"),
    (b"a,b\n" + b"1,2\n" * 40_000 + b"\xff,\xfe\n", r"not UTF-8 text \(byte 160,004\)"),
    (b"PK\x03\x04\x00\x00binary\x00stuff", "binary"),
    (b"a;b;c\n1;2;3\n", "separated by ';'"),
    (b"a,b,a\n1,2,3\n", "'a' appears more than once"),
    (b"a,b\n1,2\n3,4,5\n", "line 3 has 3 fields, the header has 2"),
    (b"a,b,c\n1,2,3\n4,5\n", "line 3 has 2 fields, the header has 3"),
    (b"\n\n", "first line is empty"),
])
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        read(path)
    assert str(path) in str(info.value)


def test_paths_that_cannot_be_read(tmp_path):
    with pytest.raises(PathError, match="no such file"):
        read(tmp_path / "nope.csv")
    with pytest.raises(PathError, match="is a directory"):
        read(tmp_path)


def test_bad_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read(path)


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz", "out.parquet"])
def test_atomic_output_formats(tmp_path, name):
    path = tmp_path / name
    with AtomicOutput(path) as out:
        out.write(pd.DataFrame({"a": ["1", "2"], "s": np.array([0.5, 1.5], np.float32)}))
        out.write(pd.DataFrame({"a": ["3"], "s": np.array([2.5], np.float32)}))
        assert not path.exists()
    back = pd.read_parquet(path) if name.endswith("parquet") else pd.read_csv(path, dtype={"a": str})
    assert back["a"].tolist() == ["1", "2", "3"] and back["s"].tolist() == [0.5, 1.5, 2.5]
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old contents\n")
    with pytest.raises(RuntimeError):
        with AtomicOutput(path) as out:
            out.write(pd.DataFrame({"a": [1]}))
            raise RuntimeError("scoring failed half way")
    assert path.read_text() == "old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_atomic_output_to_stdout_is_held_back(capsysbinary):
    with pytest.raises(RuntimeError):
        with AtomicOutput("-") as out:
            out.write(pd.DataFrame({"a": [1]}))
            raise RuntimeError
    assert capsysbinary.readouterr().out == b""
    with AtomicOutput("-") as out:
        out.write(pd.DataFrame({"a": [1]}))
    assert capsysbinary.readouterr().out == b"a\n1\n"


def test_output_paths_that_cannot_be_written(tmp_path):
    with pytest.raises(PathError, match="is a directory"):
        AtomicOutput(tmp_path)
    with pytest.raises(PathError, match="does not exist"):
        AtomicOutput(tmp_path / "no" / "out.csv")


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_sample_is_seeded_uniform_and_independent_of_the_chunk_size(tmp_path, suffix):
    n = 1000
    table = pd.DataFrame({"i": np.arange(n), "x": np.random.default_rng(0).normal(size=n)})
    path = tmp_path / f"t.{suffix}"
    table.to_csv(path, index=False) if suffix == "csv" else table.to_parquet(path)
    with TableSource(path) as src:
        first, total = src.sample(100, seed=3, chunk_rows=1000)
        small_chunks, _ = src.sample(100, seed=3, chunk_rows=37)
        other_seed, _ = src.sample(100, seed=4, chunk_rows=37)
        everything, _ = src.sample(5000, seed=3, chunk_rows=64)
    assert total == n and len(first) == 100
    pd.testing.assert_frame_equal(first, small_chunks)
    assert list(first.index) == sorted(first.index)  # the file's order; index = position in file
    assert [int(v) for v in first["i"]] == list(first.index)
    assert not first.index.equals(other_seed.index)
    assert [int(v) for v in everything["i"]] == list(range(n))  # fewer rows than asked: all of them
    # uniform: over many seeds, each tenth of the file gets about a tenth of the sample
    with TableSource(path) as src:
        picks = np.concatenate([src.sample(100, seed=s, chunk_rows=250)[0].index for s in range(40)])
    counts = np.bincount(picks // 100, minlength=10)
    expected = 40 * 100 / 10  # 400 per tenth; a binomial spread of about 19
    assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected * 0.9)), counts
