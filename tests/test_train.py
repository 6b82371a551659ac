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
