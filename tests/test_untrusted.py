"""Untrusted model directories: loading never unpickles or runs anything from the files.

An attacker who controls the whole directory can also rewrite the manifest's checksums, so each
planted file here comes with a manifest that vouches for it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil

import numpy as np
import pytest

MARKER_NAME = "PWNED"


class Payload:
    """Unpickling this creates the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def vouch(model, name):
    """Rewrite the manifest so that its checksum of ``name`` matches the planted file."""
    manifest = json.loads((model / "manifest.json").read_text())
    data = (model / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (model / "manifest.json").write_text(json.dumps(manifest))


def edit_weights(model, edit):
    """Rewrite ``model``'s weights.npz as ``edit(arrays)`` leaves the dict of its arrays, and vouch for it."""
    with np.load(model / "weights.npz") as npz:
        weights = {k: npz[k] for k in npz.files}
    edit(weights)
    np.savez(model / "weights.npz", **weights)
    vouch(model, "weights.npz")


def plant(model, how, marker):
    payload = pickle.dumps(Payload(marker))
    if how == "weights are a pickle":
        (model / "weights.npz").write_bytes(payload)
        vouch(model, "weights.npz")
    elif how == "weights hold an object array":
        buffer = io.BytesIO()
        np.savez(buffer, **{"encoder.body.0.weight": np.array([Payload(marker)], dtype=object)})
        (model / "weights.npz").write_bytes(buffer.getvalue())
        vouch(model, "weights.npz")
    elif how == "onnx is a pickle":
        (model / "model.onnx").write_bytes(payload)
        vouch(model, "model.onnx")
    elif how == "extra torch checkpoint":
        (model / "weights.pt").write_bytes(payload)
        vouch(model, "weights.pt")
    else:
        raise ValueError(how)


HOW = ["weights are a pickle", "weights hold an object array", "onnx is a pickle", "extra torch checkpoint"]


@pytest.fixture
def planted_dirs(model_dir, tmp_path):
    dirs = {}
    for i, how in enumerate(HOW):
        copy = tmp_path / f"m{i}"
        shutil.copytree(model_dir, copy)
        plant(copy, how, tmp_path / MARKER_NAME)
        dirs[how] = copy
    return dirs


def test_the_payload_works_when_unpickled(tmp_path):
    """The planted file really would create the marker if anything unpickled it."""
    pickle.loads(pickle.dumps(Payload(tmp_path / MARKER_NAME)))
    assert (tmp_path / MARKER_NAME).exists()


@pytest.mark.parametrize("how", HOW)
def test_no_command_runs_the_payload(planted_dirs, how, csv_file, tmp_path):
    from click.testing import CliRunner

    from aaedetect import AAEDetectError, load
    from aaedetect.runtime import OnnxScorer
    from aaedetect_cli.main import main

    model = str(planted_dirs[how])
    commands = [
        ["score", str(csv_file), "-m", model, "-o", str(tmp_path / "a.csv")],
        ["score", str(csv_file), "-m", model, "-o", str(tmp_path / "b.csv"), "--engine", "torch"],
        ["info", "-m", model],
        ["export", "-m", model, "-o", str(tmp_path / "x.onnx")],
    ]
    for command in commands:
        result = CliRunner().invoke(main, command)
        assert "Traceback" not in result.stderr, (command, result.stderr)
        assert not (tmp_path / MARKER_NAME).exists(), command
    for loader in (load, OnnxScorer):
        try:
            loader(model)
        except AAEDetectError:
            pass
        assert not (tmp_path / MARKER_NAME).exists()


@pytest.mark.parametrize("how,engine,message", [
    ("weights are a pickle", "torch", "weights.npz: not a weights file aaedetect can read"),
    ("weights hold an object array", "torch", "weights.npz: not a weights file aaedetect can read"),
    ("onnx is a pickle", "onnx", "model.onnx: not a valid ONNX model"),
])
def test_planted_files_are_refused_clearly(planted_dirs, how, engine, message, csv_file):
    from click.testing import CliRunner

    from aaedetect_cli.main import main

    result = CliRunner().invoke(main, ["score", str(csv_file), "-m", str(planted_dirs[how]), "--engine", engine])
    assert result.exit_code == 4, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and message in result.stderr


def tampered_graph(model_dir, tmp_path, edit):
    """A copy of the model whose model.onnx was changed by ``edit(onnx_model)`` and vouched for."""
    import onnx

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    graph = onnx.load(str(copy / "model.onnx"))
    edit(graph)
    (copy / "model.onnx").write_bytes(graph.SerializeToString())
    vouch(copy, "model.onnx")
    return copy


def point_at_external_file(graph):
    import onnx

    tensor = graph.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"


def use_custom_operator(graph):
    graph.graph.node[0].domain = "com.evil"
    graph.opset_import.add(domain="com.evil", version=1)


@pytest.mark.parametrize("edit,message", [(point_at_external_file, "external tensor data"),
                                          (use_custom_operator, "outside standard ONNX")])
def test_unusual_onnx_graphs_are_refused(model_dir, tmp_path, edit, message):
    from aaedetect.errors import ModelFormatError
    from aaedetect.runtime import OnnxScorer

    with pytest.raises(ModelFormatError, match=message):
        OnnxScorer(tampered_graph(model_dir, tmp_path, edit))


def test_hostile_network_sizes_are_refused_before_allocation(model_dir, tmp_path):
    from aaedetect import load
    from aaedetect.errors import ModelFormatError

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["network"]["hidden"] = [10**9, 10**9]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="out of range"):
        load(copy)


@pytest.mark.parametrize("edit, message", [
    (lambda w: w.update({"neighbors.x_bank": w["neighbors.x_bank"][:, :-1]}), "neighbour rows do not match"),
    (lambda w: w.pop("neighbors.h_bank"), "malformed"),
])
def test_bad_neighbour_rows_are_refused(model_dir, tmp_path, edit, message):
    from aaedetect import load
    from aaedetect.errors import ModelFormatError

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    edit_weights(copy, edit)
    with pytest.raises(ModelFormatError, match=message):
        load(copy)
