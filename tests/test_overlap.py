"""The reading and writing threads of chunked jobs (aaedetect.overlap): order, errors, early exits."""

import threading

import pytest

from aaedetect.overlap import Prefetch, Writer


def test_prefetch_yields_every_item_in_order_from_another_thread():
    threads = []

    def items():
        for i in range(50):
            threads.append(threading.current_thread())
            yield i

    with Prefetch(items(), depth=2) as ahead:
        assert list(ahead) == list(range(50))
    assert set(threads) == {threads[0]} and threads[0] is not threading.current_thread()


def test_prefetch_raises_the_error_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("line 7: bad")

    got = []
    with pytest.raises(ValueError, match="line 7"), Prefetch(items()) as ahead:
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_leaving_a_prefetch_early_stops_and_closes_the_source_in_its_thread():
    closed, produced = [], []

    def items():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.append(threading.current_thread())

    with Prefetch(items(), depth=1) as ahead:
        for item in ahead:
            if item == 3:
                break
    assert closed and closed[0] is not threading.current_thread()
    assert len(produced) <= 3 + 3  # the item in hand, the queued one and the one being produced


def test_writer_writes_in_order_and_finish_waits_for_all():
    written = []
    with Writer(written.append, depth=2) as writer:
        for i in range(100):
            writer.put(i)
        writer.finish()
        assert written == list(range(100))


def test_a_write_error_surfaces_in_the_caller_and_nothing_more_is_written():
    written = []

    def write(item):
        if item == 3:
            raise OSError("disk full")
        written.append(item)

    with pytest.raises(OSError, match="disk full"), Writer(write) as writer:
        for i in range(100):
            writer.put(i)
        writer.finish()
    assert written == [0, 1, 2]


def test_a_write_error_on_the_last_item_surfaces_in_finish():
    def write(item):
        if item == "last":
            raise OSError("disk full")

    writer = Writer(write)
    writer.put("first")
    writer.put("last")
    with pytest.raises(OSError, match="disk full"):
        writer.finish()
