"""``aaedetect report``: a self-contained HTML page with every section, from real scoring."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aaedetect_cli.main import main
from conftest import make_table

pytest.importorskip("matplotlib")

from aaedetect import report  # noqa: E402

SECTIONS = ("summary", "training", "scores", "latent", "parts", "curves", "top")
ANOMALIES = (5, 50, 120, 200)  # rows made anomalous (and labelled 1) in the labelled table


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


class Page(HTMLParser):
    """What the tests look at in a report: section ids, every src/href, images by section, the
    cells of the top table, and each section's text."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.links, self.images, self.rows = [], [], {}, []
        self.text: dict[str, str] = {}
        self.section = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
            self.ids.append(self.section)
        for name in ("src", "href"):
            if name in attrs:
                self.links.append(attrs[name])
        if tag == "img":
            self.images.setdefault(self.section, []).append(attrs["src"])
        if tag == "tr" and self.section == "top":
            self.rows.append([])
        if tag in ("td", "th") and self.section == "top":
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None

    def handle_data(self, data):
        if self.section:
            self.text[self.section] = self.text.get(self.section, "") + data
            if self.section == "top" and self.rows and self.rows[-1]:
                self.rows[-1][-1] += data


def decode_png(src: str) -> np.ndarray:
    from matplotlib.image import imread

    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return imread(io.BytesIO(base64.b64decode(src[len(prefix):], validate=True)), format="png")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A table like the training table with a few rows made anomalous, labelled."""
    df = make_table(300, seed=1)
    df["label"] = 0
    df.loc[list(ANOMALIES), "a"] = 60.0
    df.loc[list(ANOMALIES), "label"] = 1
    path = tmp_path_factory.mktemp("report") / "labelled.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def labelled_report(model_dir, labelled):
    out = labelled.parent / "report.html"
    result = run("report", labelled, "-m", model_dir, "-o", out, "--label", "label", "--top", 7)
    assert result.exit_code == 0, result.stderr
    assert "report: " + str(out) in result.stderr
    return Page(out.read_text(encoding="utf-8")), out.read_text(encoding="utf-8")


def test_every_section_with_a_label(labelled_report):
    page, _ = labelled_report
    assert page.ids == list(SECTIONS)
    for section in ("scores", "latent", "parts", "curves"):
        (src,) = page.images[section]
        image = decode_png(src)
        assert image.shape[0] > 200 and image.shape[1] > 400
        assert np.ptp(image[..., :3]) > 0.5  # drawn on, not blank
    assert "AUROC" in page.text["summary"] and "labelled anomalies" in page.text["summary"]


def test_self_contained(labelled_report):
    page, text = labelled_report
    assert page.links and all(link.startswith(("data:image/png;base64,", "#")) for link in page.links)
    lowered = text.lower()
    for fetches in ("<script", "<link", "@import", "url(", "http://", "https://", "<iframe"):
        assert fetches not in lowered, fetches


def test_top_table_holds_the_highest_scores_in_order(labelled_report, labelled, model_dir):
    import aaedetect

    page, _ = labelled_report
    header, *rows = page.rows
    assert header[:6] == ["line", "anomaly_score", "recon_score", "latent_score", "neighbor_score", "label"]
    scored = aaedetect.load(model_dir, device="cpu").score_table(
        pd.read_csv(labelled, dtype=str, keep_default_na=False))
    expected = scored.sort_values("anomaly_score", ascending=False, kind="stable").head(7)
    assert [int(r[0]) for r in rows] == [i + 2 for i in expected.index]  # file lines
    assert [float(r[1]) for r in rows] == pytest.approx(expected["anomaly_score"].tolist(), abs=1e-3)
    assert [int(r[5]) for r in rows] == expected["label"].astype(int).tolist()
    assert set(expected.index[:len(ANOMALIES)]) == set(ANOMALIES)  # the fixture's anomalies do top it
    assert all("a=60.0" in r[-1] for r in rows[:len(ANOMALIES)])  # the row's own values


def test_without_a_label_there_are_no_curves(model_dir, csv_file, tmp_path):
    out = tmp_path / "plain.html"
    result = run("report", csv_file, "-m", model_dir, "-o", out)
    assert result.exit_code == 0, result.stderr
    page = Page(out.read_text(encoding="utf-8"))
    assert page.ids == [s for s in SECTIONS if s != "curves"]
    assert page.rows[0][:5] == ["line", "anomaly_score", "recon_score", "latent_score", "neighbor_score"]
    assert len(page.rows) == 1 + report.TOP_ROWS


def model_without_history(model_dir, tmp_path):
    """A copy of the model as older versions wrote it: no ``training.history`` (manifest.json is
    not checksummed)."""
    copy = tmp_path / "old-model"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["training"]["history"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_model_without_history_says_so(model_dir, csv_file, tmp_path):
    out = tmp_path / "old.html"
    result = run("report", csv_file, "-m", model_without_history(model_dir, tmp_path), "-o", out)
    assert result.exit_code == 0, result.stderr
    page = Page(out.read_text(encoding="utf-8"))
    assert "training" not in page.images
    assert "no per-epoch training history" in page.text["training"]


def test_training_curves_from_the_history(labelled_report, model_dir):
    page, _ = labelled_report
    assert json.loads((model_dir / "manifest.json").read_text())["training"]["history"]
    (src,) = page.images["training"]
    assert decode_png(src).shape[0] > 300
    assert "no per-epoch training history" not in page.text["training"]


def test_training_history_becomes_arrays_with_gaps_for_nulls():
    keys = ("recon_loss", "generator_loss", "discriminator_loss", "discriminator_accuracy", "validation_loss")
    history = [{"epoch": 1, **dict.fromkeys(keys, 0.5), "validation_loss": None},
               {"epoch": 2, **dict.fromkeys(keys, 0.25)}]
    parsed = report.training_history(history)
    assert parsed["epoch"].tolist() == [1, 2] and parsed["recon_loss"].tolist() == [0.5, 0.25]
    assert np.isnan(parsed["validation_loss"][0]) and parsed["validation_loss"][1] == 0.25
    assert report.training_history([]) is None  # models written before the history was kept


@pytest.mark.parametrize("case, code, fragment", [
    ("missing label", 3, "no label column 'label'"),
    ("bad labels", 3, "label column 'kind' must hold 0 or 1; found 'blue' (line 2)"),
    ("no file", 5, "no such file"),
])
def test_bad_input_writes_nothing(model_dir, csv_file, tmp_path, case, code, fragment):
    out = tmp_path / "out.html"
    out.write_text("the previous report")
    data, label = {"missing label": (csv_file, "label"), "bad labels": (csv_file, "kind"),
                   "no file": (tmp_path / "absent.csv", None)}[case]
    result = run("report", data, "-m", model_dir, "-o", out, *(("--label", label) if label else ()))
    assert result.exit_code == code, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and fragment in last, last
    assert out.read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.html", "data.csv"])


def test_without_matplotlib_one_line_error(model_dir, csv_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    out = tmp_path / "out.html"
    result = run("report", csv_file, "-m", model_dir, "-o", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: " + report.MISSING_MATPLOTLIB
    assert not out.exists()


def test_nothing_else_imports_matplotlib():
    code = ("import sys, aaedetect, aaedetect.report, aaedetect.pipeline, aaedetect.detector, "
            "aaedetect_cli.main; assert 'matplotlib' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_collect_keeps_the_same_rows_at_any_chunk_size(model_dir, labelled):
    import aaedetect
    from aaedetect.tables import TableSource

    detector = aaedetect.load(model_dir, device="cpu")
    runs = []
    for chunk_rows in (37, 1000):
        with TableSource(labelled) as source:
            runs.append(report.collect(source, detector, label="label", top=5, plot_rows=40,
                                       chunk_rows=chunk_rows, seed=3))
    small, big = runs
    assert small.rows == big.rows == 300
    for a, b in ((small.sample, big.sample), (small.top, big.top)):
        assert a[report.POSITION].tolist() == b[report.POSITION].tolist()
    # at most 40 rows of each label: every anomaly, 40 normal rows
    assert (small.sample[report.LABEL] == 1).sum() == len(ANOMALIES)
    assert (small.sample[report.LABEL] == 0).sum() == 40
    np.testing.assert_allclose(small.scores["anomaly_score"], big.scores["anomaly_score"], atol=1e-5)


def test_max_rows_reports_on_a_sample(model_dir, labelled, tmp_path):
    out = tmp_path / "sampled.html"
    result = run("report", labelled, "-m", model_dir, "-o", out, "--max-rows", 120, "--label", "label")
    assert result.exit_code == 0, result.stderr
    assert "scored 120 rows" in result.stderr
    assert "a uniform sample of the file's 300" in Page(out.read_text(encoding="utf-8")).text["summary"]


def test_projection_is_one_map_for_codes_and_prior():
    rng = np.random.default_rng(0)
    for latent in (1, 2, 5):
        prior = rng.normal(size=(200, latent))
        codes2, prior2, how = report.project_2d(prior.copy(), prior)
        assert codes2.shape == prior2.shape == (200, 2)
        if latent > 1:
            np.testing.assert_allclose(codes2, prior2)
        else:
            np.testing.assert_allclose(codes2[:, 0], prior2[:, 0])
        assert ("principal axes" in how) == (latent > 2)
    prior = rng.normal(size=(300, 4))
    codes = prior[:100] * 0.1
    codes2, prior2, _ = report.project_2d(codes, prior)
    assert np.abs(codes2).max() < np.abs(prior2).max()  # shrunk codes stay shrunk in the picture


def test_top_table_shows_explanations_when_the_scorer_gives_them():
    data = report.ReportData(source="t.csv", label=None, columns=["a", "kind"])
    top = pd.DataFrame({"a": ["1.5"], "kind": ["<red>"], "anomaly_score": [3.0], "recon_score": [2.0],
                        "latent_score": [0.5], "neighbor_score": [0.1], "top_columns": ["kind;a"],
                        "top_shares": ["0.71;0.18"], report.POSITION: [4]})
    table = report.top_table_html(top, data)
    page = Page(f'<section id="top">{table}</section>')
    header, row = page.rows
    assert header == ["line", "anomaly_score", "recon_score", "latent_score", "neighbor_score",
                      "top_columns", "top_shares", "values"]
    assert row[0] == "6" and row[5] == "kind; a" and row[6] == "0.71; 0.18"
    assert row[7].startswith("kind=<red> · a=1.5")  # explained columns first, escaped in the HTML
    assert "&lt;red&gt;" in table


def test_help_explains_every_option():
    result = run("report", "--help")
    assert result.exit_code == 0
    for param in main.commands["report"].params:
        if param.param_type_name == "option":
            assert param.help and all(o in result.output for o in param.opts if o.startswith("--"))
