"""The ONNX scoring graph's contract, and its parity with the torch graph.

The graph itself is written from the weights by :mod:`aaedetect.onnx_graph` (no torch); this
module holds what needs the torch model: its outputs on probe rows, and the parity check that
``fit`` and ``aaedetect export`` run before a graph is written. The contract (documented in the
README, "The ONNX graph"):

- inputs ``numeric`` float64 (batch, n_numeric): raw values of the model's numeric columns in
  manifest order, NaN where missing; ``categorical`` int64 (batch, n_categorical): category codes
  from the manifest's vocabularies. An input is absent when the model has no column of its kind.
- outputs ``anomaly_score``, ``recon_score``, ``latent_score``, ``neighbor_score`` float32
  (batch,), then per model column float32 (batch, n_numeric + n_categorical): ``feature_errors``
  (each column's reconstruction error) and ``neighbor_errors`` (each column's squared difference
  to the nearest reference rows in the encoded input, averaged over them; zeros without the
  neighbour part). Explanations (``--explain``) are computed from these outputs.

Parity (the one definition; tests and the export check use it): see :func:`parity_error` and
:func:`parity_tolerance`.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import AAEDetectError
from .model import ScoringGraph
from .preprocess import TabularPreprocessor
from .runtime import CPU, OUTPUTS, make_session, run_session

#: float32's unit roundoff: one rounding is off by at most this share of the value.
UNIT_ROUNDOFF = 2.0 ** -24
#: Outputs whose split over columns depends on which of equally near rows an engine picks.
TIE_SPLIT_OUTPUTS = ("neighbor_errors",)


def torch_outputs(graph: ScoringGraph, numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
    device = next(iter(graph.buffers())).device
    with torch.no_grad():
        outs = graph.eval()(torch.from_numpy(numeric).to(device), torch.from_numpy(categorical).to(device))
    return {name: value.cpu().numpy() for name, value in zip(OUTPUTS, outs)}


def parity_error(expected, got, names=OUTPUTS) -> float:
    """How far two engines' outputs (mappings of arrays: graph outputs, or scored tables) are
    apart: the largest, over the outputs ``names``, of
    ``max|got - expected| / max(1, max|expected|)`` over the batch (inf where one side is not
    finite and the other is, or where they differ in shape).

    Normwise, not elementwise: rounding in a float32 layer is relative to the size of the vectors
    it sums, not to each result, so a score near 0 carries the rounding of its larger inputs.
    The floor of 1 is one score unit (a robust standard deviation of normal rows).

    ``neighbor_errors`` is compared by its row sums (each row's mean squared distance to its
    nearest reference rows): where several reference rows are equally near (tables of categories
    are full of such ties), the engines may pick different ones among them, which changes the
    per-column split but not the distances.
    """
    worst = 0.0
    for name in names:
        a, b = np.asarray(expected[name], np.float64), np.asarray(got[name], np.float64)
        if name in TIE_SPLIT_OUTPUTS and a.shape == b.shape:
            a, b = a.sum(-1), b.sum(-1)
        if a.shape != b.shape or not np.array_equal(np.isfinite(a), np.isfinite(b)):
            return float("inf")
        if a.size:
            finite = np.isfinite(a)
            scale = max(float(np.max(np.abs(a[finite]), initial=0.0)), 1.0)
            worst = max(worst, float(np.max(np.abs(b[finite] - a[finite]), initial=0.0)) / scale)
    return worst


def parity_tolerance(graph: ScoringGraph) -> float:
    """The largest :func:`parity_error` that float32 rounding explains for this graph.

    Engines pick different float32 kernels (torch's MKL or oneDNN, onnxruntime's MLAS, each per
    CPU), which sum in different orders. A dot product of n float32 terms is off by at most about
    n * u of the sum of its terms' sizes (u = 2^-24), and the errors of a chain of layers add up,
    so a raw score part is within u * (the sum of the fan-ins along the longest chain of float32
    layers) of exact, relatively, and two engines within twice that. Calibration then scales
    each part: a log part's relative error e becomes ``e / scale`` score units, a linear part's
    ``e * (|center| / scale + |z|)`` (measured against ``max(1, |z|)``); ``anomaly_score`` adds
    the parts with their weights. A worst-case bound: real differences are far smaller. The neighbour part is computed in float64 (see
    :func:`aaedetect.neighbors.hidden64`) and adds nothing at this precision.
    """
    cfg = graph.aae.cfg
    h1, h2 = cfg.hidden
    encoder = cfg.n_inputs + h1 + h2  # input layer, second layer, mu head
    recon_chain = encoder + cfg.latent_dim + h2 + h1  # then the decoder's three layers
    latent_chain = encoder + cfg.latent_dim + 2 * cfg.disc_hidden  # or the discriminator's
    rounding = 2.0 * UNIT_ROUNDOFF * max(recon_chain, latent_chain)
    cal = graph.calibration

    def gain(part) -> float:  # score units per unit of relative error in the raw part
        return 1.0 / part.scale if part.log else abs(part.center) / part.scale + 1.0

    return (rounding * max(gain(cal.recon), gain(cal.latent), 1.0)
            * (1.0 + cal.latent_weight + cal.neighbor_weight))


def check_parity(graph: ScoringGraph, onnx_bytes: bytes, numeric: np.ndarray, categorical: np.ndarray,
                 *, tolerance: float | None = None) -> float:
    """Score the rows with torch and with onnxruntime (CPU); raise if they disagree by more than
    ``tolerance`` (default: :func:`parity_tolerance` of the graph's network)."""
    tolerance = parity_tolerance(graph) if tolerance is None else tolerance
    session = make_session(onnx_bytes, [CPU])
    got = run_session(session, numeric, categorical)
    error = parity_error(torch_outputs(graph, numeric, categorical), got)
    if not error <= tolerance:
        raise AAEDetectError(f"the exported ONNX graph disagrees with torch (error {error:.2g} > "
                             f"{tolerance:.2g}, the bound for float32 rounding); please report this")
    return error


def probe_rows(pre: TabularPreprocessor, n: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic rows that exercise the whole graph: typical values, missing values, extremes
    (up to +-1e300 and inf) and every category code, including the unseen and missing slots."""
    rng = np.random.default_rng(seed)
    center = np.array([c.center for c in pre.numeric])
    scale = np.array([c.scale for c in pre.numeric])
    with np.errstate(over="ignore", invalid="ignore"):  # a column with a huge spread may overflow: fine
        numeric = center + scale * rng.standard_normal((n, len(pre.numeric))) * rng.choice([0.5, 1, 3, 20], (n, 1))
    if len(pre.numeric):
        numeric[rng.random(numeric.shape) < 0.05] = np.nan
        numeric[0] = np.inf
        numeric[1] = -1e300
    categorical = np.stack([rng.integers(0, c.width, n) for c in pre.categorical], axis=1) \
        if pre.categorical else np.zeros((n, 0), dtype=np.int64)
    return numeric.astype(np.float64), categorical.astype(np.int64)
