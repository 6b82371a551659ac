"""benchmarks/explain.py: its loaders, hit counting and report, on hand-made explanations (no
training: the explanation API is stood in for by a function that writes top_columns)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_benchmark

bench = load_benchmark("explain")

KINDS = ["none", "spike", "spike", "relation", "category", "category", "odd"]
BROKEN = ["", "a", "b", "c", "d", "e;f", "g"]
TOP = ["a;b", "a;x", "x;b", "c", "x;y", "f;e", np.nan]
FLAGGED = [True, True, False, True, False, True, True]


def by_kind(records):
    return {r["kind"]: r for r in records}


def test_names_and_hits():
    assert bench.names("pressure_bar;site") == ["pressure_bar", "site"]
    assert bench.names("") == [] and bench.names(np.nan) == [] and bench.names(None) == []
    assert bench.hits(TOP, BROKEN, 1).tolist() == [False, True, False, True, False, True, False]
    assert bench.hits(TOP, BROKEN, 2).tolist() == [False, True, True, True, False, True, False]


def test_evaluate_counts_hits_per_kind_and_overall():
    records = bench.evaluate(KINDS, BROKEN, TOP, FLAGGED, 10, ("spike", "relation", "category"))
    assert [r["kind"] for r in records] == ["spike", "relation", "category", "odd", "overall"]
    got = {r["kind"]: {k: r[k] for k in ("rows", "top1", "top2", "flagged")} for r in records}
    assert got["spike"] == {"rows": 2, "top1": 0.5, "top2": 1.0, "flagged": 0.5}
    assert got["relation"] == {"rows": 1, "top1": 1.0, "top2": 1.0, "flagged": 1.0}
    # A demo row counts when its top column is one of the broken ones ("f" of "e;f").
    assert got["category"] == {"rows": 2, "top1": 0.5, "top2": 0.5, "flagged": 0.5}
    assert got["odd"]["top1"] == 0.0  # no explanation at all: a miss
    assert got["overall"] == {"rows": 6, "top1": pytest.approx(3 / 6), "top2": pytest.approx(4 / 6),
                              "flagged": pytest.approx(4 / 6)}
    # By chance, of 10 columns: one broken column is the top-1 once in 10 and among the top 2
    # once in 5; two broken ones ("e;f") are the top-1 twice in 10, among the top 2 in 17 of 45.
    chance = {r["kind"]: (r["chance1"], r["chance2"]) for r in by_kind(records).values()}
    assert chance["spike"] == pytest.approx((0.1, 0.2))
    assert chance["category"] == pytest.approx(((0.1 + 0.2) / 2, (0.2 + 17 / 45) / 2))
    # Only normal rows: nothing to report.
    assert bench.evaluate(["none"], [""], ["a"], [False], 10) == []


def test_summary_goals_and_table():
    seed0 = bench.evaluate(KINDS, BROKEN, TOP, FLAGGED, 10)
    perfect = [b or "z" for b in BROKEN]
    seed1 = bench.evaluate(KINDS, BROKEN, perfect, FLAGGED, 10)
    records = [{"dataset": "breaks", "seed": s, **r} for s, rs in ((0, seed0), (1, seed1)) for r in rs]
    summary = {s["kind"]: s for s in bench.summarise(records)}
    spike = summary["spike"]
    assert spike["seeds"] == 2 and spike["rows"] == 2
    assert spike["top1"]["mean"] == pytest.approx(0.75)
    assert spike["top1"]["std"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
    goals = {(g["kind"], g["metric"]): g for g in bench.check_goals(list(summary.values()))}
    assert goals[("spike", "top1")]["met"] is False  # 0.75 < 0.80
    assert goals[("overall", "top2")]["mean"] == pytest.approx((4 / 6 + 1) / 2)
    assert goals[("overall", "top2")]["met"] is True
    lines = bench.goal_lines(list(goals.values()))
    assert "breaks spike top-1 0.750 < 0.80: NOT met" in lines
    text = bench.markdown(list(summary.values()), "breaks")
    assert text.splitlines()[0].split("|")[1].strip() == "kind"
    assert "| spike " in text and "0.750 ± 0.354" in text and "0.100 / 0.200" in text


def test_loaders_give_the_answers_of_each_test_row():
    breaks = bench.load_breaks()
    assert (breaks.kinds != "none").sum() == 200
    assert set(breaks.kinds) == {"none", "spike", "relation", "category"} and breaks.n_columns == 12
    assert ((breaks.broken == "") == (breaks.kinds == "none")).all()
    assert not set(bench.BREAKS_ANSWERS) & set(breaks.test.columns)
    assert list(breaks.train.columns) == list(breaks.test.columns)
    demo = bench.load_demo()
    assert (demo.kinds != "none").sum() == 160 and len(demo.kinds) == len(demo.test) == 2000
    assert demo.n_columns == 12 and "reading_id" in demo.test and "reading_id" not in demo.train
    assert not set(bench.DEMO_ANSWERS) & set(demo.test.columns)
    multi = demo.broken[demo.kinds == "wrong_site_climate"]
    assert all({"ambient_c", "temperature_c"} <= set(bench.names(b)) for b in multi)


def test_demo_that_differs_from_the_generator_is_refused(tmp_path):
    folder = tmp_path / "datasets" / "demo"
    folder.mkdir(parents=True)
    demo = Path(bench.ROOT) / "datasets" / "demo"
    (folder / "telemetry_train.csv").write_bytes((demo / "telemetry_train.csv").read_bytes())
    test = pd.read_csv(demo / "telemetry_test.csv")
    test.loc[0, "label"] = 1 - test.loc[0, "label"]
    test.to_csv(folder / "telemetry_test.csv", index=False)
    with pytest.raises(SystemExit, match="is not what make_telemetry"):
        bench.load_demo(tmp_path)


def test_main_reports_per_dataset_and_the_goals(monkeypatch, tmp_path, capsys):
    """End to end with a stand-in explanation: right on spikes, wrong elsewhere."""
    def explain(case, seed, epochs, attributions):
        top = np.where(case.kinds == "spike", case.broken, "nothing;nowhere")
        assert seed in (0, 1) and epochs == 2 and attributions == ["both"]
        return {"both": case.test.assign(top_columns=top, top_shares="1.00", is_anomaly=case.kinds != "none")}

    monkeypatch.setattr(bench, "explain", explain)
    out = tmp_path / "r.json"
    assert bench.main(["--seeds", "0,1", "--epochs", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "## breaks" in text and "## demo" in text
    assert "breaks spike top-1 1.000 >= 0.80: met" in text
    saved = json.loads(out.read_text())
    goals = {(g["dataset"], g["kind"], g["metric"]): g for g in saved["goals"]}
    assert set(goals) == {("breaks", "spike", "top1"), ("breaks", "overall", "top2"),
                          ("demo", "overall", "top2")}
    assert goals[("breaks", "overall", "top2")]["mean"] == pytest.approx(67 / 200)  # the spikes only
    assert goals[("demo", "overall", "top2")]["mean"] == 0.0
    assert len(saved["results"]) == 2 * (4 + 5)  # seeds x (3 kinds + overall, 4 kinds + overall)


def test_the_ablations_share_by_reconstruction_alone():
    from aaedetect.scoring import PartCalibration, Calibration

    part = PartCalibration()
    cal = Calibration(part, part, part, part, 0.25, 2.0, column_recon=(1.0,), column_neighbor=(2.0,))
    assert bench.attributed(cal, "both") is cal
    assert bench.attributed(cal, "recon").neighbor_weight == 0 and bench.attributed(cal, "recon").column_recon
    assert bench.attributed(cal, "recon-raw").column_recon == ()
    with pytest.raises(SystemExit):
        bench.parse_args(["--attribution", "gradients"])


def test_explanations_that_break_the_contract_are_refused():
    case = bench.load_breaks()
    good = case.test.assign(top_columns=np.where(case.kinds == "none", "", "mode;co2_ppm"),
                            top_shares="0.50;0.20")
    bench.check_explanations(good, case)
    for bad, message in [(good.drop(columns="top_shares"), "returned no top_shares"),
                         (good.assign(top_columns="mode=heating;co2_ppm"), "names mode=heating, not"),
                         (good.assign(top_columns="mode;co2_ppm;building"), "more than 2 names")]:
        with pytest.raises(SystemExit, match=message):
            bench.check_explanations(bad, case)


@pytest.mark.parametrize("argv, message", [
    (["--datasets", "mnist"], "--datasets"),
    (["--seeds", "a,b"], "--seeds"),
    (["--epochs", "0"], "--epochs"),
])
def test_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err
