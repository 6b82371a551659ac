"""aaedetect.arrays: Arrow <-> numpy through the buffers, as pyarrow's own conversions would give."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aaedetect.arrays import booleans, from_numpy, is_text, null_string, strings, to_numpy


@pytest.mark.parametrize("values,dtype", [
    ([1.5, None, -2.0, float("inf")], np.float64),
    ([1, 2, None], np.float64),
    ([3, -4, 5], np.int64),
    ([True, False, True], bool),
    ([True, None, False], np.float64),
])
def test_to_numpy_matches_pyarrow_and_honours_offsets(values, dtype):
    array = pa.array(values)
    for part in (array, array.slice(1), pa.chunked_array([array.slice(0, 1), array.slice(1)])):
        expected = pc.cast(part, pa.float64()).to_numpy(zero_copy_only=False).astype(dtype)
        got = to_numpy(part, dtype)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, expected)
        got[...] = 0  # a copy: writing to it leaves the Arrow data alone
        np.testing.assert_array_equal(to_numpy(part, dtype), expected)


def test_to_numpy_refuses_nulls_it_cannot_hold():
    with pytest.raises(ValueError, match="1 null value"):
        to_numpy(pa.array([1, None]), np.int64)
    assert to_numpy(pa.array([], pa.float64())).shape == (0,)


def test_from_numpy_shares_memory_and_keeps_the_type():
    values = np.array([0.5, -1.25, 3.0], np.float32)
    array = from_numpy(values)
    assert array.type == pa.float32() and array.to_pylist() == values.tolist()
    assert from_numpy(np.array([1, 0], np.int8)).type == pa.int8()


def test_booleans_and_text_types():
    flags = np.array([True, False, True])
    assert booleans(flags).equals(pa.array(flags.tolist())) and booleans(flags[1:]).to_pylist() == [False, True]
    assert is_text(pa.string()) and is_text(pa.large_string())
    assert not any(is_text(t) for t in (pa.binary(), pa.int64(), pa.dictionary(pa.int8(), pa.string())))


def test_strings_round_trip():
    values = ["a", None, "héllo, wörld", "", "x" * 1000]
    array = strings(values)
    assert array.type == pa.string() and array.to_pylist() == values and array.null_count == 1
    assert array.equals(pa.array(values, pa.string()))
    assert strings([]).to_pylist() == []
    assert null_string().is_valid is False


def test_the_helpers_do_not_import_pandas():
    code = ("import sys, numpy as np, pyarrow.compute as pc\n"
            "from aaedetect.arrays import booleans, from_numpy, strings, to_numpy\n"
            "t = strings(['1', None, '2'])\n"
            "to_numpy(pc.cast(t, 'float64')); to_numpy(pc.is_null(t), bool); from_numpy(np.zeros(2))\n"
            "booleans(np.ones(2, bool))\n"
            "assert 'pandas' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
