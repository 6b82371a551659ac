"""Options for the detector: one frozen dataclass, validated once, saved as JSON in the manifest;
and the network sizes derived from them (:class:`NetConfig`).

The defaults here are the single source of truth: ``AAEDetector``'s signature and the CLI's help
both read them from :class:`Options`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import OptionError

PRIOR_PATTERN = re.compile(r"^(gaussian|uniform|mixture:(\d+))$")
DEVICES = ("auto", "cpu", "cuda")
LATENT_SIGNALS = ("density", "discriminator")
REGULARIZERS = ("adversarial", "mmd")
SCALINGS = ("standard", "robust")
#: Scoring engines: onnxruntime on model.onnx (no torch), or the PyTorch model.
ENGINES = ("onnx", "torch")

# Defaults of scoring that are not model options (the CLI's help reads them from here).
#: Rows read and scored at a time from a file: bounds memory for files of any size.
DEFAULT_CHUNK_ROWS = 100_000
#: Rows per forward pass, by device. The neighbour part compares each row with up to 4,096
#: reference rows, so a batch holds (rows x 4,096) distance tables: 16 MB each at 1,024 rows.
#: onnxruntime's arena keeps the largest batch's working set, so on CPU the batch sets the peak
#: memory of `aaedetect score` (benchmarks/memory.py, 32 columns: 1.28 GiB at 4,096 rows, 0.66 GiB
#: at 1,024, no slower); a GPU wants larger batches.
SCORE_BATCH_ROWS = {"cpu": 1_024, "cuda": 16_384}

# The neighbour part (aaedetect.neighbors; the ONNX graph mirrors it in aaedetect.onnx_graph).
#: Neighbours whose distances are averaged (PyOD's and scikit-learn's default for kNN detectors).
NEIGHBORS = 5
#: Candidates per neighbour taken from the fast float32 step to the exact float64 one.
NEIGHBOR_CANDIDATES = 2
#: The hidden layer's neighbour space when the layer is wider: its top principal axes over the
#: reference rows, plus the length of what they leave out (aaedetect.neighbors.hidden_axes).
NEIGHBOR_HIDDEN_AXES = 32
#: Two vectors are the same row when their distance is below this share of their length
#: (``|q - b|^2 <= SAME_ROW_RELATIVE^2 * (|q|^2 + |b|^2)``). The encoded input is float32, and
#: two engines may round a value to neighbouring float32 numbers (one step is 2^-23 of it); 2^-16
#: leaves room for 128 such steps, while two rows that differ anywhere by a meaningful amount
#: (1e-4 of a standard deviation in one column of a 100-column table) stay apart.
SAME_ROW_RELATIVE = 2.0 ** -16
#: Infinite inputs become +-this after soft clipping (any finite double maps below ~715), so that
#: they still give finite scores. Clamped in float32.
INF_AS = 1000.0
#: The ONNX opset the graph is exported with unless ``aaedetect export --opset`` says otherwise.
DEFAULT_OPSET = 18
#: Most robust units the latent and the neighbour part each add (times their weights) to the
#: anomaly score. A z-score is unbounded: where normal codes are packed tightly (KDDCUP) ordinary
#: rows reach latent z of 50 and more, and where nearly every normal row is an exact copy of a
#: training row, any other row is far from all of them in neighbour units; capped, such a part
#: can tip a row over but never outvote the reconstruction. Chosen on the benchmark for the
#: latent part before the neighbour part existed (KDDCUP F1 0.95 -> 0.98, thyroid's large latent
#: evidence kept); no normal row of the benchmark tables reaches it in the neighbour part.
PART_CAP = 20.0
#: ``recon_trim`` and ``reference_trim`` leave out less than this share of the rows: the rows
#: kept are always the majority.
MAX_TRIM = 0.5
#: Epochs trained on the whole reconstruction loss before ``recon_trim`` applies: the network
#: first needs to reconstruct normal rows better than anomalies for the worst rows to be anomalies.
TRIM_WARMUP_EPOCHS = 5
#: ``reference_cluster``: a suspect (one of the rows the networks score highest) is left out of the
#: reference rows when at least this many of its ``NEIGHBORS`` nearest reference rows are suspects
#: too, ...
CLUSTER_MIN_SUSPECTS = 4
#: ... and its nearest reference row that is not a suspect is more than this many times farther
#: than those neighbours are on average: a cluster of suspects apart from the ordinary rows (a
#: cluster of anomalies), not a sparse edge of them. Rare normal rows among ordinary ones stay,
#: so that in clean training data (nearly) nothing is left out (benchmarks/results/contamination-auto.md).
CLUSTER_GAP = 2.0


@dataclass(frozen=True)
class Options:
    """Everything that decides how a model is built, trained and calibrated."""

    # input
    scaling: str = "standard"
    noise: float = 0.1
    # network
    hidden_dims: tuple[int, ...] | str = "auto"
    latent_dim: int | str = "auto"
    dropout: float = 0.0
    # regularisation of the latent code
    prior: str = "gaussian"
    regularizer: str = "adversarial"
    adv_weight: float = 0.01
    # training
    max_epochs: int | str = "auto"  # see epochs_for
    batch_size: int = 256
    lr: float = 1e-3
    disc_lr: float = 2e-4
    patience: int = 10
    validation_fraction: float = 0.1
    # contamination: share of each batch's worst-reconstructed rows left out of the loss after
    # TRIM_WARMUP_EPOCHS epochs (and of the held-out rows' validation loss)
    recon_trim: float = 0.0
    # scoring
    latent_signal: str = "density"
    latent_weight: float = 0.25
    neighbor_weight: float = 2.0
    neighbor_rows: int = 4096  # most training rows kept for the neighbour part
    # contamination: share of the highest-scoring training rows (reconstruction and latent parts)
    # left out of the neighbour part's reference rows, and of held-out rows out of calibration
    reference_trim: float = 0.0
    # contamination, adaptive (when reference_trim is 0): of this share of the reference rows that
    # the networks score highest (the suspects), leave out those that sit in a cluster of suspects
    # apart from the other rows (CLUSTER_MIN_SUSPECTS, CLUSTER_GAP); 0 = off. 0.2 measured in
    # benchmarks/results/contamination-auto.md
    reference_cluster: float = 0.0
    fpr: float = 0.01
    # columns
    categorical: tuple[str, ...] = field(default_factory=tuple)
    exclude: tuple[str, ...] = field(default_factory=tuple)
    max_categories: int = 100
    # runtime
    device: str = "auto"
    random_state: int | None = None

    def __post_init__(self) -> None:
        # Normalise list-like inputs so that options compare and serialise the same way.
        for name in ("categorical", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(str(v) for v in (value or ())))
        if isinstance(self.hidden_dims, list):
            object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        self._validate()

    def _validate(self) -> None:
        def fail(name: str, why: str) -> None:
            raise OptionError(f"option {name}={getattr(self, name)!r}: {why}")

        if self.scaling not in SCALINGS:
            fail("scaling", f"must be one of {', '.join(SCALINGS)}")
        if not 0.0 <= _num(self.noise) <= 10.0:
            fail("noise", "must be in [0, 10]")
        if self.hidden_dims != "auto":
            dims = self.hidden_dims
            if not (isinstance(dims, tuple) and len(dims) == 2 and all(_is_int(d) and d > 0 for d in dims)):
                fail("hidden_dims", "must be 'auto' or two positive integers")
        if self.latent_dim != "auto" and not (_is_int(self.latent_dim) and 1 <= self.latent_dim <= 1024):
            fail("latent_dim", "must be 'auto' or an integer from 1 to 1024")
        if not 0.0 <= _num(self.dropout) < 1.0:
            fail("dropout", "must be in [0, 1)")
        match = PRIOR_PATTERN.match(str(self.prior))
        if not match:
            fail("prior", "must be 'gaussian', 'uniform' or 'mixture:K' with K >= 2")
        if match.group(2) is not None and not 2 <= int(match.group(2)) <= 64:
            fail("prior", "mixture:K needs K from 2 to 64")
        if self.regularizer not in REGULARIZERS:
            fail("regularizer", f"must be one of {', '.join(REGULARIZERS)}")
        if not 0.0 <= _num(self.adv_weight) < 1.0:
            fail("adv_weight", "must be in [0, 1)")
        if self.max_epochs != "auto" and not (_is_int(self.max_epochs) and self.max_epochs >= 1):
            fail("max_epochs", "must be 'auto' or a positive integer")
        for name in ("batch_size", "patience", "max_categories", "neighbor_rows"):
            if not (_is_int(getattr(self, name)) and getattr(self, name) >= 1):
                fail(name, "must be a positive integer")
        for name in ("lr", "disc_lr"):
            if not 0.0 < _num(getattr(self, name)) <= 1.0:
                fail(name, "must be in (0, 1]")
        if not 0.01 <= _num(self.validation_fraction) <= 0.5:
            fail("validation_fraction", "must be in [0.01, 0.5]")
        for name in ("recon_trim", "reference_trim", "reference_cluster"):
            if not 0.0 <= _num(getattr(self, name)) < MAX_TRIM:
                fail(name, f"must be in [0, {MAX_TRIM:g}) (a share of the rows)")
        if self.latent_signal not in LATENT_SIGNALS:
            fail("latent_signal", f"must be one of {', '.join(LATENT_SIGNALS)}")
        if not 0.0 <= _num(self.latent_weight) <= 10.0:
            fail("latent_weight", "must be in [0, 10]")
        if not 0.0 <= _num(self.neighbor_weight) <= 10.0:
            fail("neighbor_weight", "must be in [0, 10]")
        if not 0.0 < _num(self.fpr) < 1.0:
            fail("fpr", "must be in (0, 1)")
        if self.device not in DEVICES:
            fail("device", f"must be one of {', '.join(DEVICES)}")
        if self.random_state is not None and not (_is_int(self.random_state) and 0 <= self.random_state < 2**32):
            fail("random_state", "must be None or an integer in [0, 2**32)")
        overlap = set(self.categorical) & set(self.exclude)
        if overlap:
            raise OptionError(f"column {sorted(overlap)[0]!r} is both --categorical and --exclude")

    @property
    def mixture_components(self) -> int:
        match = PRIOR_PATTERN.match(self.prior)
        return int(match.group(2)) if match and match.group(2) else 0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Options":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OptionError(f"unknown option {unknown[0]!r}")
        return cls(**data)


def defaults() -> dict[str, Any]:
    """The default value of every option, by name."""
    return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for f in dataclasses.fields(Options)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value: Any) -> float:
    """A finite float, or NaN so that every range check fails for non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


#: "auto" epochs: at most this many, and no more than it takes to pass this many rows through
#: the network (large tables learn in fewer epochs: each epoch already holds many steps).
AUTO_MAX_EPOCHS = 100
AUTO_MIN_EPOCHS = 10
AUTO_ROW_BUDGET = 2_500_000


def epochs_for(max_epochs: int | str, n_rows: int) -> int:
    """The most epochs to train on ``n_rows`` training rows: ``max_epochs`` itself, or for "auto"
    100 up to 25,000 rows, then fewer (2.5 million row passes), never fewer than 10."""
    if max_epochs != "auto":
        return int(max_epochs)
    return max(AUTO_MIN_EPOCHS, min(AUTO_MAX_EPOCHS, -(-AUTO_ROW_BUDGET // max(n_rows, 1))))


#: The widest layer (or input) a saved model may declare.
MAX_WIDTH = 1 << 20


@dataclass(frozen=True)
class NetConfig:
    """Sizes of the three networks; saved in the manifest, the model is rebuilt from it."""

    n_inputs: int
    hidden: tuple[int, int]
    latent_dim: int
    disc_hidden: int
    dropout: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NetConfig":
        """Rebuild from ``to_dict``'s output; sizes are bounded so that a hostile manifest cannot
        make loading allocate without limit (ValueError otherwise)."""
        cfg = cls(**{**data, "hidden": tuple(data["hidden"])})
        sizes = (cfg.n_inputs, *cfg.hidden, cfg.latent_dim, cfg.disc_hidden)
        if len(cfg.hidden) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and
                                           1 <= v <= MAX_WIDTH for v in sizes):
            raise ValueError(f"network sizes {sizes} out of range (1..{MAX_WIDTH})")
        if not isinstance(cfg.dropout, (int, float)) or not 0 <= cfg.dropout < 1:
            raise ValueError("dropout out of range")
        return cfg


def size_network(n_inputs: int, hidden_dims: Any, latent_dim: Any, dropout: float) -> NetConfig:
    """Layer widths sized to the table unless given: wide enough for the encoded input, narrowing."""
    if hidden_dims == "auto":
        h1 = min(512, max(64, 2 ** math.ceil(math.log2(4 * n_inputs))))
        hidden = (h1, max(32, h1 // 2))
    else:
        hidden = tuple(int(h) for h in hidden_dims)
    if latent_dim == "auto":
        latent_dim = min(32, max(2, math.ceil(n_inputs / 4)))
    disc_hidden = min(256, max(32, 4 * latent_dim))
    return NetConfig(n_inputs, hidden, int(latent_dim), disc_hidden, float(dropout))
