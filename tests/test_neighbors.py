"""The hidden layer's neighbour space: a wide layer is searched in its reference rows' principal
axes plus the length of the rest (aaedetect.neighbors.hidden_axes, project_hidden)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from aaedetect import AAEDetector, load
from aaedetect import neighbors as N
from aaedetect.config import NEIGHBOR_HIDDEN_AXES
from aaedetect.errors import ModelFormatError

from conftest import FAST
from test_untrusted import edit_weights

U = 2.0 ** -52  # float64 unit roundoff


def _rows(n, width, rank, seed=0):
    """``n`` rows of ``width`` float64 values lying in a random ``rank``-dimensional subspace."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(size=(n, rank)) @ rng.normal(size=(rank, width)) + rng.normal(size=width))


def _distances(a, b):
    return torch.cdist(a, b).numpy()


def test_a_layer_no_wider_than_the_axes_is_searched_as_it_is():
    assert N.hidden_axes(_rows(50, NEIGHBOR_HIDDEN_AXES, 5)) is None
    mean, axes = N.hidden_axes(_rows(50, NEIGHBOR_HIDDEN_AXES + 1, 5))
    assert mean.shape == (NEIGHBOR_HIDDEN_AXES + 1,) and axes.shape == (NEIGHBOR_HIDDEN_AXES + 1, NEIGHBOR_HIDDEN_AXES)
    torch.testing.assert_close(axes.T @ axes, torch.eye(NEIGHBOR_HIDDEN_AXES, dtype=torch.float64))


def test_rows_in_the_axes_span_keep_their_distances_and_others_never_get_closer():
    """Rows of a subspace the axes span keep their distances (to float64 rounding); any other
    rows' distances shrink at most, and a row far off the span stays far from every row."""
    bank = _rows(200, 64, 10)
    mean, axes = N.hidden_axes(bank, 16)
    projected = N.project_hidden(bank, mean, axes)
    assert projected.shape == (200, 17)
    scale = float(bank.abs().max()) ** 2 * 64
    np.testing.assert_allclose(_distances(projected, projected), _distances(bank, bank), atol=np.sqrt(100 * U * scale))

    others = _rows(100, 64, 64, seed=1)  # full rank: mostly off the span
    full = _distances(others, bank)
    short = _distances(N.project_hidden(others, mean, axes), projected)
    assert (short <= full * (1 + 1e-9) + 1e-9).all()
    step = torch.from_numpy(np.random.default_rng(2).normal(size=(1, 64)))
    step = step - step @ axes @ axes.T  # at right angles to every axis
    off = bank[:1] + 50.0 * step / step.norm()  # a reference row moved 50 off the span
    far = _distances(N.project_hidden(off, mean, axes), projected)
    assert far[0, 0] == pytest.approx(50.0, rel=1e-6)
    np.testing.assert_allclose(far.min(), _distances(off, bank).min(), rtol=0.05)


@pytest.fixture(scope="module")
def wide():
    """A table wide enough (20 columns -> hidden layers 128 and 64) for the hidden layer's axes."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(600, 4))
    table = pd.DataFrame(base @ rng.normal(size=(4, 20)) + 0.1 * rng.normal(size=(600, 20)),
                         columns=[f"c{j}" for j in range(20)])
    return table, AAEDetector(**FAST).fit(table)


def test_a_wide_hidden_layer_is_searched_in_its_axes_and_saved_with_them(wide, tmp_path):
    table, det = wide
    bank = det.graph_.neighbors
    hidden = det.net_config_.hidden[1]
    assert hidden > NEIGHBOR_HIDDEN_AXES
    assert bank.h_axes.shape == (hidden, NEIGHBOR_HIDDEN_AXES) and bank.h_bank.shape[1] == NEIGHBOR_HIDDEN_AXES + 1
    det.save(tmp_path / "m")
    with np.load(tmp_path / "m" / "weights.npz") as weights:
        assert weights["neighbors.h_axes"].shape == (hidden, NEIGHBOR_HIDDEN_AXES)
        assert weights["neighbors.h_mean"].shape == (hidden,)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["neighbors"]["hidden_axes"] == NEIGHBOR_HIDDEN_AXES
    from click.testing import CliRunner

    from aaedetect_cli.main import main

    info = CliRunner().invoke(main, ["info", "-m", str(tmp_path / "m")])
    assert info.exit_code == 0 and f"hidden layer searched in its {NEIGHBOR_HIDDEN_AXES} principal axes" in info.output
    again = load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.score_table(table), det.score_table(table))
    # the ONNX graph computes the same (its parity with torch was checked when it was written)
    from aaedetect.runtime import OnnxScorer

    from aaedetect.export import parity_error, parity_tolerance

    numeric, categorical = det.preprocessor_.transform(table)[:2]
    onnx = OnnxScorer(tmp_path / "m").run_arrays(numeric, categorical)
    assert parity_error(det.run_arrays(numeric, categorical), onnx) <= parity_tolerance(det.graph_)


def test_reference_rows_find_their_nearest_other_rows_in_the_axes(wide):
    """As in the full layer: a reference row scored against its own model leaves itself out."""
    from sklearn.neighbors import NearestNeighbors

    table, det = wide
    num, cat = (torch.from_numpy(a) for a in det.preprocessor_.transform(table))
    bank = det.graph_.neighbors
    with torch.no_grad():
        _, _, _, near_h, _, _ = det.graph_.raw_parts(num, cat)
        x = det.graph_.features(num, cat)
        in_bank = (x[:, None, :] == bank.x_bank[None]).all(2).any(1)
        h = N.project_hidden(N.hidden64(det.graph_.aae.encoder.body, x[in_bank]), bank.h_mean, bank.h_axes)
    ref = bank.h_bank.numpy().astype(np.float64)
    others = NearestNeighbors(n_neighbors=6).fit(ref).kneighbors(h.numpy())[0]
    np.testing.assert_allclose(near_h.numpy()[in_bank.numpy()], others[:, 1:].mean(1), rtol=2.0 ** -20)


def test_models_written_before_the_axes_still_load_and_score(wide, tmp_path):
    """A model directory from before (the full hidden layer's rows, no axes) scores as it did:
    the same as a graph whose reference rows are searched in the full layer."""
    table, det = wide
    det.save(tmp_path / "m")
    bank = det.graph_.neighbors
    with torch.no_grad():
        full = N.hidden64(det.graph_.aae.encoder.body, bank.x_bank).float().numpy()

    def full_rows(weights):
        del weights["neighbors.h_mean"], weights["neighbors.h_axes"]
        weights["neighbors.h_bank"] = full

    edit_weights(tmp_path / "m", full_rows)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    (tmp_path / "m" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 3}))
    old = load(tmp_path / "m")
    assert old.graph_.neighbors.h_axes is None and old.graph_.neighbors.h_bank.shape == full.shape
    num, cat = (torch.from_numpy(a) for a in det.preprocessor_.transform(table))
    with torch.no_grad():
        x = det.graph_.features(num, cat)
        h = N.hidden64(det.graph_.aae.encoder.body, x)
        expected = N.mean_neighbor_distance(h, torch.from_numpy(full), torch.from_numpy(full).double().pow(2).sum(1),
                                            bank.k)
        _, _, _, near_h, _, _ = old.graph_.raw_parts(num, cat)
    np.testing.assert_array_equal(near_h.numpy(), expected.numpy())
    # and its ONNX graph, built from those arrays, matches its torch graph
    data, entry = old.export_onnx()
    assert entry["parity_error"] is not None


@pytest.mark.parametrize("edit, message", [
    (lambda w: w.update({"neighbors.h_axes": w["neighbors.h_axes"][:-1]}), "neighbour rows do not match"),
    (lambda w: w.update({"neighbors.h_axes": w["neighbors.h_axes"][:, :-1]}), "malformed"),
    (lambda w: w.pop("neighbors.h_mean"), "malformed"),
    (lambda w: w.update({"neighbors.extra": w["neighbors.h_mean"]}), "malformed"),
])
def test_bad_hidden_axes_are_refused(wide, tmp_path, edit, message):
    _, det = wide
    det.save(tmp_path / "m")
    edit_weights(tmp_path / "m", edit)
    with pytest.raises(ModelFormatError, match=message):
        load(tmp_path / "m")


def test_the_axes_are_reproducible(wide):
    """Same data, options and seed: the same axes, reference rows and scores."""
    table, det = wide
    again = AAEDetector(**FAST).fit(table)
    for name in ("h_mean", "h_axes", "h_bank", "x_bank"):
        assert torch.equal(getattr(again.graph_.neighbors, name), getattr(det.graph_.neighbors, name)), name
    np.testing.assert_array_equal(again.score_samples(table), det.score_samples(table))
