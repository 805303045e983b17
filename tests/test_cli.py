"""The duet command line: `python -m duet ...` in a subprocess, and main() in process."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from duet import cli, models

PYTHON_DIR = str(Path(__file__).resolve().parents[1] / "python")


def run_duet(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DUET_HOME": str(home), "PYTHONPATH": PYTHON_DIR}
    return subprocess.run([sys.executable, "-m", "duet", *args], capture_output=True, text=True, env=env, timeout=120)


def test_models_list_in_a_subprocess(tmp_path):
    result = run_duet("models", "list", home=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    for status in models.list_models():
        (row,) = [r for r in rows if r.startswith(status.name + " ")]
        assert status.role in row and str(tmp_path / Path(status.path).name) in row
        assert row.split()[-2] == "no"  # empty DUET_HOME: nothing downloaded


@pytest.mark.parametrize("args", [("bogus",), ("models",), ("models", "frobnicate")])
def test_bad_usage_is_one_line_on_stderr(tmp_path, args):
    result = run_duet(*args, home=tmp_path)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("duet")


def test_unknown_model_pull_is_one_line_and_exit_1(tmp_path):
    result = run_duet("models", "pull", "no-such-model", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "no-such-model" in result.stderr and "qwen2.5-coder-0.5b" in result.stderr


def test_verbose_shows_the_traceback(tmp_path):
    result = run_duet("--verbose", "models", "pull", "no-such-model", home=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_pull_without_names_fetches_the_default_pair(monkeypatch, tmp_path, capsys):
    pulled = []
    monkeypatch.setattr(models, "pull", lambda name, progress=True: pulled.append((name, progress)) or tmp_path / name)
    assert cli.main(["models", "pull", "--quiet"]) == 0
    assert pulled == [(name, False) for name in models.default_pair()]
    assert capsys.readouterr().out.count(str(tmp_path)) == 2
