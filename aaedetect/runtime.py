"""Scoring with onnxruntime alone: ``OnnxScorer(model_dir).score_table(df)``.

This module must never import torch (a test checks it): batch jobs and Spark executors start
fast and need no torch install. It picks the CUDA execution provider when the machine has a
working one, else the CPU provider, and says in one log line which and why.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .artifacts import ModelDir
from .config import DEVICES, SCORE_BATCH_ROWS
from .errors import ModelFormatError, OptionError
from .preprocess import TabularPreprocessor
from .scoring import Calibration, FrameScorer

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("aaedetect")

ONNX_FILE = "model.onnx"
INPUT_NUMERIC = "numeric"
INPUT_CATEGORICAL = "categorical"
OUTPUTS = ("anomaly_score", "recon_score", "latent_score", "neighbor_score", "feature_errors",
           "neighbor_errors")
#: The outputs of graphs written before ``neighbor_errors`` was added: they score as before, and
#: ``--explain`` asks for the graph to be written again (``aaedetect export`` does it).
OUTPUTS_WITHOUT_EXPLAIN = OUTPUTS[:5]
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: The CUDA provider's options. TF32 off: onnxruntime turns it on by default on Ampere and newer
#: cards, where float32 matrix products then round their inputs to 10 bits and scores drift from
#: the CPU's by ~1e-3 relative (0.013 on a score of 23, measured on an H100); the networks are
#: small, so full float32 costs little (benchmarks/results/gpu.md).
CUDA_OPTIONS = {"use_tf32": "0"}
#: Rows per onnxruntime call, by provider (see ``aaedetect.config.SCORE_BATCH_ROWS``).
DEFAULT_BATCH_ROWS = {CPU: SCORE_BATCH_ROWS["cpu"], CUDA: SCORE_BATCH_ROWS["cuda"]}


def _ort():
    import onnxruntime

    return onnxruntime


def make_session(model: bytes | str, providers: Sequence[str], *, threads: int | None = None):
    """An onnxruntime session with quiet logging and full graph optimisation."""
    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a missing GPU is reported by us, in one line
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    providers = [(CUDA, CUDA_OPTIONS) if p == CUDA else p for p in providers]
    return ort.InferenceSession(model, sess_options=options, providers=providers)


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA provider cannot run here, or None when it might (the session is the proof)."""
    ort = _ort()
    if CUDA not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver on this machine (libcuda.so.1 not found)"
    # CUDA and cuDNN from pip wheels (nvidia-*-cu12) are not on the loader's path by default;
    # onnxruntime >= 1.19 can load them from site-packages before the session needs them.
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # a partial CUDA install: the session below will tell
            logger.debug("onnxruntime.preload_dlls failed: %s", exc)
    return None


#: Operator domains an aaedetect graph uses: the standard ONNX operators only.
_STANDARD_DOMAINS = ("", "ai.onnx")


def verify_graph(data: bytes, where: str) -> frozenset[str]:
    """Refuse an ONNX file that is not a plain aaedetect scoring graph.

    The model directory may come from anywhere. A graph of standard operators cannot run code,
    but ONNX can also point at external files (or, in onnxruntime, at memory addresses) for its
    weights, and can call custom-operator domains: our graphs never do, so such a file is refused
    before onnxruntime sees it. Returns the operator types the graph uses.
    """
    proto = _onnx_proto()
    try:
        model = proto.ModelProto()
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelFormatError(f"{where}: not a valid ONNX model ({type(exc).__name__})") from None
    if any(t.data_location == proto.TensorProto.EXTERNAL or len(t.external_data)
           for t in _all_tensors(model.graph)):
        raise ModelFormatError(f"{where}: refers to external tensor data, which aaedetect graphs "
                               f"never do; refusing it")
    domains = {n.domain for n in model.graph.node} | {o.domain for o in model.opset_import}
    odd = sorted(d for d in domains if d not in _STANDARD_DOMAINS)
    if odd or len(model.functions):
        raise ModelFormatError(f"{where}: uses operators outside standard ONNX "
                               f"({', '.join(odd) or 'local functions'}); refusing it")
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if not set(inputs) <= {INPUT_NUMERIC, INPUT_CATEGORICAL} or tuple(outputs) not in (OUTPUTS, OUTPUTS_WITHOUT_EXPLAIN):
        raise ModelFormatError(f"{where}: inputs {inputs} and outputs {outputs} are not those of an "
                               f"aaedetect scoring graph")
    return frozenset(n.op_type for n in model.graph.node)


def _onnx_proto():
    """onnx's protobuf classes (``onnx.onnx_ml_pb2``), without importing the rest of onnx.

    ``import onnx`` costs a tenth of a second (helpers, the checker, ml_dtypes, ...), a fifth of
    a small ``aaedetect score``; reading a graph needs only the generated protobuf module. It is
    loaded from onnx's own file under its own name, so a later ``import onnx`` in this process
    (an export) finds and shares it. Where that file is not found, onnx is imported as usual.
    """
    import importlib.util
    import sys

    name = "onnx.onnx_ml_pb2"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("onnx")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = next((os.path.join(d, "onnx_ml_pb2.py") for d in locations
                 if os.path.isfile(os.path.join(d, "onnx_ml_pb2.py"))), None)
    if path is None:
        import onnx

        return onnx.onnx_ml_pb2
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _all_tensors(graph):
    """Every tensor in a graph: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def open_session(model: bytes | str, device: str = "auto", *, threads: int | None = None):
    """(session, provider used) for ``device`` in auto|cpu|cuda; logs the choice and the reason."""
    if device not in DEVICES:
        raise OptionError(f"device {device!r}: must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}")
    if device == "cpu":
        session = make_session(model, [CPU], threads=threads)
        logger.info("scoring with onnxruntime on CPU (--device cpu)")
        return session, CPU
    reason = cuda_unavailable_reason()
    if reason is None:
        session = make_session(model, [CUDA, CPU], threads=threads)
        if session.get_providers()[0] == CUDA:
            logger.info("scoring with onnxruntime on CUDA (an NVIDIA GPU was found)")
            return session, CUDA
        reason = "the CUDA provider failed to start (CUDA or cuDNN libraries missing?)"
    if device == "cuda":
        raise OptionError(f"--device cuda: {reason}")
    logger.info("scoring with onnxruntime on CPU: %s", reason)
    return make_session(model, [CPU], threads=threads), CPU


#: The most rows cuDNN's batch normalization takes in one call (onnxruntime's CUDA provider runs
#: BatchNormalization nodes through it). Graphs written since the norm is folded away have none.
CUDNN_BATCH_NORM_ROWS = 65_535


def batch_rows_for(provider: str, requested: int | None, op_types: frozenset[str], where: str) -> int:
    """Rows per onnxruntime call: ``requested`` or the provider's default, but on CUDA at most
    :data:`CUDNN_BATCH_NORM_ROWS` for a graph with a BatchNormalization node (written before
    aaedetect folded it away), with a warning that says how to lift the cap."""
    rows = int(requested or DEFAULT_BATCH_ROWS[provider])
    if provider == CUDA and "BatchNormalization" in op_types and rows > CUDNN_BATCH_NORM_ROWS:
        logger.warning("%s: written by an older aaedetect, its graph takes at most %s rows per call "
                       "on CUDA (cuDNN's batch norm); scoring %s at a time ('aaedetect export -m "
                       "MODEL_DIR' writes a graph without that limit)", where,
                       f"{CUDNN_BATCH_NORM_ROWS:,}", f"{CUDNN_BATCH_NORM_ROWS:,}")
        return CUDNN_BATCH_NORM_ROWS
    return rows


def run_session(session, numeric: np.ndarray | None, categorical: np.ndarray | None,
                *, batch_rows: int = DEFAULT_BATCH_ROWS[CPU]) -> dict[str, np.ndarray]:
    """Run the scoring graph over all rows in batches; outputs are written in place into one
    preallocated array each (no per-batch allocation, no concatenation)."""
    inputs = {i.name: i for i in session.get_inputs()}
    arrays = {}
    if INPUT_NUMERIC in inputs:
        arrays[INPUT_NUMERIC] = np.ascontiguousarray(numeric, dtype=np.float64)
    if INPUT_CATEGORICAL in inputs:
        arrays[INPUT_CATEGORICAL] = np.ascontiguousarray(categorical, dtype=np.int64)
    n = len(next(iter(arrays.values())))
    widths = {o.name: o.shape[1] for o in session.get_outputs() if len(o.shape) == 2}
    results = {o.name: np.empty((n, widths[o.name]) if o.name in widths else (n,), dtype=np.float32)
               for o in session.get_outputs()}
    if n == 0:
        return results
    binding = session.io_binding()
    for start in range(0, n, batch_rows):
        stop = min(n, start + batch_rows)
        for name, array in arrays.items():
            binding.bind_cpu_input(name, array[start:stop])
        for name, out in results.items():
            part = out[start:stop]
            binding.bind_output(name, "cpu", 0, np.float32, list(part.shape), part.ctypes.data)
        session.run_with_iobinding(binding)
    return results


class OnnxScorer(FrameScorer):
    """Score tables with a model directory's ``model.onnx`` on onnxruntime (no torch).

    Parameters
    ----------
    model_dir : path of a model directory written by ``aaedetect fit``.
    device : ``"auto"`` (CUDA when a working NVIDIA GPU is found, else CPU), ``"cpu"`` or ``"cuda"``.
    batch_rows : rows per onnxruntime call (default: 1,024 on CPU, 16,384 on CUDA).
    threads : onnxruntime intra-op threads (default: onnxruntime's choice, all cores).
    """

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", *,
                 batch_rows: int | None = None, threads: int | None = None):
        self.model_dir = ModelDir(model_dir, keep=(ONNX_FILE,))  # checked once, read once
        manifest = self.model_dir.manifest
        if ONNX_FILE not in manifest["files"]:
            raise ModelFormatError(f"{self.model_dir.path}: has no {ONNX_FILE}; write one with "
                                   f"'aaedetect export -m {self.model_dir.path}'")
        try:
            self.preprocessor = TabularPreprocessor.from_dict(manifest["preprocessing"])
            self.threshold = float(manifest["threshold"])
            self.calibration = Calibration.from_dict(manifest["calibration"])
            self.calibration.check_columns(len(self.preprocessor.columns))
            self.fitted_fpr = float(manifest["options"]["fpr"])
            if not 0.0 < self.fitted_fpr < 1.0:
                raise ValueError(f"options fpr {self.fitted_fpr!r} is not in (0, 1)")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{self.model_dir.path / 'manifest.json'}: malformed manifest "
                                   f"({type(exc).__name__}: {exc})") from None
        data = self.model_dir.read(ONNX_FILE)
        where = str(self.model_dir.path / ONNX_FILE)
        op_types = verify_graph(data, where)
        try:
            self.session, self.provider = open_session(data, device, threads=threads)
        except OptionError:
            raise
        except Exception as exc:  # onnxruntime's Fail/InvalidGraph/...: a graph it cannot run
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFormatError(f"{where}: onnxruntime cannot load it ({first})") from None
        self.batch_rows = batch_rows_for(self.provider, batch_rows, op_types, where)
        expected = [n for n, cols in ((INPUT_NUMERIC, self.preprocessor.numeric),
                                      (INPUT_CATEGORICAL, self.preprocessor.categorical)) if cols]
        if [i.name for i in self.session.get_inputs()] != expected:
            raise ModelFormatError(f"{self.model_dir.path / ONNX_FILE}: its inputs do not match the "
                                   f"manifest's columns")

    def run_arrays(self, numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
        return run_session(self.session, numeric, categorical, batch_rows=self.batch_rows)

    def check_explain(self, explain: int) -> None:
        super().check_explain(explain)
        if explain and "neighbor_errors" not in {o.name for o in self.session.get_outputs()}:
            raise OptionError(f"{self.model_dir.path / ONNX_FILE} was written before explanations; "
                              f"write it again with 'aaedetect export -m {self.model_dir.path}'")

    def score_table(self, df: "pd.DataFrame", *, source: str = "data", explain: int = 0) -> "pd.DataFrame":
        """``df`` with ``anomaly_score, recon_score, latent_score, neighbor_score, is_anomaly``
        appended (see :data:`aaedetect.scoring.SCORE_COLUMNS`); ``explain=K`` adds
        ``top_columns`` and ``top_shares`` (see :meth:`FrameScorer.score_frame`)."""
        return self.score_frame(df, source=source, first_line=None, explain=explain)
