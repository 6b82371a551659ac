"""The ONNX scoring graph, written directly from a model's weights with onnx's graph builder.

No torch here: ``aaedetect export`` and ``fit`` build the graph in milliseconds from the arrays in
``weights.npz`` and the manifest's state, op for op what :class:`aaedetect.model.ScoringGraph`
computes (the torch graph stays the reference: ``aaedetect.export.check_parity`` compares the two
on probe rows before a graph is written). The contract (inputs, outputs, dtypes) is in
:mod:`aaedetect.export` and in the README, "The ONNX graph".

Shapes: B rows (the dynamic ``batch`` axis), D encoded features, L latent size, M reference rows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .config import (DEFAULT_OPSET, INF_AS, NEIGHBOR_CANDIDATES, NEIGHBORS, PART_CAP,
                     SAME_ROW_RELATIVE)
from .runtime import INPUT_CATEGORICAL, INPUT_NUMERIC, OUTPUTS

if TYPE_CHECKING:  # pragma: no cover
    from .manifest import FittedState

#: Mirrors of the torch modules' settings (the parity check catches any drift).
BATCH_NORM_EPS = 1e-5  # torch.nn.BatchNorm1d's default
LEAKY_SLOPE = 0.2  # aaedetect.model.Discriminator
MIXTURE_STD = 0.5  # aaedetect.priors.MixturePrior.std
F32, F64, I64, BOOL = 1, 11, 7, 9  # onnx.TensorProto element types


class _Builder:
    """Nodes and initializers with generated names."""

    def __init__(self, opset: int):
        import onnx
        from onnx import helper, numpy_helper

        self.onnx, self.helper, self.numpy_helper = onnx, helper, numpy_helper
        self.opset = opset
        self.nodes, self.initializers, self._n = [], [], 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value, dtype, hint: str = "c") -> str:
        name = self.name(hint)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def op2(self, op_type: str, *inputs: str, **attrs) -> tuple[str, str]:
        outs = [self.name(op_type.lower()), self.name(op_type.lower())]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0], outs[1]

    # -- shorthands
    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, dtype=np.float32) -> str:
        """``x @ weight.T + bias`` (torch's Linear: weight (out, in))."""
        w = self.const(np.ascontiguousarray(np.asarray(weight, np.float32).T), dtype, "w")
        b = self.const(np.asarray(bias, np.float32), dtype, "b")
        return self.op("Add", self.op("MatMul", x, w), b)

    def reduce(self, op_type: str, x: str, axis: int, keepdims: int = 0) -> str:
        """A reduction over one axis; its axes are an input from opset 18 (ReduceSum: 13)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, x, self.const([axis], np.int64, "axes"), keepdims=keepdims)
        return self.op(op_type, x, axes=[axis], keepdims=keepdims)

    def cols(self, x: str, start: int, stop: int) -> str:
        """``x[:, start:stop]``."""
        return self.op("Slice", x, self.const([start], np.int64), self.const([stop], np.int64),
                       self.const([1], np.int64))


def build(state: "FittedState", weights: dict[str, np.ndarray], *, opset: int = DEFAULT_OPSET) -> bytes:
    """The serialized ONNX scoring graph of a fitted model (``weights``: the arrays of
    ``weights.npz``, neighbour banks included), checked by ``onnx.checker``."""
    g = _Builder(opset)
    helper, onnx = g.helper, g.onnx
    pre, cfg, cal = state.preprocessor, state.network, state.calibration
    n_num, widths = len(pre.numeric), [c.width for c in pre.categorical]
    inputs = []
    parts = []
    # ---- features (FeatureEncoder.forward)
    if n_num:
        inputs.append(helper.make_tensor_value_info(INPUT_NUMERIC, F64, ["batch", n_num]))
        missing = g.op("IsNaN", INPUT_NUMERIC)
        z = g.op("Div", g.op("Sub", INPUT_NUMERIC, g.const([c.center for c in pre.numeric], np.float64)),
                 g.const([c.scale for c in pre.numeric], np.float64))
        zero64 = g.const(0.0, np.float64)
        z = g.op("Where", missing, zero64, z)
        over = g.op("Max", g.op("Sub", g.op("Abs", z), g.const(pre.clip, np.float64)), zero64)
        clipped = g.op("Mul", g.op("Sign", z),
                       g.op("Add", g.const(pre.clip, np.float64),
                            g.op("Log", g.op("Add", over, g.const(1.0, np.float64)))))
        z = g.op("Where", g.op("Greater", over, zero64), clipped, z)
        z = g.op("Clip", g.op("Cast", z, to=F32), g.const(-INF_AS, np.float32), g.const(INF_AS, np.float32))
        parts.append(z)
        ind_cols = [j for j, c in enumerate(pre.numeric) if c.indicator]
        if ind_cols:
            parts.append(g.op("Cast", g.op("Gather", missing, g.const(ind_cols, np.int64), axis=1), to=F32))
    if widths:
        inputs.append(helper.make_tensor_value_info(INPUT_CATEGORICAL, I64, ["batch", len(widths)]))
        for j, width in enumerate(widths):
            code = g.cols(INPUT_CATEGORICAL, j, j + 1)  # (B, 1)
            parts.append(g.op("Cast", g.op("Equal", code, g.const(np.arange(width), np.int64)), to=F32))
    x = g.op("Concat", *parts, axis=1) if len(parts) > 1 else parts[0]  # (B, D)

    # ---- encoder (mu only: scoring is deterministic), decoder, per-column errors
    w = weights
    h = g.op("Relu", g.linear(x, w["encoder.body.0.weight"], w["encoder.body.0.bias"]))
    h = g.op("Relu", g.linear(h, w["encoder.body.3.weight"], w["encoder.body.3.bias"]))
    mu = g.linear(h, w["encoder.mu.weight"], w["encoder.mu.bias"])  # (B, L)
    d = g.op("Relu", g.linear(mu, w["decoder.body.0.weight"], w["decoder.body.0.bias"]))
    d = g.linear(d, *_fold_batch_norm(w, "decoder.body.3", "decoder.body.4"))
    out = g.linear(g.op("Relu", d), w["decoder.body.7.weight"], w["decoder.body.7.bias"])  # (B, D)
    errors = _column_errors(g, pre, x, out)  # (B, C)

    # ---- latent part
    t = g.op("LeakyRelu", g.linear(mu, w["discriminator.body.0.weight"], w["discriminator.body.0.bias"]),
             alpha=LEAKY_SLOPE)
    t = g.op("LeakyRelu", g.linear(t, w["discriminator.body.3.weight"], w["discriminator.body.3.bias"]),
             alpha=LEAKY_SLOPE)
    logit = g.reduce("ReduceSum", g.linear(t, w["discriminator.body.6.weight"],
                                           w["discriminator.body.6.bias"]), 1)  # (B,): squeeze of (B, 1)
    if state.options.latent_signal == "density":
        latent_raw = g.op("Sub", logit, _prior_log_prob(g, state.options.prior, cfg.latent_dim, mu, w))
    else:
        latent_raw = g.op("Softplus", g.op("Neg", logit))

    # ---- neighbour part
    has_neighbors = "neighbors.x_bank" in w
    if has_neighbors:
        x64 = g.op("Cast", x, to=F64)
        h64 = g.op("Relu", g.linear(x64, w["encoder.body.0.weight"], w["encoder.body.0.bias"], np.float64))
        h64 = g.op("Relu", g.linear(h64, w["encoder.body.3.weight"], w["encoder.body.3.bias"], np.float64))
        if "neighbors.h_axes" in w:  # a wide hidden layer, searched in its principal axes
            h64 = _project_hidden(g, h64, w["neighbors.h_mean"], w["neighbors.h_axes"])
        k = min(NEIGHBORS, len(w["neighbors.x_bank"]) - 1)
        near_x, near_columns = _mean_neighbor_distance(g, x64, w["neighbors.x_bank"], k, pre.feature_fold())
        near_h = _mean_neighbor_distance(g, h64, w["neighbors.h_bank"], k)
        g.op("Identity", near_columns, out="neighbor_errors")
    else:
        g.op("ConstantOfShape", g.op("Shape", errors), out="neighbor_errors",
             value=helper.make_tensor("zero", F32, [1], [0.0]))

    # ---- calibration (ScoringGraph.calibrated)
    recon_raw = g.reduce("ReduceSum", errors, 1)
    recon = _z(g, cal.recon, recon_raw, "recon_score")
    latent = _z(g, cal.latent, latent_raw, "latent_score")
    if has_neighbors:
        neighbor = g.op("Mul", g.op("Add", _z(g, cal.neighbor_x, near_x), _z(g, cal.neighbor_h, near_h)),
                        g.const(0.5, np.float32), out="neighbor_score")
    else:
        neighbor = g.op("ConstantOfShape", g.op("Shape", recon), out="neighbor_score",
                        value=helper.make_tensor("zero", F32, [1], [0.0]))
    anomaly = g.op("Add", recon, g.op("Mul", g.const(cal.latent_weight, np.float32),
                                      g.op("Clip", latent, g.const(0.0, np.float32),
                                           g.const(PART_CAP, np.float32))))
    anomaly = g.op("Add", anomaly, g.op("Mul", g.const(cal.neighbor_weight, np.float32),
                                        g.op("Min", neighbor, g.const(PART_CAP, np.float32))),
                   out="anomaly_score")
    g.op("Identity", errors, out="feature_errors")

    n_columns = n_num + len(widths)
    outputs = [helper.make_tensor_value_info(name, F32, ["batch", n_columns] if name.endswith("_errors")
                                             else ["batch"]) for name in OUTPUTS]
    graph = helper.make_graph(g.nodes, "aaedetect_scoring", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="aaedetect",
                              doc_string="aaedetect scoring graph; contract in the aaedetect README")
    model.ir_version = min(model.ir_version, 10)  # what onnxruntime 1.17+ reads
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def input_names(pre) -> list[str]:
    """The graph's inputs for a model with these columns (an input is absent when the model has
    no column of its kind)."""
    return [name for name, columns in ((INPUT_NUMERIC, pre.numeric), (INPUT_CATEGORICAL, pre.categorical))
            if columns]


def manifest_entry(pre, opset: int, parity_error: float | None) -> dict:
    """The model manifest's ``onnx`` entry for a graph built for these columns; ``parity_error``
    is None when no torch model was at hand to compare it with."""
    from .runtime import ONNX_FILE

    return {"file": ONNX_FILE, "opset": opset, "inputs": input_names(pre), "outputs": list(OUTPUTS),
            "parity_error": parity_error}


def _fold_batch_norm(w: dict, linear: str, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of one linear layer that does what ``linear`` then the batch norm ``norm``
    (in eval mode) do: the norm's scale s = gamma / sqrt(var + eps) multiplies each output's row
    of weights, and the bias becomes (b - mean) s + beta; computed in float64, stored in float32.

    Besides saving a pass over the activations, the graph then has no BatchNormalization node:
    onnxruntime's CUDA provider runs that node through cuDNN, which refuses batches of 65,536 rows
    or more (CUDNN_STATUS_NOT_SUPPORTED).
    """
    gamma, beta, mean, var = (np.asarray(w[f"{norm}.{k}"], np.float64)
                              for k in ("weight", "bias", "running_mean", "running_var"))
    scale = gamma / np.sqrt(var + BATCH_NORM_EPS)
    weight = np.asarray(w[f"{linear}.weight"], np.float64) * scale[:, None]
    bias = (np.asarray(w[f"{linear}.bias"], np.float64) - mean) * scale + beta
    return weight.astype(np.float32), bias.astype(np.float32)


def _column_errors(g: _Builder, pre, x: str, out: str) -> str:
    """FeatureEncoder.column_errors: (B, C) per-column reconstruction errors."""
    n_num = len(pre.numeric)
    ind_cols = [j for j, c in enumerate(pre.numeric) if c.indicator]
    n_ind = len(ind_cols)
    parts = []
    if n_num:
        diff = g.op("Sub", g.cols(x, 0, n_num), g.cols(out, 0, n_num))
        err = g.op("Mul", diff, diff)
        if n_ind:
            owner = np.zeros((n_ind, n_num), np.float32)
            owner[np.arange(n_ind), ind_cols] = 1.0
            owner = g.const(owner, np.float32, "owner")
            ind, ind_logit = g.cols(x, n_num, n_num + n_ind), g.cols(out, n_num, n_num + n_ind)
            present = g.op("Sub", g.const(1.0, np.float32), g.op("MatMul", ind, owner))
            err = g.op("Mul", err, present)
            bce = g.op("Sub", g.op("Softplus", ind_logit), g.op("Mul", ind_logit, ind))
            err = g.op("Add", err, g.op("MatMul", bce, owner))
        parts.append(err)
    offset = n_num + n_ind
    for c in pre.categorical:
        logits, target = g.cols(out, offset, offset + c.width), g.cols(x, offset, offset + c.width)
        ce = g.op("Sub", g.reduce("ReduceLogSumExp", logits, 1, keepdims=1),
                  g.reduce("ReduceSum", g.op("Mul", logits, target), 1, keepdims=1))
        parts.append(ce)  # (B, 1)
        offset += c.width
    return g.op("Concat", *parts, axis=1) if len(parts) > 1 else g.op("Identity", parts[0])


def _prior_log_prob(g: _Builder, spec: str, latent_dim: int, z: str, weights) -> str:
    """The prior's log-density (B,) of codes ``z`` (aaedetect.priors); a mixture's means are
    among the weights."""
    if spec == "gaussian":
        square = g.reduce("ReduceSum", g.op("Mul", z, z), 1)
        return g.op("Mul", g.const(-0.5, np.float32),
                    g.op("Add", square, g.const(latent_dim * math.log(2 * math.pi), np.float32)))
    if spec == "uniform":
        half, edge = math.sqrt(3.0), 0.25
        outside = g.op("Max", g.op("Sub", g.op("Abs", z), g.const(half, np.float32)), g.const(0.0, np.float32))
        scaled = g.op("Div", outside, g.const(edge, np.float32))
        penalty = g.op("Mul", g.const(0.5, np.float32), g.reduce("ReduceSum", g.op("Mul", scaled, scaled), 1))
        return g.op("Sub", g.const(-latent_dim * math.log(2 * half), np.float32), penalty)
    means = np.asarray(weights["prior.means"], np.float32)  # mixture:K: (K, L)
    k = len(means)
    diff = g.op("Sub", g.op("Unsqueeze", z, g.const([1], np.int64)), g.const(means[None], np.float32))
    scaled = g.op("Div", diff, g.const(MIXTURE_STD, np.float32))
    log_comp = g.op("Sub", g.op("Mul", g.const(-0.5, np.float32),
                                g.reduce("ReduceSum", g.op("Mul", scaled, scaled), 2)),
                    g.const(latent_dim * math.log(MIXTURE_STD * math.sqrt(2 * math.pi)), np.float32))
    return g.op("Sub", g.reduce("ReduceLogSumExp", log_comp, 1), g.const(math.log(k), np.float32))


def _project_hidden(g: _Builder, h64: str, mean: np.ndarray, axes: np.ndarray) -> str:
    """aaedetect.neighbors.project_hidden: (B, A + 1) float64, the axes' coordinates and the
    length of the rest."""
    centred = g.op("Sub", h64, g.const(mean, np.float64, "h_mean"))
    along = g.op("MatMul", centred, g.const(axes, np.float64, "h_axes"))  # (B, A)
    rest = g.op("Sub", g.reduce("ReduceSum", g.op("Mul", centred, centred), 1, keepdims=1),
                g.reduce("ReduceSum", g.op("Mul", along, along), 1, keepdims=1))
    rest = g.op("Sqrt", g.op("Max", rest, g.const(0.0, np.float64)))  # (B, 1)
    return g.op("Concat", along, rest, axis=1)


def _mean_neighbor_distance(g: _Builder, query64: str, bank: np.ndarray, k: int,
                            fold: np.ndarray | None = None):
    """aaedetect.neighbors.mean_neighbor_distance: (B,) float32, from float64 queries (B, F); with
    ``fold`` (F, C), also the per-column differences (B, C) float32 to the same nearest rows."""
    bank32 = np.asarray(bank, np.float32)
    # The ranking |b|^2 - 2 q.b as one MatMul of [q, 1] (B, F+1) by [-2 b; |b|^2] (F+1, M): a Gemm
    # with the lengths as its bias (C) writes the (B, M) block twice, C broadcast and then the
    # product added, and that block, not the arithmetic, is most of the search's cost.
    ranker = np.concatenate([-2.0 * bank32.T, (bank32 * bank32).sum(1)[None]]).astype(np.float32)
    bank64 = bank32.astype(np.float64)  # exact: the float32 rows, widened
    # The rows gathered for the exact stage, stored widened: a Cast of every gathered (B, c, F)
    # block cost more than the few MB this adds to the file.
    bank_rows = g.const(bank64, np.float64, "bank")  # (M, F)
    bank_sq64 = g.const((bank64 * bank64).sum(1), np.float64, "bank_sq64")
    q1 = g.op("Pad", g.op("Cast", query64, to=F32), g.const([0, 0, 0, 1], np.int64),
              g.const(1.0, np.float32))  # (B, F+1): a column of ones appended
    rank = g.op("MatMul", q1, g.const(ranker, np.float32, "ranker"))  # (B, M): |q-b|^2 - |q|^2
    n_candidates = min(NEIGHBOR_CANDIDATES * (k + 1), bank32.shape[0])
    _, candidates = g.op2("TopK", rank, g.const([n_candidates], np.int64), axis=1, largest=0, sorted=1)
    rows = g.op("Gather", bank_rows, candidates, axis=0)  # (B, c, F) float64
    diff = g.op("Sub", rows, g.op("Unsqueeze", query64, g.const([1], np.int64)))
    exact = g.reduce("ReduceSum", g.op("Mul", diff, diff), 2)  # (B, c)
    q_sq64 = g.reduce("ReduceSum", g.op("Mul", query64, query64), 1, keepdims=1)
    cutoff = g.op("Mul", g.const(SAME_ROW_RELATIVE ** 2, np.float64),
                  g.op("Add", q_sq64, g.op("Gather", bank_sq64, candidates, axis=0)))
    exact = g.op("Where", g.op("LessOrEqual", exact, cutoff), g.const(0.0, np.float64), exact)
    nearest, order = g.op2("TopK", exact, g.const([k + 1], np.int64), axis=1, largest=0, sorted=1)
    nearest = g.op("Sqrt", nearest)  # (B, k+1)
    self_match = g.op("Equal", g.reduce("ReduceSum", g.cols(nearest, 0, 1), 1), g.const(0.0, np.float64))
    skip_first = g.reduce("ReduceMean", g.cols(nearest, 1, k + 1), 1)
    keep_first = g.reduce("ReduceMean", g.cols(nearest, 0, k), 1)
    distance = g.op("Cast", g.op("Where", self_match, skip_first, keep_first), to=F32)
    if fold is None:
        return distance
    # The k chosen candidates as a (B, c) weight of 1/k each, then weights @ squares @ fold.
    chosen = g.op("Where", g.op("Unsqueeze", self_match, g.const([1], np.int64)),
                  g.cols(order, 1, k + 1), g.cols(order, 0, k))  # (B, k) of candidate slots
    slots = g.op("Equal", g.op("Unsqueeze", chosen, g.const([2], np.int64)),
                 g.const(np.arange(n_candidates), np.int64))  # (B, k, c)
    weights = g.op("Div", g.reduce("ReduceSum", g.op("Cast", slots, to=F64), 1, keepdims=1),
                   g.const(float(k), np.float64))  # (B, 1, c)
    squares = g.op("MatMul", weights, g.op("Mul", diff, diff))  # (B, 1, F)
    columns = g.op("MatMul", g.reduce("ReduceSum", squares, 1), g.const(fold, np.float64, "fold"))
    return distance, g.op("Cast", columns, to=F32)


def _z(g: _Builder, part, raw: str, out: str | None = None) -> str:
    """PartCalibration.z in float32: ``(log(raw + offset) - center) / scale`` (or without the log)."""
    if part.log:
        raw = g.op("Log", g.op("Add", raw, g.const(part.offset, np.float32)))
    return g.op("Div", g.op("Sub", raw, g.const(part.center, np.float32)), g.const(part.scale, np.float32),
                out=out)
