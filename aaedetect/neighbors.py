"""The neighbour part: reference rows kept from training, and each row's mean distance to the
nearest of them, in the encoded input and in the encoder's last hidden layer.

Shapes: B query rows, M reference rows, F features of the space searched, H the hidden layer's
width, A its principal axes kept.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import (NEIGHBOR_CANDIDATES, NEIGHBOR_HIDDEN_AXES, NEIGHBORS, SAME_ROW_RELATIVE,
                     SCORE_BATCH_ROWS)


def hidden64(body: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The encoder's hidden layer (B, H) computed in float64 from float32 input and weights.

    float32 matrix kernels round differently from one library and CPU to the next (torch's MKL or
    oneDNN, onnxruntime's MLAS); in float64 those differences are ~1e-16 instead of ~1e-7, so the
    distances between nearly identical rows, which calibration magnifies, agree across engines.
    Dropout is the identity at scoring time; it has no weights to carry.
    """
    h = x.double()
    for layer in body:
        if isinstance(layer, nn.Linear):
            h = F.linear(h, layer.weight.double(), layer.bias.double())
        elif isinstance(layer, nn.ReLU):
            h = F.relu(h)
    return h


def hidden_axes(h: torch.Tensor, n_axes: int = NEIGHBOR_HIDDEN_AXES
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The mean (H,) and the top ``n_axes`` principal axes (H, A) of the reference rows' hidden
    layer ``h`` (M, H, float64), or None when the layer is no wider than that.

    The search over the reference rows costs in proportion to its space's width (the exact stage)
    and to the rows' count (the ranking); a hidden layer of 128 or 256 units is searched in 33
    coordinates instead (see :func:`project_hidden`): the 32 axes hold over 99% of the variance of
    the reference rows' hidden layers on the speed benchmark's table, and the shared datasets'
    detection quality did not move (benchmarks/results/neighbor-cost-study.md). Computed with
    numpy on the CPU whatever the device, so a fit on a GPU gets the axes a CPU fit would.
    """
    if n_axes >= h.shape[1]:
        return None
    rows = h.detach().cpu().double().numpy()
    mean = rows.mean(0)
    _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
    axes = np.ascontiguousarray(vt[:n_axes].T)
    return torch.from_numpy(mean).to(h.device), torch.from_numpy(axes).to(h.device)


def project_hidden(h: torch.Tensor, mean: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """Hidden layers ``h`` (B, H, float64) in the reference rows' principal axes, with the length
    of the rest as one more coordinate (B, A + 1).

    Distances there are never above the full ones (the rest's length differs by at most the
    distance between the rests), equal them for rows in the axes' span, and still grow with how
    far a row's hidden layer leaves that span: an unusual row does not vanish into the axes left
    out.
    """
    centred = h - mean
    along = centred @ axes
    rest = (centred * centred).sum(1, keepdim=True) - (along * along).sum(1, keepdim=True)
    return torch.cat([along, rest.clamp_min(0.0).sqrt()], 1)


def mean_neighbor_distance(query: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor,
                           k: int, fold: torch.Tensor | None = None):
    """Mean Euclidean distance (B,) from each query row (B, F) to its ``k`` nearest bank rows
    (M, F, float32; ``bank_sq`` (M,) their squared lengths in float64), leaving out one exact match.

    Two steps: candidates by |b|^2 - 2 q.b in float32 (|q - b|^2 without |q|^2, which is the same
    for every b of a row and so does not change its ranking: one matrix product with the lengths
    added, the bulk of the work), then the exact distance to the ``NEIGHBOR_CANDIDATES * (k + 1)``
    best candidates in float64. Distances under ``SAME_ROW_RELATIVE`` of the vectors' length are 0.

    Leaving out one exact match makes a row score the same whether or not it is itself among the
    reference rows (as PyOD's kNN does for its training scores): fit on a table and score that
    table, and its reference rows do not find themselves at distance 0. A second copy of a row
    still counts. Needs ``k < M``.

    With ``fold`` (F, C, float64: :meth:`TabularPreprocessor.feature_fold`), also returns the
    per-column differences (B, C, float32): each column's squared difference to those same ``k``
    rows, averaged over them (the row's squared distances are their sums over columns). They say
    which columns keep a row away from its nearest normal rows (``--explain``).
    """
    q32 = query.float()
    rank = torch.addmm((bank * bank).sum(1), q32, bank.T, alpha=-2.0)  # (B, M): |q-b|^2 - |q|^2
    n_candidates = min(NEIGHBOR_CANDIDATES * (k + 1), bank.shape[0])
    candidates = torch.topk(rank, n_candidates, dim=1, largest=False).indices  # (B, c)
    q64 = query.double()
    diff = bank[candidates].double() - q64.unsqueeze(1)  # (B, c, F)
    exact = (diff * diff).sum(2)  # (B, c)
    cutoff = SAME_ROW_RELATIVE ** 2 * ((q64 * q64).sum(1, keepdim=True) + bank_sq[candidates])
    exact = torch.where(exact <= cutoff, torch.zeros_like(exact), exact)
    nearest, order = torch.topk(exact, k + 1, dim=1, largest=False, sorted=True)  # (B, k+1)
    nearest = nearest.sqrt()
    self_match = nearest[:, 0] == 0.0
    distance = torch.where(self_match, nearest[:, 1:].mean(1), nearest[:, :k].mean(1)).float()
    if fold is None:
        return distance
    chosen = torch.where(self_match.unsqueeze(1), order[:, 1:], order[:, :k])  # (B, k) of c
    squares = (diff * diff).gather(1, chosen.unsqueeze(2).expand(-1, -1, diff.shape[2]))  # (B, k, F)
    return distance, (squares.mean(1) @ fold).float()


def sample_rows(rows: np.ndarray, seed: int, max_rows: int) -> np.ndarray:
    """``rows``, or a seeded sample of ``max_rows`` of them (sorted) when there are more."""
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    return rows


class Neighbors(nn.Module):
    """Reference rows for the neighbour part, in two spaces: the encoded input the autoencoder
    reads, and the encoder's last hidden layer (the representation it learnt), in its principal
    axes when it is wider than :data:`NEIGHBOR_HIDDEN_AXES` (``axes``: :func:`hidden_axes`; then
    ``h_bank`` holds the projected rows, :func:`project_hidden`). Plain float arrays, saved in
    ``weights.npz`` beside the networks."""

    def __init__(self, x_bank: torch.Tensor, h_bank: torch.Tensor, fold: np.ndarray | None = None,
                 axes: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__()
        if x_bank.ndim != 2 or h_bank.ndim != 2 or len(x_bank) != len(h_bank) or len(x_bank) < 2:
            raise ValueError("neighbour banks must be two tables with as many rows, at least 2")
        if axes is not None:
            mean, directions = axes
            if mean.ndim != 1 or directions.ndim != 2 or directions.shape[0] != len(mean) \
                    or h_bank.shape[1] != directions.shape[1] + 1:
                raise ValueError(f"the hidden layer's axes {tuple(directions.shape)} do not match its "
                                 f"reference rows {tuple(h_bank.shape)}")
            self.register_buffer("h_mean", mean.double())
            self.register_buffer("h_axes", directions.double())
        else:
            self.h_mean = self.h_axes = None
        self.register_buffer("x_bank", x_bank.float())
        self.register_buffer("h_bank", h_bank.float())
        # Squared lengths for the same-row cut-off: derived from the banks, so not saved.
        self.register_buffer("x_sq", self.x_bank.double().pow(2).sum(1), persistent=False)
        self.register_buffer("h_sq", self.h_bank.double().pow(2).sum(1), persistent=False)
        # (D, C) encoded feature -> column (TabularPreprocessor.feature_fold); derived, not saved.
        fold = np.eye(x_bank.shape[1]) if fold is None else np.asarray(fold, np.float64)
        if fold.shape[0] != x_bank.shape[1]:
            raise ValueError(f"the column fold has {fold.shape[0]} features, the bank {x_bank.shape[1]}")
        self.register_buffer("fold", torch.from_numpy(fold).to(self.x_bank.device), persistent=False)
        self.k = min(NEIGHBORS, len(x_bank) - 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Mean distances (B,) in the encoded input ``x`` (B, D) and in the hidden layer ``h``
        (B, H, float64: see :func:`hidden64`), and the per-column differences (B, C) to the
        nearest rows of the encoded input (see :func:`mean_neighbor_distance`)."""
        near_x, columns = mean_neighbor_distance(x, self.x_bank, self.x_sq, self.k, self.fold)
        if self.h_axes is not None:
            h = project_hidden(h, self.h_mean, self.h_axes)
        return near_x, mean_neighbor_distance(h, self.h_bank, self.h_sq, self.k), columns

    @classmethod
    @torch.no_grad()
    def from_training(cls, body: nn.Sequential, x: torch.Tensor, rows: np.ndarray, seed: int,
                      max_rows: int, fold: np.ndarray | None = None) -> "Neighbors":
        """The reference rows: the training rows ``rows`` of the encoded table ``x`` (a seeded
        sample of at most ``max_rows``), and their hidden layer (in float64, as scoring does), in
        its principal axes when it is wider than :data:`NEIGHBOR_HIDDEN_AXES`."""
        rows = sample_rows(rows, seed, max_rows)
        bank_x = x[torch.from_numpy(rows).to(x.device)]
        step = SCORE_BATCH_ROWS[x.device.type]
        bank_h = torch.cat([hidden64(body, bank_x[i:i + step]) for i in range(0, len(bank_x), step)])
        axes = hidden_axes(bank_h)
        if axes is not None:
            bank_h = project_hidden(bank_h, *axes)
        return cls(bank_x, bank_h, fold, axes)
