"""Priors p(z) for the latent code: anything we can sample from works, since it is matched adversarially.

Each prior also gives its log-density: the latent score uses it (with the discriminator's density
ratio) to say how likely a row's code is. Priors are modules so that the log-density is part of the
exported scoring graph.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import PRIOR_PATTERN
from .errors import OptionError


class Prior(nn.Module):
    """A distribution over R^latent_dim that can be sampled and has a log-density."""

    name = "prior"

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GaussianPrior(Prior):
    """Standard normal N(0, I)."""

    name = "gaussian"

    def sample(self, n, generator=None):
        return torch.randn(n, self.latent_dim, generator=generator)  # (n, L)

    def log_prob(self, z):
        return -0.5 * (z.pow(2).sum(1) + self.latent_dim * math.log(2 * math.pi))


class UniformPrior(Prior):
    """Uniform on the cube [-sqrt(3), sqrt(3)]^L, which has unit variance like the Gaussian.

    The log-density is the cube's inside, and outside it falls off like a Gaussian of standard
    deviation ``edge_std`` with the distance to the cube: a hard -inf would make every code just
    outside the cube infinitely unlikely, and scores must stay finite.
    """

    name = "uniform"
    half_width = math.sqrt(3.0)
    edge_std = 0.25

    def sample(self, n, generator=None):
        u = torch.rand(n, self.latent_dim, generator=generator)
        return (2 * u - 1) * self.half_width

    def log_prob(self, z):
        outside = (z.abs() - self.half_width).clamp(min=0.0)  # (B, L)
        return (-self.latent_dim * math.log(2 * self.half_width)
                - 0.5 * (outside / self.edge_std).pow(2).sum(1))


class MixturePrior(Prior):
    """K equally weighted Gaussians with fixed means.

    As in the AAE paper's 2-D mixtures, the means lie on a circle of radius 2 in the first two
    latent dimensions (evenly spaced on a line when the code has one dimension), each component
    with standard deviation 0.5.
    """

    radius = 2.0
    std = 0.5

    def __init__(self, latent_dim: int, k: int):
        super().__init__(latent_dim)
        self.k = k
        self.name = f"mixture:{k}"
        means = torch.zeros(k, latent_dim)
        if latent_dim == 1:
            means[:, 0] = torch.linspace(-self.radius, self.radius, k)
        else:
            angles = 2 * math.pi * torch.arange(k, dtype=torch.float32) / k
            means[:, 0] = self.radius * torch.cos(angles)
            means[:, 1] = self.radius * torch.sin(angles)
        self.register_buffer("means", means)  # (K, L)

    def sample(self, n, generator=None):
        which = torch.randint(0, self.k, (n,), generator=generator)
        noise = torch.randn(n, self.latent_dim, generator=generator)
        return self.means.cpu()[which] + self.std * noise

    def log_prob(self, z):
        diff = z.unsqueeze(1) - self.means.unsqueeze(0)  # (B, K, L)
        log_comp = (-0.5 * (diff / self.std).pow(2).sum(2)
                    - self.latent_dim * math.log(self.std * math.sqrt(2 * math.pi)))
        return torch.logsumexp(log_comp, dim=1) - math.log(self.k)


def make_prior(spec: str, latent_dim: int) -> Prior:
    """The prior named by ``spec`` ('gaussian', 'uniform' or 'mixture:K')."""
    match = PRIOR_PATTERN.match(spec)
    if not match:
        raise OptionError(f"unknown prior {spec!r}: use gaussian, uniform or mixture:K")
    if match.group(2):
        return MixturePrior(latent_dim, int(match.group(2)))
    return {"gaussian": GaussianPrior, "uniform": UniformPrior}[spec](latent_dim)
