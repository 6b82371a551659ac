"""The README's "In a pipeline" examples run as written (from a folder laid out like the repository
after `make demo`). Slow: they train on the demo data."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pipeline_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## In a pipeline"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_its_examples():
    blocks = pipeline_blocks()
    assert len(blocks) == 5
    assert any("GridSearchCV" in b for b in blocks) and any("aae_spark.score" in b for b in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(5))
def test_pipeline_example_runs_as_written(index, tmp_path_factory):
    work = tmp_path_factory.getbasetemp() / "readme"
    if not (work / "demo-model").exists():
        work.mkdir(exist_ok=True)
        (work / "datasets").symlink_to(ROOT / "datasets")
        subprocess.run([sys.executable, "-m", "aaedetect_cli", "fit", "datasets/demo/telemetry_train.csv",
                        "-o", "demo-model", "-q"], cwd=work, check=True)
    block = pipeline_blocks()[index]
    if "pyspark" in block:
        pytest.importorskip("pyspark")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    run = subprocess.run([sys.executable, "-c", block], cwd=work, capture_output=True, text=True,
                         env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
