"""The networks: feature encoding, Encoder, Decoder, Discriminator, and the whole scoring graph.

Shapes: B rows, C model columns (numeric then categorical), D encoded features, L latent size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import LATENT_SIGNALS
from .preprocess import TabularPreprocessor
from .priors import Prior

LOGVAR_RANGE = (-10.0, 4.0)
#: The widest layer (or input) a saved model may declare.
MAX_WIDTH = 1 << 20
#: What +-inf inputs become after soft clipping (any finite double maps below ~715), so that
#: infinite inputs still give finite scores. Clamped in float32: a float64 constant of 1e300 would
#: not survive the ONNX export (it is stored as float32, i.e. as inf).
_INF_AS = 1000.0


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


class FeatureEncoder(nn.Module):
    """Raw columns -> network input, identically in training, torch scoring and the ONNX graph.

    Numeric: ``(x - center) / scale`` in float64, missing -> 0 (the center: mean or median), then
    soft clipping: beyond +-clip a value grows like ``clip + log1p(|z| - clip)``, so extreme values
    stay extreme but finite and cannot swamp training. Columns that had missing values in training get a 0/1
    indicator. Categorical codes become one-hot groups.
    """

    def __init__(self, pre: TabularPreprocessor):
        super().__init__()
        self.clip = float(pre.clip)
        self.n_num = len(pre.numeric)
        self.register_buffer("center", torch.tensor([c.center for c in pre.numeric], dtype=torch.float64))
        self.register_buffer("scale", torch.tensor([c.scale for c in pre.numeric], dtype=torch.float64))
        ind = [j for j, c in enumerate(pre.numeric) if c.indicator]
        self.register_buffer("ind_cols", torch.tensor(ind, dtype=torch.long))
        # (n_ind, n_num) 0/1: which numeric column each indicator belongs to (a matmul exports cleanly).
        owner = torch.zeros(len(ind), self.n_num)
        owner[torch.arange(len(ind)), torch.tensor(ind, dtype=torch.long)] = 1.0
        self.register_buffer("ind_owner", owner)
        self.widths = [c.width for c in pre.categorical]
        self.n_cat = len(self.widths)
        self.n_ind = len(ind)
        self.n_features = self.n_num + self.n_ind + sum(self.widths)
        self.n_columns = self.n_num + self.n_cat

    def forward(self, num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.n_num:
            missing = torch.isnan(num)  # (B, n_num)
            z = (num - self.center) / self.scale
            z = torch.where(missing, torch.zeros_like(z), z)
            over = (z.abs() - self.clip).clamp(min=0.0)
            z = torch.where(over > 0, torch.sign(z) * (self.clip + torch.log1p(over)), z)
            # Only +-inf inputs are still infinite here (log1p of the largest double is ~710).
            parts.append(z.float().clamp(-_INF_AS, _INF_AS))
            if self.n_ind:
                parts.append(missing[:, self.ind_cols].float())
        for j, width in enumerate(self.widths):
            slots = torch.arange(width, device=cat.device)
            parts.append((cat[:, j:j + 1] == slots).float())  # (B, width) one-hot
        return torch.cat(parts, dim=1)  # (B, D)

    def column_errors(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Per-column reconstruction error (B, C) of decoder output ``out`` for encoded ``x``.

        Numeric: squared error (not counted where the value is missing) plus the indicator's
        binary cross-entropy. Categorical: cross-entropy of the group's softmax.
        """
        parts = []
        if self.n_num:
            err = (x[:, :self.n_num] - out[:, :self.n_num]).pow(2)
            if self.n_ind:
                a, b = self.n_num, self.n_num + self.n_ind
                ind, logit = x[:, a:b], out[:, a:b]
                err = err * (1.0 - ind @ self.ind_owner)
                err = err + (F.softplus(logit) - logit * ind) @ self.ind_owner
            parts.append(err)
        offset = self.n_num + self.n_ind
        for width in self.widths:
            logits, target = out[:, offset:offset + width], x[:, offset:offset + width]
            ce = torch.logsumexp(logits, dim=1) - (logits * target).sum(1)  # (B,)
            parts.append(ce.unsqueeze(1))
            offset += width
        return torch.cat(parts, dim=1)


class Encoder(nn.Module):
    """x -> (mu, logvar); ``reparameterize`` draws z = mu + eps * sigma."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        h1, h2 = cfg.hidden
        self.body = nn.Sequential(
            nn.Linear(cfg.n_inputs, h1), nn.Dropout(cfg.dropout), nn.ReLU(),
            nn.Linear(h1, h2), nn.Dropout(cfg.dropout), nn.ReLU(),
        )
        self.mu = nn.Linear(h2, cfg.latent_dim)
        self.logvar = nn.Linear(h2, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)  # (B, h2)
        return self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE)  # (B, L) each

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


class Decoder(nn.Module):
    """z -> decoder output (B, D): values for numeric features, logits for indicators and one-hot groups."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        h1, h2 = cfg.hidden
        self.body = nn.Sequential(
            nn.Linear(cfg.latent_dim, h2), nn.Dropout(cfg.dropout), nn.ReLU(),
            nn.Linear(h2, h1), nn.BatchNorm1d(h1), nn.Dropout(cfg.dropout), nn.ReLU(),
            nn.Linear(h1, cfg.n_inputs),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class Discriminator(nn.Module):
    """z -> one logit: high when z looks drawn from the prior.

    LeakyReLU rather than the seed's ReLU: the usual choice for GAN discriminators, it keeps
    gradients flowing to the encoder for codes where a ReLU unit would be dead. The seed's dropout
    (0.2) stays here whatever the autoencoder's: it keeps the discriminator from overfitting the
    codes of the training rows, which would make its density ratio noisy.
    """

    dropout = 0.2

    def __init__(self, cfg: NetConfig):
        super().__init__()
        h = cfg.disc_hidden
        self.body = nn.Sequential(
            nn.Linear(cfg.latent_dim, h), nn.Dropout(self.dropout), nn.LeakyReLU(0.2),
            nn.Linear(h, h), nn.Dropout(self.dropout), nn.LeakyReLU(0.2),
            nn.Linear(h, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).squeeze(1)  # (B,)


class AAE(nn.Module):
    """The three networks of the adversarial autoencoder, and the prior they match."""

    def __init__(self, cfg: NetConfig, prior: Prior):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.discriminator = Discriminator(cfg)
        self.prior = prior


#: Most robust units the latent part adds (times ``latent_weight``) to the anomaly score. On the
#: benchmark, 20 keeps thyroid's large latent evidence (F1 0.80 -> 0.78, 0.48 from reconstruction
#: alone) while KDDCUP's tail of ordinary rows with z of 50+ no longer swamps it (F1 0.95 -> 0.98).
LATENT_CAP = 20.0


#: Neighbours whose distances are averaged (PyOD's and scikit-learn's default for kNN detectors).
NEIGHBORS = 5
#: Squared distances below this are rounding (a distance of 1e-5 standardized units): 0.
SAME_ROW_D2 = 1e-10
#: Candidates per neighbour taken from the fast float32 step to the exact float64 one.
NEIGHBOR_CANDIDATES = 2


def mean_neighbor_distance(query: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Mean Euclidean distance (B,) from each query row (B, F) to its ``k`` nearest bank rows (M, F).

    Two steps: candidates by |q - b|^2 = |q|^2 - 2 q.b + |b|^2 in float32 (one matrix product, the
    bulk of the work), then the exact distance to the ``NEIGHBOR_CANDIDATES * k`` best candidates
    in float64. The expansion alone leaves rounding noise of ~1e-3 in the distance of a row to
    itself, enough for torch and onnxruntime to disagree; the exact step removes it. Squared
    distances under ``SAME_ROW_D2`` count as 0: the same row, whose float32 encoding can differ
    between engines in the last bit. The result is float32 like the other parts.
    """
    query, bank = query.float(), bank.float()
    d2 = (query * query).sum(1, keepdim=True) - 2.0 * query @ bank.T + (bank * bank).sum(1)  # (B, M)
    n_candidates = min(NEIGHBOR_CANDIDATES * k, bank.shape[0])
    candidates = torch.topk(d2, n_candidates, dim=1, largest=False).indices  # (B, c)
    diff = bank[candidates].double() - query.double().unsqueeze(1)  # (B, c, F)
    exact = torch.topk((diff * diff).sum(2), k, dim=1, largest=False).values  # (B, k)
    exact = torch.where(exact < SAME_ROW_D2, torch.zeros_like(exact), exact)
    return exact.sqrt().mean(1).float()


class Neighbors(nn.Module):
    """Reference rows for the neighbour part, in two spaces: the encoded input the autoencoder
    reads, and the encoder's last hidden layer (the representation it learnt). Plain float arrays,
    saved in ``weights.npz`` beside the networks."""

    def __init__(self, x_bank: torch.Tensor, h_bank: torch.Tensor):
        super().__init__()
        if x_bank.ndim != 2 or h_bank.ndim != 2 or len(x_bank) != len(h_bank) or len(x_bank) < 1:
            raise ValueError("neighbour banks must be two non-empty tables with as many rows")
        self.register_buffer("x_bank", x_bank.float())
        self.register_buffer("h_bank", h_bank.float())
        self.k = min(NEIGHBORS, len(x_bank))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (mean_neighbor_distance(x, self.x_bank, self.k),
                mean_neighbor_distance(h, self.h_bank, self.k))


class ScoringGraph(nn.Module):
    """Raw arrays -> calibrated scores: the one scoring path, for torch and for the ONNX export.

    Deterministic: call in eval mode; the code is z = mu, never sampled.

    - recon part: the sum of the per-column reconstruction errors.
    - latent part (``latent_signal``):
      ``density``: -log q(mu), the negative log-density of the code under the aggregated posterior
      q, estimated from the prior and the discriminator: a discriminator trained to tell prior
      samples from codes has logit(mu) = log p(mu) - log q(mu) at its optimum, so
      -log q(mu) = -log p(mu) + logit(mu).
      ``discriminator``: -log D(mu), the discriminator's verdict alone.
    - neighbour part (when the graph has ``neighbors``): the mean distance to the ``NEIGHBORS``
      nearest training rows, in the encoded input and in the encoder's last hidden layer. The
      autoencoder models the shape of normal data; distance to the nearest normal rows sees what
      it smooths over: rows on that shape but where normal rows are sparse.
    - calibration (``aaedetect.scoring.fit_calibration``): each part becomes a robust z-score
      fitted on held-out normal rows, of ``log(raw + offset)`` for parts that are positive and
      skewed (recon, -log D, distances), of ``raw`` for a log-density;
      ``neighbor_score`` is the mean of its two spaces' z-scores, and
      ``anomaly_score = recon_score + w_l * clip(latent_score, 0, LATENT_CAP) + w_n * neighbor_score``.
    """

    def __init__(self, features: FeatureEncoder, aae: AAE, latent_signal: str = "density",
                 calibration: dict[str, Any] | None = None, neighbors: Neighbors | None = None):
        super().__init__()
        if latent_signal not in LATENT_SIGNALS:
            raise ValueError(f"latent_signal must be one of {LATENT_SIGNALS}")
        self.features = features
        self.aae = aae
        self.latent_signal = latent_signal
        self.neighbors = neighbors
        cal = calibration or identity_calibration(latent_signal)
        self.logged = {part: bool(cal[part]["log"]) for part in CALIBRATED_PARTS}
        for part in CALIBRATED_PARTS:
            for key in ("center", "scale", "offset"):
                self.register_buffer(f"{part}_{key}", torch.tensor(float(cal[part][key])))
        self.register_buffer("latent_weight", torch.tensor(float(cal["latent_weight"])))
        self.register_buffer("neighbor_weight", torch.tensor(float(cal["neighbor_weight"])))

    @property
    def latent_log(self) -> bool:
        return self.logged["latent"]

    def raw_parts(self, num: torch.Tensor, cat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(recon_raw, latent_raw, neighbor_x_raw, neighbor_h_raw (B,) each, column errors (B, C))
        before calibration; the neighbour distances are zeros when the graph has no neighbours."""
        x = self.features(num, cat)  # (B, D)
        h = self.aae.encoder.body(x)  # (B, H)
        mu = self.aae.encoder.mu(h)  # (B, L)
        errors = self.features.column_errors(x, self.aae.decoder(mu))  # (B, C)
        logit = self.aae.discriminator(mu)  # (B,)
        if self.latent_signal == "density":
            latent_raw = logit - self.aae.prior.log_prob(mu)
        else:
            latent_raw = F.softplus(-logit)  # -log sigmoid(logit) = -log D(mu)
        if self.neighbors is not None:
            near_x, near_h = self.neighbors(x, h)
        else:
            near_x = near_h = torch.zeros_like(latent_raw)
        return errors.sum(1), latent_raw, near_x, near_h, errors

    def _z(self, part: str, raw: torch.Tensor) -> torch.Tensor:
        if self.logged[part]:
            raw = torch.log(raw + getattr(self, f"{part}_offset"))
        return (raw - getattr(self, f"{part}_center")) / getattr(self, f"{part}_scale")

    def forward(self, num: torch.Tensor, cat: torch.Tensor):
        recon_raw, latent_raw, near_x, near_h, errors = self.raw_parts(num, cat)
        return (*self.calibrated(recon_raw, latent_raw, near_x, near_h), errors)

    def calibrated(self, recon_raw: torch.Tensor, latent_raw: torch.Tensor, near_x: torch.Tensor,
                   near_h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(anomaly, recon, latent, neighbor) scores (B,) from ``raw_parts``' first four outputs."""
        recon = self._z("recon", recon_raw)
        latent = self._z("latent", latent_raw)
        if self.neighbors is not None:
            neighbor = 0.5 * (self._z("neighbor_x", near_x) + self._z("neighbor_h", near_h))
        else:
            neighbor = torch.zeros_like(recon)
        # The latent part only adds evidence: a code more typical than usual (z < 0) does not make
        # a row look more normal, as anomalies the encoder maps near the prior's centre would.
        # And its evidence saturates: a log-density z-score is unbounded, and where normal codes
        # are packed tightly (KDDCUP) ordinary rows reach z of 50 and would drown the
        # reconstruction; capped, the latent part can tip a row over but never outvote it.
        anomaly = (recon + self.latent_weight * torch.clamp(latent, 0.0, LATENT_CAP)
                   + self.neighbor_weight * neighbor)
        return anomaly, recon, latent, neighbor


#: The score parts that calibration turns into robust z-scores.
CALIBRATED_PARTS = ("recon", "latent", "neighbor_x", "neighbor_h")


def identity_calibration(latent_signal: str) -> dict[str, Any]:
    """Calibration that leaves the (possibly logged) raw parts as they are."""
    logged = {"recon": True, "latent": latent_signal == "discriminator", "neighbor_x": True,
              "neighbor_h": True}
    return {**{part: {"center": 0.0, "scale": 1.0, "log": log, "offset": 1e-6}
               for part, log in logged.items()},
            "latent_weight": 0.5, "neighbor_weight": 1.0}
