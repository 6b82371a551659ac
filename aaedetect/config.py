"""Options for the detector: one frozen dataclass, validated once, saved as JSON in the manifest.

The defaults here are the single source of truth: ``AAEDetector``'s signature and the CLI's help
both read them from :class:`Options`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import OptionError

PRIOR_PATTERN = re.compile(r"^(gaussian|uniform|mixture:(\d+))$")
DEVICES = ("auto", "cpu", "cuda")
LATENT_SIGNALS = ("density", "discriminator")
REGULARIZERS = ("adversarial", "mmd")
SCALINGS = ("standard", "robust")


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
    # scoring
    latent_signal: str = "density"
    latent_weight: float = 0.25
    neighbor_weight: float = 2.0
    neighbor_rows: int = 4096  # most training rows kept for the neighbour part
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
