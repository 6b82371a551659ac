"""The networks: feature encoding, Encoder, Decoder, Discriminator, and the scoring graph that
chains them with the neighbour search and the calibration.

Shapes: B rows, C model columns (numeric then categorical), D encoded features, L latent size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import INF_AS, LATENT_SIGNALS, NetConfig
from .neighbors import Neighbors, hidden64
from .preprocess import TabularPreprocessor
from .priors import Prior
from .scoring import Calibration

LOGVAR_RANGE = (-10.0, 4.0)


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
            parts.append(z.float().clamp(-INF_AS, INF_AS))
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
    - neighbour part (when the graph has ``neighbors``, see :mod:`aaedetect.neighbors`): the mean
      distance to the nearest training rows, in the encoded input and in the encoder's last
      hidden layer. The autoencoder models the shape of normal data; distance to the nearest
      normal rows sees what it smooths over: rows on that shape but where normal rows are sparse.
    - calibration (:class:`aaedetect.scoring.Calibration`): each part becomes a robust z-score
      fitted on held-out normal rows; ``neighbor_score`` is the mean of its two spaces' z-scores;
      ``Calibration.combine`` makes ``anomaly_score`` of the parts.
    """

    def __init__(self, features: FeatureEncoder, aae: AAE, latent_signal: str = "density",
                 calibration: Calibration | None = None, neighbors: Neighbors | None = None):
        super().__init__()
        if latent_signal not in LATENT_SIGNALS:
            raise ValueError(f"latent_signal must be one of {LATENT_SIGNALS}")
        self.features = features
        self.aae = aae
        self.latent_signal = latent_signal
        self.neighbors = neighbors
        self.calibration = calibration or Calibration.identity(latent_signal)

    @property
    def latent_log(self) -> bool:
        """Whether the latent part is calibrated in log space (-log D is positive and skewed)."""
        return self.latent_signal == "discriminator"

    def raw_parts(self, num: torch.Tensor, cat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(recon_raw, latent_raw, neighbor_x_raw, neighbor_h_raw (B,) each, then per column (B, C):
        the reconstruction errors and the squared differences to the nearest reference rows) before
        calibration; the neighbour outputs are zeros when the graph has no neighbours."""
        x = self.features(num, cat)  # (B, D)
        mu = self.aae.encoder.mu(self.aae.encoder.body(x))  # (B, L)
        errors = self.features.column_errors(x, self.aae.decoder(mu))  # (B, C)
        logit = self.aae.discriminator(mu)  # (B,)
        if self.latent_signal == "density":
            latent_raw = logit - self.aae.prior.log_prob(mu)
        else:
            latent_raw = F.softplus(-logit)  # -log sigmoid(logit) = -log D(mu)
        if self.neighbors is not None:
            near_x, near_h, near_columns = self.neighbors(x, hidden64(self.aae.encoder.body, x))
        else:
            near_x = near_h = torch.zeros_like(latent_raw)
            near_columns = torch.zeros_like(errors)
        return errors.sum(1), latent_raw, near_x, near_h, errors, near_columns

    def forward(self, num: torch.Tensor, cat: torch.Tensor):
        """The graph's outputs, in the order of ``aaedetect.runtime.OUTPUTS``."""
        recon_raw, latent_raw, near_x, near_h, errors, near_columns = self.raw_parts(num, cat)
        return (*self.calibrated(recon_raw, latent_raw, near_x, near_h), errors, near_columns)

    def calibrated(self, recon_raw: torch.Tensor, latent_raw: torch.Tensor, near_x: torch.Tensor,
                   near_h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(anomaly, recon, latent, neighbor) scores (B,) from ``raw_parts``' first four outputs."""
        cal = self.calibration
        recon = cal.recon.z(recon_raw, torch.log)
        latent = cal.latent.z(latent_raw, torch.log)
        if self.neighbors is not None:
            neighbor = 0.5 * (cal.neighbor_x.z(near_x, torch.log) + cal.neighbor_h.z(near_h, torch.log))
        else:
            neighbor = torch.zeros_like(recon)
        return cal.combine(recon, latent, neighbor), recon, latent, neighbor
