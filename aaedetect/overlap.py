"""Reading, scoring and writing at the same time: a chunked job's stages in their own threads.

pyarrow reads, parses and writes CSV without holding the GIL, and onnxruntime scores without it,
so on a machine with spare cores (or a GPU doing the scoring) the next chunk can be read and the
last one written while this one is scored. Everything arrives in order, and the first error of a
stage is raised in the caller's thread at the point where a sequential job would have raised it,
so what a job writes and which error it reports do not change.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

_END = object()
_POLL_SECONDS = 0.1


class _Stage:
    """A worker thread and the bounded queue between it and the caller."""

    def __init__(self, depth: int, name: str):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=name, daemon=True)

    def _guarded(self) -> None:
        raise NotImplementedError

    def _put(self, item) -> bool:
        """Queue ``item``, waiting while the queue is full; False once the stage is stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _get(self):
        """The next item, waiting while the queue is empty; _END once the stage is stopped."""
        while not self._stop.is_set():
            try:
                return self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
        return _END

    def stop(self) -> None:
        """Stop the worker and wait for it (it finishes the item in hand first)."""
        self._stop.set()
        self._thread.join()


class Prefetch(_Stage, Generic[T]):
    """Iterate ``items`` in a worker thread, up to ``depth`` items ahead of the caller.

    Use as a context manager: leaving it early stops the worker (after the item it is producing)
    and closes ``items`` in the worker's thread, where it ran.
    """

    def __init__(self, items: Iterable[T], depth: int = 1, name: str = "aaedetect-read"):
        super().__init__(depth, name)
        self._items = items
        self._thread.start()

    def _guarded(self) -> None:
        iterator = iter(self._items)
        try:
            for item in iterator:
                if not self._put((True, item)):
                    return
            self._put((True, _END))
        except BaseException as exc:  # raised in the caller's thread, in order
            self._put((False, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        while True:
            entry = self._queue.get()
            ok, value = entry
            if not ok:
                self.stop()
                raise value
            if value is _END:
                return
            yield value

    def __enter__(self) -> "Prefetch[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Writer(_Stage):
    """Call ``write(item)`` for each ``put(item)`` in a worker thread, in order, at most ``depth``
    items behind. The worker's first error is raised by the next ``put`` or by ``finish``; after an
    error it writes nothing more. ``finish()`` waits until everything put is written."""

    def __init__(self, write: Callable[[object], None], depth: int = 1, name: str = "aaedetect-write"):
        super().__init__(depth, name)
        self._write = write
        self._error: BaseException | None = None
        self._thread.start()

    def _guarded(self) -> None:
        while True:
            item = self._get()
            if item is _END:
                return
            try:
                self._write(item)
            except BaseException as exc:
                self._error = exc
                self._stop.set()
                return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, item) -> None:
        self._raise()
        if not self._put(item):
            self._thread.join()
            self._raise()

    def finish(self) -> None:
        """Wait for every item put to be written; raise the worker's error, if any."""
        self._put(_END)  # refused only once the worker has stopped on an error
        self._thread.join()
        self._raise()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
