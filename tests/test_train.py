"""The training loop: divergence is detected and recovered from, or reported as a clean error."""

from __future__ import annotations

import numpy as np
import pytest

import aaedetect.train as train
from aaedetect import AAEDetector
from aaedetect.errors import TrainingError
from conftest import FAST


@pytest.fixture
def poison(monkeypatch):
    """Make the reconstruction loss NaN for the next ``state['steps']`` training steps."""
    state = {"steps": 0}
    real = train.reconstruction_loss

    def poisoned(features, x, out, *args):
        loss = real(features, x, out, *args)
        if state["steps"] > 0:
            state["steps"] -= 1
            return loss * float("nan")
        return loss

    monkeypatch.setattr(train, "reconstruction_loss", poisoned)
    return state


def test_nan_loss_goes_back_to_the_best_state(table, poison, caplog):
    def progress(epoch, max_epochs, record):
        if epoch == 2:
            poison["steps"] = 1  # the first step of epoch 3 blows up

    det = AAEDetector(**{**FAST, "max_epochs": 6}).fit(table, progress=progress)
    assert det.training_.recoveries == 1
    assert "epoch 3: non-finite loss; going back to epoch" in caplog.text
    assert np.isfinite(det.score_table(table)[["anomaly_score", "recon_score", "latent_score", "neighbor_score"]].to_numpy()).all()
    assert [h["epoch"] for h in det.training_.history] == [1, 2, 4, 5, 6]


def test_exploding_validation_loss_counts_as_divergence(table, monkeypatch, caplog):
    real = train.validation_loss
    calls = {"n": 0}

    def exploding(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return value * 1e6 if calls["n"] == 3 else value

    monkeypatch.setattr(train, "validation_loss", exploding)
    det = AAEDetector(**{**FAST, "max_epochs": 5}).fit(table)
    assert det.training_.recoveries == 1
    assert "epoch 3: exploding loss" in caplog.text


def test_training_that_keeps_diverging_is_a_clean_error(table, poison):
    poison["steps"] = 10**9
    with pytest.raises(TrainingError, match="diverged"):
        AAEDetector(**FAST).fit(table)


def test_cli_exit_code_for_failed_training(csv_file, tmp_path, poison):
    from click.testing import CliRunner

    from aaedetect_cli.main import main

    poison["steps"] = 10**9
    result = CliRunner().invoke(main, ["fit", str(csv_file), "-o", str(tmp_path / "m"), "--epochs", "3"])
    assert result.exit_code == 6, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no epoch of the 3 ended with a finite loss")
    assert not (tmp_path / "m").exists()
    result = CliRunner().invoke(main, ["fit", str(csv_file), "-o", str(tmp_path / "m"), "--epochs", "30"])
    assert result.exit_code == 6, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: training diverged")


def test_small_networks_train_on_one_thread_and_restore_the_setting(table):
    import torch

    seen = []
    before = torch.get_num_threads()
    AAEDetector(**FAST).fit(table, progress=lambda *a: seen.append(torch.get_num_threads()))
    assert set(seen) == {1}
    assert torch.get_num_threads() == before


def test_mmd_tells_distributions_apart():
    import torch

    torch.manual_seed(0)
    same = train.mmd_imq(torch.randn(256, 4), torch.randn(256, 4))
    shifted = train.mmd_imq(torch.randn(256, 4) + 1.5, torch.randn(256, 4))
    assert abs(same.item()) < 0.01 < shifted.item()


def codes_vs_prior(det, table):
    """MMD between the training rows' sampled codes and prior samples."""
    import torch

    num, cat = det.preprocessor_.transform(table)
    graph = det.graph_
    with torch.no_grad():
        torch.manual_seed(1)
        mu, logvar = graph.aae.encoder(graph.features(torch.from_numpy(num), torch.from_numpy(cat)))
        z = graph.aae.encoder.reparameterize(mu, logvar)
        return train.mmd_imq(z, graph.aae.prior.sample(len(z))).item()


@pytest.mark.parametrize("regularizer", ["mmd", "adversarial"])
def test_regularizers_pull_the_codes_towards_the_prior(table, regularizer):
    options = {**FAST, "max_epochs": 30, "patience": 100, "regularizer": regularizer}
    free = AAEDetector(**options, adv_weight=0.0).fit(table)
    pulled = AAEDetector(**options, adv_weight=0.5).fit(table)
    assert codes_vs_prior(pulled, table) < 0.5 * codes_vs_prior(free, table)
    assert np.isfinite(pulled.score_table(table)[["anomaly_score", "latent_score"]].to_numpy()).all()


# ---------------------------------------------------------------- recon_trim (contamination)
def test_trimmed_loss_gives_rows_with_huge_errors_nothing(fitted, table):
    """recon_trim=0.1 on a batch of 300 rows: the 30 rows with planted huge errors are exactly the
    rows left out: the loss is the others' mean, and they get no gradient at all."""
    import torch

    features = fitted.graph_.features
    num, cat = (torch.from_numpy(a) for a in fitted.preprocessor_.transform(table))
    with torch.no_grad():
        x = features(num, cat)
    out = (x + 0.1 * torch.randn_like(x)).requires_grad_(True)
    planted = torch.arange(0, 300, 10)  # 30 rows
    with torch.no_grad():
        out[planted] += 1e3
    loss = train.reconstruction_loss(features, x, out, 0.1)
    loss.backward()
    others = torch.ones(300, dtype=torch.bool)
    others[planted] = False
    expected = features.column_errors(x[others], out[others]).mean()
    assert torch.allclose(loss, expected, rtol=1e-6)
    assert (out.grad[planted] == 0).all() and (out.grad[others].abs().sum(1) > 0).all()
    # without trim every row counts, and the planted rows dominate
    assert train.reconstruction_loss(features, x, out) > 100 * loss


def test_trimmed_mean_leaves_out_the_largest_share():
    import torch

    values = torch.tensor([1.0, 100.0, 2.0, 3.0, 50.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    assert train.trimmed_mean(values, 0.2).item() == pytest.approx(np.mean([1, 2, 3, 4, 5, 6, 7, 8]))
    assert train.trimmed_mean(values, 0.05).item() == pytest.approx(values.mean().item())  # floor(0.5) = 0


def test_recon_trim_starts_after_the_warm_up_and_trims_validation(table, monkeypatch):
    from aaedetect.config import TRIM_WARMUP_EPOCHS

    seen: dict[str, list] = {"batch": [], "validation": []}
    real_loss, real_val = train.reconstruction_loss, train.validation_loss

    def loss(features, x, out, trim=0.0):
        seen["batch"].append(trim)
        return real_loss(features, x, out, trim)

    def validation(*args, trim=0.0, **kwargs):
        seen["validation"].append(trim)
        return real_val(*args, trim=trim, **kwargs)

    monkeypatch.setattr(train, "reconstruction_loss", loss)
    monkeypatch.setattr(train, "validation_loss", validation)
    epochs = TRIM_WARMUP_EPOCHS + 2
    det = AAEDetector(**{**FAST, "max_epochs": epochs, "patience": 100, "recon_trim": 0.1}).fit(table)
    steps = len(seen["batch"]) // epochs
    assert seen["batch"] == [0.0] * (steps * TRIM_WARMUP_EPOCHS) + [0.1] * (steps * 2)
    assert seen["validation"] == [0.1] * epochs and det.training_.epochs_run == epochs


def test_recon_trim_same_data_and_seed_same_model(table):
    opts = {**FAST, "max_epochs": 8, "recon_trim": 0.1}
    a, b = AAEDetector(**opts).fit(table), AAEDetector(**opts).fit(table)
    for (ka, va), (kb, vb) in zip(a.graph_.state_dict().items(), b.graph_.state_dict().items()):
        assert ka == kb and np.array_equal(va.numpy(), vb.numpy()), ka
    plain = AAEDetector(**{**opts, "recon_trim": 0.0}).fit(table)
    assert not np.array_equal(a.score_samples(table), plain.score_samples(table))
