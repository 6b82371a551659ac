"""The model directory: written atomically, read back only after its format and checksums check out.

Layout::

    MODEL_DIR/
      manifest.json   format, versions, options, schema, encoding state, calibration, threshold,
                      and the sha256 and size of every other file
      weights.npz     the torch state dict as plain arrays (numpy, read with allow_pickle=False)
      model.onnx      the whole scoring graph (when exported)

Nothing here unpickles or executes anything read from the directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import ModelFormatError, PathError, check_not_stopped

FORMAT_NAME = "aaedetect-model"
#: 4: a hidden layer wider than 32 units is kept as its principal axes and the reference rows in
#: them (``neighbors.h_mean``, ``neighbors.h_axes``); an older aaedetect would refuse those rows,
#: so it is told to upgrade instead. Version 3 directories (full hidden-layer rows) are still read.
FORMAT_VERSION = 4
#: Versions 1 and 2 (development builds: before the neighbour part, and before its self-match
#: rule and float64 search) are no longer read: their scores would not match their ONNX graphs.
OLDEST_FORMAT_VERSION = 3
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
#: The largest manifest we read: a manifest is small; a huge one is not ours.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_model_dir(path: str | os.PathLike, manifest: dict[str, Any], files: dict[str, bytes],
                    *, force: bool = False) -> Path:
    """Write ``files`` and ``manifest.json`` (with their checksums) as the directory ``path``.

    Everything goes to a temporary directory beside ``path`` and is renamed into place at the end,
    so a reader (or a crash) never sees a half-written model. An existing model directory at
    ``path`` is replaced only with ``force``, in one atomic exchange where the OS allows it.
    """
    target = Path(path)
    check_model_target(target, force)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    except OSError as exc:
        raise PathError(f"{target}: cannot write a model directory here ({exc.strerror or exc})") from exc
    try:
        manifest = dict(manifest)
        manifest["files"] = {}
        for name, data in files.items():
            _write_synced(tmp / name, data)
            manifest["files"][name] = {"sha256": sha256_bytes(data), "bytes": len(data)}
        _write_synced(tmp / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
        os.chmod(tmp, 0o755)
        check_not_stopped()
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def check_model_target(target: str | os.PathLike, force: bool) -> None:
    """Raise :class:`PathError` unless a model directory may be written at ``target``."""
    target = Path(target)
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{target}: cannot write a model directory here (permission denied)")
    if target.exists() and not target.is_dir():
        raise PathError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        if not force:
            raise PathError(f"{target}: directory exists and is not empty; pass --force to replace "
                            f"the model in it")
        if not (target / MANIFEST).is_file():
            # --force replaces a model, never an arbitrary directory (think `-o ~ --force`).
            raise PathError(f"{target}: not empty and holds no {MANIFEST}; refusing to replace "
                            f"something that is not a model directory")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    import ctypes  # here, not at the top: reading a model (every `aaedetect score`) never needs it
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _move_into_place(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old model
    else:
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path if str(path) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ModelDir:
    """A model directory whose manifest has been read and checked; files are verified on read."""

    def __init__(self, path: str | os.PathLike, *, verify_all: bool = True, ignore: tuple[str, ...] = (),
                 keep: tuple[str, ...] = ()):
        """Read and check the manifest; with ``verify_all``, check every listed file but those in
        ``ignore`` (files about to be replaced, such as a damaged ``model.onnx`` being re-exported).
        The checked bytes of the files in ``keep`` are held for the first :meth:`read` of each,
        which then neither reads nor hashes them again."""
        self.path = Path(path)
        self._kept: dict[str, bytes] = {}
        if not self.path.exists():
            raise PathError(f"{self.path}: no such model directory")
        if not self.path.is_dir():
            raise ModelFormatError(f"{self.path}: not a model directory (it is a file)")
        self.manifest = _read_manifest(self.path)
        if verify_all:
            for name in self.manifest["files"]:
                if name not in ignore:
                    data = self.read(name)
                    if name in keep:
                        self._kept[name] = data

    def problems(self) -> list[str]:
        """What is wrong with the listed files (missing, changed), one message each; [] if nothing."""
        found = []
        for name in self.manifest["files"]:
            try:
                self.read(name)
            except ModelFormatError as exc:
                found.append(str(exc))
        return found

    def read(self, name: str) -> bytes:
        """The bytes of ``name``, checked against the manifest's size and sha256."""
        if name in self._kept:
            return self._kept.pop(name)
        entry = self.manifest["files"].get(name)
        if entry is None:
            raise ModelFormatError(f"{self.path}: the manifest lists no file {name!r}")
        file = self.path / name
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise ModelFormatError(f"{file}: missing from the model directory") from None
        except OSError as exc:
            raise ModelFormatError(f"{file}: cannot be read ({exc.strerror or exc})") from exc
        if len(data) != entry["bytes"] or sha256_bytes(data) != entry["sha256"]:
            raise ModelFormatError(f"{file}: checksum mismatch, the file changed after the model "
                                   f"was written")
        return data


def read_arrays(data: bytes, where) -> dict[str, Any]:
    """The numpy arrays of a ``weights.npz``: plain numeric arrays only, never pickled objects
    (``allow_pickle=False`` turns a pickle, or an object array, into an error: never loaded)."""
    import io
    import zipfile

    import numpy as np

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            state = {}
            for key in arrays.files:
                array = arrays[key]
                if array.dtype.kind not in "fiub":
                    raise ValueError(f"array {key!r} has dtype {array.dtype}")
                state[key] = array.copy()
            return state
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelFormatError(f"{where}: not a weights file aaedetect can read ({exc})") from None


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    try:
        with open(file, "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: not a model directory (no {MANIFEST})") from None
    except OSError as exc:
        raise ModelFormatError(f"{file}: cannot be read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ModelFormatError(f"{file}: too large to be a manifest")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{file}: not an aaedetect manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(f"{file}: format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise ModelFormatError(f"{file}: format version {version} is newer than this aaedetect "
                               f"reads ({FORMAT_VERSION}); upgrade aaedetect")
    if version < 1:
        raise ModelFormatError(f"{file}: unknown format version {version}")
    if version < OLDEST_FORMAT_VERSION:
        raise ModelFormatError(f"{file}: format version {version} was written by a development "
                               f"build of aaedetect before {OLDEST_FORMAT_VERSION}; fit the model again")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("bytes"), int)
            for e in files.values()):
        raise ModelFormatError(f"{file}: the 'files' table is missing or malformed")
    for name in files:
        # Only plain file names inside the directory: no "../x", no absolute paths.
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ModelFormatError(f"{file}: bad file name {name!r} in the manifest")
    return manifest
