"""The AAE training loop: a reconstruction+adversarial (generator) step and a discriminator step
per batch, validation on held-out rows, early stopping, and recovery from diverging losses.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from .config import TRIM_WARMUP_EPOCHS, Options, epochs_for
from .errors import TrainingError
from .manifest import TrainResult, epoch_record
from .model import AAE, FeatureEncoder

logger = logging.getLogger("aaedetect")

#: Early stopping counts an epoch as better only if it lowers the validation loss by this share.
MIN_RELATIVE_IMPROVEMENT = 1e-3
#: How often training may fall back to its best state with a halved learning rate after a NaN.
MAX_RECOVERIES = 3
#: A validation loss this many times the best so far counts as diverged ("exploding").
EXPLODED = 1e3

Progress = Callable[[int, int, dict], None]


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without CUDA is an error."""
    from .errors import OptionError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda: no CUDA device is available to torch on this machine")
    return torch.device(name)


#: Networks narrower than this train on one CPU thread: their matrices are too small for
#: threads to pay, and busy-waiting threads slow everything down when cores are shared
#: (measured on the demo: same speed on 1 or 2 threads alone, 2.7x slower with 2 threads when
#: two trainings share two cores).
SINGLE_THREAD_BELOW_WIDTH = 256


@contextlib.contextmanager
def cpu_threads_for(aae: AAE, device: torch.device):
    """Train small networks on one CPU thread; restore torch's setting afterwards."""
    previous = torch.get_num_threads()
    small = device.type == "cpu" and max(aae.cfg.hidden) < SINGLE_THREAD_BELOW_WIDTH
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(previous)


def mmd_imq(z: torch.Tensor, z_prior: torch.Tensor, scales=(0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)) -> torch.Tensor:
    """Unbiased MMD^2 between codes and prior samples with inverse multiquadratic kernels
    k(a, b) = C / (C + |a - b|^2), summed over C = 2 * L * s for several scales s (as in the WAE
    paper, Tolstikhin et al. 2018), so that no single bandwidth has to fit every table."""
    n, dim = z.shape
    d_zz = torch.cdist(z, z).pow(2)  # (B, B)
    d_pp = torch.cdist(z_prior, z_prior).pow(2)
    d_zp = torch.cdist(z, z_prior).pow(2)
    off_diag = 1.0 - torch.eye(n, device=z.device)
    total = z.new_zeros(())
    for s in scales:
        c = 2.0 * dim * s
        same = ((c / (c + d_zz)) * off_diag).sum() + ((c / (c + d_pp)) * off_diag).sum()
        total = total + same / (n * (n - 1)) - 2.0 * (c / (c + d_zp)).mean()
    return total


def trimmed_mean(values: torch.Tensor, trim: float) -> torch.Tensor:
    """Mean of ``values`` (N,) without the ``floor(trim * N)`` largest: those rows get no gradient."""
    drop = int(trim * len(values))
    if drop == 0:
        return values.mean()
    return torch.topk(values, len(values) - drop, largest=False, sorted=False).values.mean()


def reconstruction_loss(features: FeatureEncoder, x: torch.Tensor, out: torch.Tensor,
                        trim: float = 0.0) -> torch.Tensor:
    """Mean over rows of the mean per-column error (the same errors the score sums); with
    ``trim``, the rows with the largest errors (that share of the batch) are left out."""
    if not trim:
        return features.column_errors(x, out).mean()
    return trimmed_mean(features.column_errors(x, out).mean(1), trim)


@torch.no_grad()
def validation_loss(aae: AAE, features: FeatureEncoder, x_val: torch.Tensor, batch_size: int = 8192,
                    trim: float = 0.0) -> float:
    """Reconstruction loss of held-out rows, deterministic (eval mode, z = mu); with ``trim``,
    without the rows with the largest errors (that share of all held-out rows)."""
    aae.eval()
    per_row = []
    for start in range(0, len(x_val), batch_size):
        xb = x_val[start:start + batch_size]
        mu, _ = aae.encoder(xb)
        per_row.append(features.column_errors(xb, aae.decoder(mu)).mean(1))
    if trim:
        return trimmed_mean(torch.cat(per_row), trim).item()
    return sum(errors.sum().item() for errors in per_row) / len(x_val)


def train_aae(aae: AAE, features: FeatureEncoder, x_train: torch.Tensor, x_val: torch.Tensor,
              opts: Options, progress: Progress | None = None) -> TrainResult:
    """Train ``aae`` in place on encoded rows; leaves it holding the best validation state.

    Each completed epoch appends a record to the result's ``history`` (keys:
    :data:`aaedetect.manifest.HISTORY_KEYS`) and is passed to ``progress(epoch, max_epochs,
    record)``. An epoch whose losses turn non-finite or explode is rolled back (the best state is
    restored and the learning rates halved): it gets no record and no progress call, so its number
    is missing from the history, and ``recoveries`` counts it.

    ``opts.recon_trim`` > 0: after ``TRIM_WARMUP_EPOCHS`` epochs, each batch's reconstruction
    loss leaves out its worst-reconstructed rows (that share of the batch), so that anomalies
    among the training rows stop being learnt; the validation loss that early stopping watches
    leaves out that share of the held-out rows from the first epoch on.

    The caller seeds torch (``torch.manual_seed``) for reproducible runs.
    """
    device = x_train.device
    lam = opts.adv_weight
    mmd = opts.regularizer == "mmd"
    lr, disc_lr = opts.lr, opts.disc_lr
    ae_params = list(aae.encoder.parameters()) + list(aae.decoder.parameters())
    opt_ae = torch.optim.Adam(ae_params, lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(aae.discriminator.parameters(), lr=disc_lr, betas=(0.5, 0.999))
    # BatchNorm cannot train on a batch of one row: drop such a last batch.
    n = len(x_train)
    batch_size = min(opts.batch_size, n)
    result = TrainResult(rows=n, validation_rows=len(x_val))
    best_state = copy.deepcopy(aae.state_dict())
    stale = 0
    started = time.perf_counter()
    epoch = 0
    max_epochs = result.max_epochs = epochs_for(opts.max_epochs, n)
    while epoch < max_epochs:
        epoch += 1
        aae.train()
        order = torch.randperm(n).to(device)
        sums = {"recon": 0.0, "generator": 0.0, "disc": 0.0}
        steps = 0
        # the discriminator's right decisions, kept on the device (no sync per step)
        correct, decisions = torch.zeros((), dtype=torch.long, device=device), 0
        diverged = False
        trim = opts.recon_trim if epoch > TRIM_WARMUP_EPOCHS else 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue
            xb = x_train[idx]  # (B, D)

            # 1. generator step: reconstruct, and pull the codes towards the prior: by fooling the
            #    discriminator (AAE), or by the MMD between codes and prior samples (WAE-MMD)
            noisy = xb + opts.noise * torch.randn_like(xb) if opts.noise else xb  # denoising
            mu, logvar = aae.encoder(noisy)
            z = aae.encoder.reparameterize(mu, logvar)  # (B, L)
            recon = reconstruction_loss(features, xb, aae.decoder(z), trim)
            if mmd:
                fooled = mmd_imq(z, aae.prior.sample(len(xb)).to(device))
            else:
                fooled = F.binary_cross_entropy_with_logits(aae.discriminator(z), torch.ones(len(xb), device=device))
            loss_g = (1.0 - lam) * recon + lam * fooled
            opt_ae.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_ae.step()

            # 2. discriminator step: prior samples are "real", encoded codes are "fake". With MMD the
            #    discriminator does not shape the codes, but it still learns the density ratio that
            #    the latent score uses.
            z_real = aae.prior.sample(len(xb)).to(device)
            d_real = aae.discriminator(z_real)
            d_fake = aae.discriminator(z.detach())
            loss_d = 0.5 * (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

            if not (torch.isfinite(loss_g) and torch.isfinite(loss_d)):
                diverged = True
                break
            sums["recon"] += recon.item()
            sums["generator"] += fooled.item()
            sums["disc"] += loss_d.item()
            correct += (d_real.detach() > 0).sum() + (d_fake.detach() < 0).sum()
            decisions += d_real.numel() + d_fake.numel()
            steps += 1

        val = math.nan if diverged else validation_loss(aae, features, x_val, trim=opts.recon_trim)
        exploded = math.isfinite(result.best_val_loss) and val > EXPLODED * result.best_val_loss
        if diverged or not math.isfinite(val) or exploded:
            # Adversarial training can blow up: go back to the best state with smaller steps.
            result.recoveries += 1
            if result.recoveries > MAX_RECOVERIES:
                raise TrainingError(f"training diverged (non-finite or exploding loss) {result.recoveries} times, "
                                    f"last at epoch {epoch}, even with the learning rate lowered to "
                                    f"{lr:.2g}; try a smaller --lr or --adv-weight")
            lr, disc_lr = lr / 2, disc_lr / 2
            logger.warning("epoch %d: %s loss; going back to %s with learning rate %.2g", epoch,
                           "exploding" if exploded else "non-finite",
                           f"epoch {result.best_epoch}" if result.best_epoch else "the initial weights", lr)
            aae.load_state_dict(best_state)
            for opt, rate in ((opt_ae, lr), (opt_d, disc_lr)):
                opt.state.clear()
                for group in opt.param_groups:
                    group["lr"] = rate
            continue

        mean = {k: v / steps if steps else None for k, v in sums.items()}
        record = epoch_record(epoch, recon_loss=mean["recon"], generator_loss=mean["generator"],
                              discriminator_loss=mean["disc"],
                              discriminator_accuracy=correct.item() / decisions if decisions else None,
                              validation_loss=val)
        result.history.append(record)
        result.epochs_run = epoch
        if val < result.best_val_loss * (1 - MIN_RELATIVE_IMPROVEMENT) or result.best_epoch == 0:
            result.best_val_loss, result.best_epoch, stale = val, epoch, 0
            best_state = copy.deepcopy(aae.state_dict())
        else:
            stale += 1
        if progress is not None:
            progress(epoch, max_epochs, record)
        if stale >= opts.patience:
            result.stopped_early = True
            break

    if result.best_epoch == 0:
        raise TrainingError(f"no epoch of the {max_epochs} ended with a finite loss; try a "
                            f"smaller --lr or --adv-weight")
    aae.load_state_dict(best_state)
    aae.eval()
    result.seconds = time.perf_counter() - started
    return result
