"""The exceptions users see. Each class carries the CLI exit code for its kind of failure.

The library raises these; only the CLI catches them and turns them into one ``error:`` line.
"""

from __future__ import annotations


class AAEDetectError(Exception):
    """Base class of every error aaedetect raises on purpose."""

    exit_code = 1


class OptionError(AAEDetectError, ValueError):
    """An option has a value it cannot take (bad prior name, negative epochs, ...)."""

    exit_code = 2


class DataError(AAEDetectError, ValueError):
    """The input table cannot be used: unreadable, missing a column, text in a numeric column, ..."""

    exit_code = 3


class ModelFormatError(AAEDetectError):
    """A model directory is missing, damaged, changed after it was written, or of another format."""

    exit_code = 4


class PathError(AAEDetectError, OSError):
    """A path cannot be read or written: it does not exist, is a directory, has no permission."""

    exit_code = 5


class TrainingError(AAEDetectError, RuntimeError):
    """Training failed and could not recover (for example losses that stay NaN)."""

    exit_code = 6


class SmallTableWarning(UserWarning):
    """A fit on a table too small to hold rows out: calibration and threshold are weak."""


EXIT_CODES = {
    0: "success",
    1: "internal error (a bug: please report it with the output of --debug)",
    OptionError.exit_code: "usage: an unknown command or option, or an option value out of range",
    DataError.exit_code: "bad input data: unreadable file, missing or malformed column",
    ModelFormatError.exit_code: "bad model directory: missing, damaged, changed or unsupported",
    PathError.exit_code: "a path cannot be read or written",
    TrainingError.exit_code: "training failed (diverged and could not recover)",
    130: "interrupted (Ctrl-C / SIGINT)",
    143: "terminated (SIGTERM)",
}


class Terminated(BaseException):
    """The process was asked to stop (the CLI's SIGTERM): raised like Ctrl-C, so that temporary
    files and directories are cleaned up and nothing is put in place."""


#: Set when a stop was asked for (see :func:`request_stop`). A signal handler's exception can be
#: lost: Python only prints an exception raised while a finalizer (``__del__``) runs, and goes on.
#: So whatever puts a result in place (``AtomicOutput.commit``, ``write_model_dir``) checks this
#: first, with :func:`check_not_stopped`, and a stop is never followed by a result.
_STOP_REQUESTED = False


def request_stop() -> None:
    """Ask for a stop (from a signal handler), then raise :class:`Terminated`."""
    global _STOP_REQUESTED
    _STOP_REQUESTED = True
    raise Terminated()


def check_not_stopped() -> None:
    """Raise :class:`Terminated` when a stop was asked for, even if its first exception was lost."""
    if _STOP_REQUESTED:
        raise Terminated()
