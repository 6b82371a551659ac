"""The per-epoch training history: recorded by training, written to the manifest, validated when
read back (manifests are untrusted), shown by ``aaedetect info`` and exposed as ``history_``."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from click.testing import CliRunner

import aaedetect.train as train
from aaedetect import AAEDetector, load
from aaedetect.errors import ModelFormatError
from aaedetect.manifest import HISTORY_KEYS
from aaedetect.model import Discriminator
from aaedetect_cli.main import main
from conftest import FAST


def test_every_completed_epoch_has_a_record(fitted):
    history, training = fitted.history_, fitted.training_
    assert len(history) == training.epochs_run == FAST["max_epochs"]
    assert [r["epoch"] for r in history] == list(range(1, training.epochs_run + 1))
    for record in history:
        assert list(record) == list(HISTORY_KEYS)
        numbers = [record[k] for k in HISTORY_KEYS[1:]]
        assert all(isinstance(v, float) and math.isfinite(v) for v in numbers), record
        assert record["recon_loss"] > 0 and record["validation_loss"] > 0
        # both are binary cross-entropies of the adversarial game
        assert record["generator_loss"] > 0 and record["discriminator_loss"] > 0
        assert 0.0 <= record["discriminator_accuracy"] <= 1.0
    best = history[training.best_epoch - 1]
    assert best["validation_loss"] == pytest.approx(training.best_val_loss, rel=1e-5)
    assert history == training.history and history is not training.history


def test_discriminator_accuracy_counts_both_halves(table, monkeypatch):
    """A discriminator that calls everything a prior sample is right on exactly half of its
    decisions: all the prior samples, none of the codes."""
    real = Discriminator.forward
    monkeypatch.setattr(Discriminator, "forward", lambda self, z: real(self, z) * 0.0 + 3.0)
    det = AAEDetector(**{**FAST, "max_epochs": 2}).fit(table)
    assert [r["discriminator_accuracy"] for r in det.history_] == [0.5, 0.5]


def test_generator_loss_is_the_mmd_term_with_the_mmd_regularizer(table, monkeypatch):
    real = train.mmd_imq
    monkeypatch.setattr(train, "mmd_imq", lambda z, prior: real(z, prior) * 0.0 + 0.125)
    det = AAEDetector(**{**FAST, "max_epochs": 2, "regularizer": "mmd"}).fit(table)
    assert [r["generator_loss"] for r in det.history_] == [0.125, 0.125]


def test_history_survives_save_and_load(fitted, model_dir, tmp_path):
    written = json.loads((model_dir / "manifest.json").read_text())
    assert written["training"]["history"] == fitted.history_
    again = load(model_dir)
    assert again.history_ == fitted.history_
    again.save(tmp_path / "resaved")
    assert load(tmp_path / "resaved").history_ == fitted.history_


def edited_copy(model_dir, tmp_path, edit):
    """A copy of the model whose manifest's training entry was changed by ``edit(training)``.
    The manifest holds the other files' checksums, not its own: no checksum needs rewriting."""
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest["training"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def first(training):
    return training["history"][0]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update(history="epochs"), "history is a str, not a list"),
    (lambda t: t.update(history=None), "history is a NoneType, not a list"),
    (lambda t: t["history"].__setitem__(0, [1, 2]), "history[0] is a list, not a table"),
    (lambda t: first(t).pop("recon_loss"), "history[0] has the keys"),
    (lambda t: first(t).update(extra=1.0), "history[0] has the keys"),
    (lambda t: first(t).update(epoch="1"), "history[0]: epoch '1' is not an integer"),
    (lambda t: first(t).update(epoch=True), "history[0]: epoch True is not an integer"),
    (lambda t: first(t).update(epoch=0), "history[0]: epoch 0 is not an integer in 1..4"),
    (lambda t: t["history"][1].update(epoch=1), "history[1]: epoch 1 is not an integer in 2..4"),
    (lambda t: first(t).update(recon_loss="low"), "recon_loss 'low' is not a finite number or null"),
    (lambda t: first(t).update(validation_loss=float("nan")), "validation_loss nan is not a finite"),
    (lambda t: first(t).update(generator_loss=float("inf")), "generator_loss inf is not a finite"),
    (lambda t: first(t).update(discriminator_accuracy=1.5), "discriminator_accuracy 1.5 is not in [0, 1]"),
    (lambda t: t["history"].extend(t["history"]), "history has 8 records, more than max_epochs (4)"),
])
def test_malformed_history_is_refused(model_dir, tmp_path, edit, message):
    copy = edited_copy(model_dir, tmp_path, edit)
    with pytest.raises(ModelFormatError, match="malformed manifest") as caught:
        load(copy)
    assert "'training' is missing or malformed" in str(caught.value)
    assert message in str(caught.value)
    # info describes what it can, lists the problem, and fails
    result = CliRunner().invoke(main, ["info", "-m", str(copy)])
    assert result.exit_code == 4, result.stderr
    assert result.stdout.startswith("aaedetect model") and "threshold: " in result.stdout
    assert "problem: manifest.json: 'training' is missing or malformed" in result.stdout
    assert message in result.stdout and result.stderr.startswith("error: ")


def test_null_numbers_are_accepted(model_dir, tmp_path):
    """A value that was not finite is written as null, and read back as None."""
    copy = edited_copy(model_dir, tmp_path, lambda t: first(t).update(generator_loss=None))
    assert load(copy).history_[0]["generator_loss"] is None
    result = CliRunner().invoke(main, ["info", "-m", str(copy)])
    assert result.exit_code == 0, result.stderr
    assert "n/a" in result.stdout


def test_models_without_history_still_load(model_dir, tmp_path):
    copy = edited_copy(model_dir, tmp_path, lambda t: t.pop("history"))
    old = load(copy)
    assert old.history_ == [] and old.training_.history == []
    result = CliRunner().invoke(main, ["info", "-m", str(copy)])
    assert result.exit_code == 0, result.stderr
    assert "history: no per-epoch history (written by an older aaedetect)" in result.stdout


def test_info_summarises_the_history(fitted, model_dir):
    result = CliRunner().invoke(main, ["info", "-m", str(model_dir)])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("history: "))
    assert lines[start].startswith(f"history: {fitted.training_.epochs_run} epochs recorded")
    assert lines[start + 1].split() == ["epoch", "recon", "generator", "discrim.", "disc", "acc", "val", "loss"]
    rows = [line.split() for line in lines[start + 2:start + 2 + len(fitted.history_)]]
    assert [int(r[0]) for r in rows] == [r["epoch"] for r in fitted.history_]  # 4 epochs: all shown
    for row, record in zip(rows, fitted.history_):
        assert float(row[1]) == pytest.approx(record["recon_loss"], rel=1e-3)
        assert float(row[4]) == pytest.approx(record["discriminator_accuracy"], abs=1e-3)
        assert float(row[5]) == pytest.approx(record["validation_loss"], rel=1e-3)
    best = [r for r in rows if r[-1] == "best"]
    assert [int(r[0]) for r in best] == [fitted.training_.best_epoch]


def test_info_shows_a_few_epochs_of_a_long_history(model_dir, tmp_path):
    def lengthen(training):
        template = first(training)
        training["max_epochs"] = training["epochs_run"] = 40
        training["best_epoch"] = 17
        training["history"] = [{**template, "epoch": e} for e in range(1, 41)]

    result = CliRunner().invoke(main, ["info", "-m", str(edited_copy(model_dir, tmp_path, lengthen))])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("history: "))
    assert lines[start].startswith("history: 40 epochs recorded (6 shown")
    shown = [int(line.split()[0]) for line in lines[start + 2:start + 8]]
    assert shown[0] == 1 and shown[-1] == 40 and 17 in shown and shown == sorted(shown)
    assert not lines[start + 8].split()[0].isdigit()


def test_info_says_when_the_history_cannot_be_shown(model_dir, tmp_path):
    copy = edited_copy(model_dir, tmp_path, lambda t: t.update(history="epochs"))
    result = CliRunner().invoke(main, ["info", "-m", str(copy)])
    assert result.exit_code == 4
    assert "history: malformed (see the problem below)" in result.stdout
