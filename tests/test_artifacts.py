import json
import os

import pytest

from aaedetect import artifacts, load
from aaedetect.errors import ModelFormatError, PathError


def manifest():
    return {"format": artifacts.FORMAT_NAME, "format_version": artifacts.FORMAT_VERSION, "x": 1}


def test_write_and_read(tmp_path):
    path = tmp_path / "m"
    artifacts.write_model_dir(path, manifest(), {"a.bin": b"hello"})
    assert sorted(p.name for p in path.iterdir()) == ["a.bin", "manifest.json"]
    md = artifacts.ModelDir(path)
    assert md.manifest["x"] == 1 and md.read("a.bin") == b"hello"
    assert md.manifest["files"]["a.bin"]["bytes"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_existing_model_needs_force_and_is_replaced_whole(tmp_path):
    path = tmp_path / "m"
    artifacts.write_model_dir(path, manifest(), {"a.bin": b"one", "old.bin": b"x"})
    with pytest.raises(PathError, match="--force"):
        artifacts.write_model_dir(path, manifest(), {"a.bin": b"two"})
    assert artifacts.ModelDir(path).read("a.bin") == b"one"
    artifacts.write_model_dir(path, manifest(), {"a.bin": b"two"}, force=True)
    assert artifacts.ModelDir(path).read("a.bin") == b"two"
    assert not (path / "old.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_force_never_replaces_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "precious.txt").write_text("keep me")
    with pytest.raises(PathError, match="not a model directory"):
        artifacts.write_model_dir(tmp_path / "home", manifest(), {"a": b""}, force=True)
    assert (tmp_path / "home" / "precious.txt").read_text() == "keep me"


def test_empty_directory_is_fine(tmp_path):
    (tmp_path / "m").mkdir()
    artifacts.write_model_dir(tmp_path / "m", manifest(), {"a": b"1"})
    assert artifacts.ModelDir(tmp_path / "m").read("a") == b"1"


def test_target_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(PathError, match="not a directory"):
        artifacts.write_model_dir(tmp_path / "f", manifest(), {})


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "_move_into_place", boom)
    with pytest.raises(OSError):
        artifacts.write_model_dir(tmp_path / "m", manifest(), {"a": b"1"})
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def saved(model_dir, tmp_path):
    """A private copy of the session's model directory, free to damage."""
    import shutil

    path = tmp_path / "model"
    shutil.copytree(model_dir, path)
    return path


def test_changed_byte_is_detected(saved):
    weights = saved / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="weights.npz: checksum mismatch"):
        load(saved)


def test_kept_files_are_checked_once_and_read_once(saved, monkeypatch):
    """keep=: the bytes checked on opening serve the first read; later reads check again."""
    hashed = []
    real = artifacts.sha256_bytes
    monkeypatch.setattr(artifacts, "sha256_bytes", lambda data: hashed.append(len(data)) or real(data))
    model = artifacts.ModelDir(saved, keep=("model.onnx",))
    opened = len(hashed)
    assert model.read("model.onnx") == (saved / "model.onnx").read_bytes() and len(hashed) == opened
    model.read("model.onnx")
    assert len(hashed) == opened + 1
    with open(saved / "weights.npz", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelFormatError, match="weights.npz: checksum mismatch"):
        artifacts.ModelDir(saved, keep=("model.onnx",))


def test_missing_file_is_detected(saved):
    os.unlink(saved / "weights.npz")
    with pytest.raises(ModelFormatError, match="weights.npz: missing"):
        load(saved)


@pytest.mark.parametrize("content,match", [
    (b"\x00\xffgarbage", "not valid JSON"),
    (b"[1, 2]", "not an aaedetect manifest"),
    (json.dumps({"format": "aaedetect-model"}).encode(), "format_version"),
    (json.dumps({"format": "aaedetect-model", "format_version": 99, "files": {}}).encode(), "newer"),
    (json.dumps({"format": "aaedetect-model", "format_version": 3, "files": {"../x": {"sha256": "", "bytes": 0}}}).encode(), "bad file name"),
    (json.dumps({"format": "aaedetect-model", "format_version": 1, "files": {}}).encode(), "fit the model again"),
    (json.dumps({"format": "aaedetect-model", "format_version": 2, "files": {}}).encode(), "fit the model again"),
])
def test_bad_manifests(saved, content, match):
    (saved / "manifest.json").write_bytes(content)
    with pytest.raises(ModelFormatError, match=match):
        load(saved)


def test_manifest_with_wrong_contents(saved):
    m = json.loads((saved / "manifest.json").read_text())
    m["network"]["latent_dim"] += 1
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFormatError, match="does not match"):
        load(saved)
    del m["preprocessing"]
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFormatError, match="malformed manifest"):
        load(saved)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="no manifest.json"):
        load(tmp_path)
    with pytest.raises(PathError, match="no such model directory"):
        load(tmp_path / "nope")


def test_weights_are_plain_arrays(model_dir):
    import numpy as np

    with np.load(model_dir / "weights.npz", allow_pickle=False) as arrays:
        assert arrays.files
        assert all(arrays[k].dtype.kind in "fiu" for k in arrays.files)
