"""A corpus of bad and odd tables through the CLI, for both `fit` and `score`.

Errors: exit code of the class, one `error:` line naming the file (and column/line where it
applies), no traceback, and nothing written. Tolerable input: finite scores, a warning where it
matters.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aaedetect_cli.main import main

DATA, PATH = 3, 5
SCORES = ["anomaly_score", "recon_score", "latent_score", "neighbor_score"]


def good_rows(n: int = 60) -> str:
    rng = np.random.default_rng(0)
    lines = [f"{rng.normal():.4f},{rng.normal():.4f},{rng.choice(['x', 'y'])}" for _ in range(n)]
    return "a,b,k\n" + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    data = tmp / "train.csv"
    data.write_text(good_rows(200))
    result = CliRunner().invoke(main, ["fit", str(data), "-o", str(tmp / "model"), "--epochs", "2"])
    assert result.exit_code == 0, result.stderr
    return tmp / "model"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def check_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    assert "Traceback" not in result.stderr and result.stdout == ""


# name -> (file bytes, fit: (code, fragments...) or "ok" or "n/a", score: likewise)
CORPUS = {
    "duplicate columns": (b"a,b,a\n1,2,3\n", (DATA, "'a' appears more than once"),
                          (DATA, "'a' appears more than once")),
    "text in numeric column": (
        good_rows(60).replace("\n", "\n", 1).encode() + b"oops,1.0,x\n" + good_rows(40).split("\n", 1)[1].encode(),
        (DATA, "column 'a'", "line 62", "'oops' is not a number"),
        (DATA, "column 'a'", "line 62", "'oops' is not a number")),
    "empty file": (b"", (DATA, "empty"), (DATA, "empty")),
    "header without rows": (b"a,b,k\n", (DATA, "no rows"), "ok"),
    "too many fields": (b"a,b,k\n1,2,x\n1,2,x,4\n", (DATA, "line 3 has 4 fields, the header has 3"),
                        (DATA, "line 3 has 4 fields, the header has 3")),
    "too few fields": (b"a,b,k\n1,2,x\n1,2\n", (DATA, "line 3 has 2 fields, the header has 3"),
                       (DATA, "line 3 has 2 fields, the header has 3")),
    "binary garbage": (bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)),
                       (DATA, "binary"), (DATA, "binary")),
    "latin-1 text": ("a,b,k\n1,2,café\n".encode("latin-1"), (DATA, "not UTF-8"), (DATA, "not UTF-8")),
    "wrong delimiter": (b"a;b;k\n1;2;x\n", (DATA, "separated by ';'", "--sep"),
                        (DATA, "separated by ';'", "--sep")),
    "single row": (b"a,b,k\n1,2,x\n", (DATA, "1 row(s)", "at least 2"), "ok"),
    "every column constant": (b"a,b,k\n" + b"1,2,x\n" * 50, (DATA, "no usable column"), "ok"),
    "missing column": (b"a,k\n1,x\n", "n/a", (DATA, "missing column 'b' that the model needs")),
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_fit(name, tmp_path):
    content, expected, _ = CORPUS[name]
    if expected == "n/a":
        pytest.skip("fit needs no particular column")
    data = tmp_path / "data.csv"
    data.write_bytes(content)
    out = tmp_path / "model"
    result = run("fit", data, "-o", out, "--epochs", 1)
    if expected == "ok":
        assert result.exit_code == 0, result.stderr
        return
    check_error(result, expected[0], str(data), *expected[1:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]  # no model, no temporary


@pytest.mark.parametrize("name", list(CORPUS))
def test_score(name, tmp_path, model):
    content, _, expected = CORPUS[name]
    data = tmp_path / "data.csv"
    data.write_bytes(content)
    out = tmp_path / "out.csv"
    result = run("score", data, "-m", model, "-o", out)
    if expected == "ok":
        assert result.exit_code == 0, result.stderr
        scored = pd.read_csv(out)
        assert list(scored.columns[-5:]) == [*SCORES, "is_anomaly"]
        assert len(scored) == content.count(b"\n") - 1
        assert np.isfinite(scored[SCORES].to_numpy(dtype=float)).all()
        return
    check_error(result, expected[0], str(data), *expected[1:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]  # no output, no temporary


def test_score_to_stdout_writes_nothing_on_error(model, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text(good_rows(50) + "1,two,x\n")
    result = run("score", data, "-m", model, "--chunk-rows", 10)
    check_error(result, DATA, "column 'b'", "line 52", "'two'")


@pytest.mark.parametrize("output", ["out.csv", "out.parquet"])
def test_a_bad_line_in_a_later_chunk_leaves_no_output(model, tmp_path, output):
    """Chunks are read ahead in another thread and written behind in a third: a malformed line
    (found by the reader) or a bad value (found while scoring) in the fifth chunk still stops the
    job with the error naming its line, and nothing is put in place."""
    for bad, message in (("1,2,x,4\n", "line 45 has 4 fields, the header has 3"), ("1,two,x\n", "line 45")):
        data = tmp_path / "data.csv"
        data.write_text(good_rows(43) + bad + good_rows(30).split("\n", 1)[1])
        result = run("score", data, "-m", model, "-o", tmp_path / output, "--chunk-rows", 10)
        check_error(result, DATA, str(data), message)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


def test_tolerable_values_score_finite_with_warnings(model, tmp_path):
    data = tmp_path / "odd.csv"
    data.write_text("k,extra,b,a\n"            # another order, an extra column
                    "x,1,NaN,1e300\n"          # missing and huge
                    "z,2,-inf,inf\n"           # infinities, an unseen category
                    ",3,,\n"                   # everything missing
                    "y,4,1e-300,-1e308\n")
    out = tmp_path / "out.csv"
    result = run("score", data, "-m", model, "-o", out)
    assert result.exit_code == 0, result.stderr
    scored = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert list(scored.columns[:4]) == ["k", "extra", "b", "a"]
    assert np.isfinite(scored[SCORES].astype(float).to_numpy()).all()
    assert scored["a"].tolist() == ["1e300", "inf", "", "-1e308"]  # passed through untouched
    warnings = "\n".join(l for l in result.stderr.splitlines() if l.startswith("warning:"))
    assert "column 'a' has 1 infinite value(s)" in warnings
    assert "column 'k' has 1 value(s) not seen in training" in warnings
    assert "column 'a' has 1 missing value(s), none seen in training" in warnings
    huge = pd.read_csv(out)["anomaly_score"]
    assert huge[1] > huge.median() or math.isclose(huge[1], huge.median())


def test_fit_tolerates_missing_and_extreme_values(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80), "k": rng.choice(["x", "y"], 80)})
    df.loc[::7, "a"] = np.nan
    df.loc[3, "b"] = 1e300
    df.loc[5, "b"] = np.inf
    df.loc[::11, "k"] = None
    data = tmp_path / "train.csv"
    df.to_csv(data, index=False)
    result = run("fit", data, "-o", tmp_path / "m", "--epochs", 2)
    assert result.exit_code == 0, result.stderr
    scored = run("score", data, "-m", tmp_path / "m", "-o", tmp_path / "out.csv")
    assert scored.exit_code == 0, scored.stderr
    assert np.isfinite(pd.read_csv(tmp_path / "out.csv")[SCORES].to_numpy()).all()


def test_paths(model, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text(good_rows(30))
    check_error(run("fit", tmp_path / "nope.csv", "-o", tmp_path / "m"), PATH, "nope.csv", "no such file")
    check_error(run("fit", tmp_path, "-o", tmp_path / "m"), PATH, "is a directory")
    check_error(run("score", tmp_path / "nope.csv", "-m", model), PATH, "no such file")
    check_error(run("score", tmp_path, "-m", model), PATH, "is a directory")
    check_error(run("score", data, "-m", model, "-o", tmp_path), PATH, "is a directory")
    check_error(run("score", data, "-m", model, "-o", tmp_path / "no" / "out.csv"), PATH, "does not exist")
    check_error(run("score", data, "-m", model, "-o", "/proc/aaedetect-out.csv"), PATH, "cannot write")
    (tmp_path / "file").write_text("x")
    check_error(run("fit", data, "-o", tmp_path / "file" / "m"), PATH, "cannot write")
    check_error(run("fit", data, "-o", "/proc/aaedetect-model"), PATH, "cannot write")
    check_error(run("score", data, "-m", tmp_path / "nope"), PATH, "no such model directory")
