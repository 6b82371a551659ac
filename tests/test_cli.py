"""The command line, through click's runner and once as a real process."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from aaedetect_cli.main import main

SCORES = ["anomaly_score", "recon_score", "latent_score", "neighbor_score", "is_anomaly"]


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def assert_error(result, code, *fragments):
    """One `error:` line on stderr naming what is wrong, the class's exit code, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    """A model fitted through the CLI on the shared small table."""
    from conftest import make_table

    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "train.csv"
    make_table().to_csv(data, index=False)
    result = run("fit", data, "-o", tmp / "model", "--epochs", 3, "--exclude", "code")
    assert result.exit_code == 0, result.stderr
    return tmp / "model"


def test_help_explains_every_option():
    for command in ([], ["fit"], ["score"], ["evaluate"], ["info"]):
        result = run(*command, "--help")
        assert result.exit_code == 0
        for param in (main.commands[command[0]].params if command else []):
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in result.output
            if param.param_type_name == "option":
                assert param.help, f"{command} {param.name} has no help"
    assert "Exit codes" in run("--help").output


def test_fit_summary_and_model_files(cli_model):
    assert sorted(p.name for p in cli_model.iterdir()) == ["manifest.json", "model.onnx", "weights.npz"]


def test_fit_warns_about_left_out_columns(tmp_path, csv_file):
    result = run("fit", csv_file, "-o", tmp_path / "m", "--epochs", 2)
    assert result.exit_code == 0, result.stderr
    assert "warning: column 'id' left out: looks like an identifier" in result.stderr
    assert "warning: column 'const' left out: constant" in result.stderr
    assert "trained on" in result.stderr and str(tmp_path / "m") in result.stderr


def test_score_passes_input_through_untouched(cli_model, tmp_path):
    data = tmp_path / "in.csv"
    data.write_text("note,a,b,c,kind,id,const\n"
                    "  keep  ,10.000,35.0,,red,007,x\n"
                    "\"a,b\",1e1,-25,0.5,purple,,\n")
    out = tmp_path / "out.csv"
    result = run("score", data, "-m", cli_model, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "scored 2 rows" in result.stderr and str(out) in result.stderr
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    original = pd.read_csv(data, dtype=str, keep_default_na=False)
    assert list(back.columns) == list(original.columns) + SCORES
    pd.testing.assert_frame_equal(back[original.columns], original)


def test_score_to_stdout_and_from_stdin(cli_model, csv_file):
    result = run("score", "-", "-m", cli_model, input=csv_file.read_text())
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(",".join(SCORES))
    assert len(lines) == 1 + 300


def test_score_to_parquet_with_labels(cli_model, csv_file, tmp_path):
    df = pd.read_csv(csv_file)
    df["label"] = (df.index % 10 == 0).astype(int)
    data = tmp_path / "labelled.csv.gz"
    df.to_csv(data, index=False)
    out = tmp_path / "out.parquet"
    result = run("score", data, "-m", cli_model, "-o", out, "--label", "label", "--chunk-rows", 64)
    assert result.exit_code == 0, result.stderr
    scored = pd.read_parquet(out)
    assert len(scored) == 300 and list(scored.columns[-5:]) == SCORES
    assert "against column 'label': anomalies 30, auroc" in result.stderr


def test_header_only_file_gives_header_only_output(cli_model, tmp_path):
    data = tmp_path / "empty.csv"
    data.write_text("a,b,c,kind\n")
    result = run("score", data, "-m", cli_model)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "a,b,c,kind," + ",".join(SCORES)


def test_info(cli_model):
    result = run("info", "-m", cli_model)
    assert result.exit_code == 0, result.stderr
    for text in ("numeric (mean ", "categorical", "kind", "threshold", "excluded by option: code",
                 "training rows kept in the model"):
        assert text in result.stdout
    assert '"format": "aaedetect-model"' in run("info", "-m", cli_model, "--json").stdout


def test_missing_column(cli_model, tmp_path):
    data = tmp_path / "in.csv"
    data.write_text("a,b,c\n1,2,3\n")
    out = tmp_path / "out.csv"
    assert_error(run("score", data, "-m", cli_model, "-o", out), 3, str(data), "'kind'")
    assert not out.exists()
    assert os.listdir(tmp_path) == ["in.csv"]


def test_text_in_numeric_column_names_line(cli_model, tmp_path):
    data = tmp_path / "in.csv"
    data.write_text("a,b,c,kind\n1,2,3,red\n1,two,3,red\n")
    assert_error(run("score", data, "-m", cli_model), 3, str(data), "column 'b'", "line 3", "'two'")


def test_missing_input_file(cli_model, tmp_path):
    assert_error(run("score", tmp_path / "nope.csv", "-m", cli_model), 5, "nope.csv", "no such file")


def test_bad_model_dir(tmp_path, csv_file):
    assert_error(run("score", csv_file, "-m", tmp_path), 4, str(tmp_path), "manifest.json")
    assert_error(run("info", "-m", tmp_path), 4, "manifest.json")


def test_bad_option_values(tmp_path, csv_file):
    assert_error(run("fit", csv_file, "-o", tmp_path / "m", "--prior", "cauchy"), 2, "prior")
    assert_error(run("fit", csv_file, "-o", tmp_path / "m", "--epochs", "many"), 2, "--epochs")
    assert_error(run("fit", csv_file, "-o", tmp_path / "m", "--exclude", "nope"), 3, "'nope'")
    assert_error(run("fit", csv_file), 2, "-o")
    assert_error(run("frobnicate"), 2, "frobnicate")
    assert not (tmp_path / "m").exists()


def test_existing_model_needs_force(cli_model, csv_file):
    before = (cli_model / "manifest.json").read_bytes()
    assert_error(run("fit", csv_file, "-o", cli_model, "--epochs", 1), 5, "--force")
    assert (cli_model / "manifest.json").read_bytes() == before


def test_debug_shows_traceback(tmp_path):
    result = run("score", tmp_path / "nope.csv", "-m", tmp_path, "--debug")
    assert result.exit_code == 5 and "Traceback" in result.stderr


def test_real_process(tmp_path, csv_file):
    """The installed console script, as a user runs it: fit, then score to stdout."""
    exe = [sys.executable, "-m", "aaedetect_cli"]
    fit = subprocess.run([*exe, "fit", str(csv_file), "-o", str(tmp_path / "m"), "--epochs", "2"],
                         capture_output=True, text=True)
    assert fit.returncode == 0, fit.stderr
    score = subprocess.run([*exe, "score", str(csv_file), "-m", str(tmp_path / "m")],
                           capture_output=True, text=True)
    assert score.returncode == 0, score.stderr
    assert len(score.stdout.splitlines()) == 301
    assert score.stderr.strip().splitlines()[-1].startswith("scored 300 rows")
    bad = subprocess.run([*exe, "score", str(tmp_path / "nope.csv"), "-m", str(tmp_path / "m")],
                         capture_output=True, text=True)
    assert bad.returncode == 5 and bad.stderr.startswith("error: ") and bad.stdout == ""


def test_the_program_ends_without_teardown_but_with_everything_done(tmp_path, csv_file, cli_model):
    """`aaedetect` (cli.main.run) skips the interpreter's teardown, not the exit code, the atexit
    handlers or the last of stdout."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('atexit ran\\n'))\n"
            "sys.argv = ['aaedetect', *sys.argv[1:]]\n"
            "from aaedetect_cli.main import run\n"
            "run()\n")
    done = subprocess.run([sys.executable, "-c", code, "score", str(csv_file), "-m", str(cli_model)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 301 and done.stdout.endswith("\n")
    assert done.stderr.splitlines()[-1] == "atexit ran"
    bad = subprocess.run([sys.executable, "-c", code, "score", str(tmp_path / "nope.csv"), "-m", str(cli_model)],
                         capture_output=True, text=True)
    assert bad.returncode == 5 and bad.stderr.splitlines() == [f"error: {tmp_path / 'nope.csv'}: no such file",
                                                              "atexit ran"]


def test_warnings_are_counted_over_the_whole_file(cli_model, tmp_path):
    data = tmp_path / "in.csv"
    rows = "".join(f"{i},{3 * i},{'' if i % 2 else 0.5},{'purple' if i % 3 == 0 else 'red'}\n" for i in range(30))
    data.write_text("a,b,c,kind\n" + rows + "inf,1,1,red\n")
    result = run("score", data, "-m", cli_model, "--chunk-rows", 4)
    assert result.exit_code == 0, result.stderr
    warnings = [l for l in result.stderr.splitlines() if l.startswith("warning:")]
    assert sorted(warnings) == [
        f"warning: {data}: column 'a' has 1 infinite value(s); scored as beyond any training value",
        f"warning: {data}: column 'kind' has 10 value(s) not seen in training"]


def test_epochs_auto_is_resolved_from_the_table_and_recorded(tmp_path, csv_file):
    result = run("fit", csv_file, "-o", tmp_path / "m", "--epochs", "auto", "--patience", 1)
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["options"]["max_epochs"] == "auto"
    assert manifest["training"]["max_epochs"] == 100  # a small table: the full 100
    assert manifest["training"]["epochs_run"] < 100   # patience 1 stops it long before


def test_fit_max_rows_trains_on_a_seeded_sample(tmp_path):
    from conftest import make_table

    data = tmp_path / "big.csv"
    make_table(600, seed=2).to_csv(data, index=False)
    result = run("fit", data, "-o", tmp_path / "m", "--epochs", 2, "--max-rows", 200, "--seed", 5)
    assert result.exit_code == 0, result.stderr
    assert "training on a uniform sample of 200 of its 600 rows (--max-rows, seed 5)" in result.stderr
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["training"]["rows"] + manifest["training"]["validation_rows"] == 200
    again = run("fit", data, "-o", tmp_path / "m2", "--epochs", 2, "--max-rows", 200, "--seed", 5)
    assert again.exit_code == 0, again.stderr
    same = json.loads((tmp_path / "m2" / "manifest.json").read_text())
    assert same["calibration"] == manifest["calibration"] and same["threshold"] == manifest["threshold"]
    # a file with fewer rows than --max-rows is read whole, without a word about sampling
    whole = run("fit", data, "-o", tmp_path / "m3", "--epochs", 2, "--max-rows", 1000)
    assert whole.exit_code == 0 and "sample" not in whole.stderr
    assert_error(run("fit", data, "-o", tmp_path / "m4", "--max-rows", 1), 2, "--max-rows")


def test_fit_small_table_warns_on_one_line(tmp_path):
    data = tmp_path / "small.csv"
    pd.DataFrame({"a": range(12), "b": [i % 3 for i in range(12)]}).to_csv(data, index=False)
    result = run("fit", data, "-o", tmp_path / "m", "--epochs", 2)
    assert result.exit_code == 0, result.stderr
    assert "small.csv: only 12 rows, too few to hold any out" in result.stderr
    assert result.stderr.count("warning: ") == 1
    assert "(0 held out)" in result.stderr
