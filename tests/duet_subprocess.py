"""Running `python -m duet ...` in a subprocess over tiny models, for the CLI and
profiler tests: the models as fixtures, and the smallest budget a model accepts."""
from __future__ import annotations

import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

import duet
from duet.memory import UNITS
from tiny_models import write_tiny_model

# The subprocess imports the same duet as this process: the installed package under
# `pip install .` (CI), the source tree under PYTHONPATH=python (development).
PACKAGE_PARENT = str(Path(duet.__file__).resolve().parents[1])
INSTALLED = PACKAGE_PARENT in {str(Path(p).resolve()) for p in site.getsitepackages()}


def duet_env(home: Path | None = None) -> dict:
    env = dict(os.environ) if INSTALLED else {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    if home is not None:
        env["DUET_HOME"] = str(home)
    return env


def sigint_default() -> None:
    """preexec_fn: SIGINT acts in the child even where the test runs as a background
    job of a non-interactive shell, which starts it with SIGINT ignored (a Python that
    starts so never raises KeyboardInterrupt)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_duet(*args: str, home: Path | None = None, stdin: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "duet", *args], capture_output=True, text=True,
                          env=duet_env(home), input=stdin, timeout=timeout)


def minimum_budget(*model_args: str) -> int:
    """Bytes: the minimum a 1 KiB budget's refusal names (measured in a fresh duet process,
    so the runtime's own size is that of the process that will run)."""
    result = run_duet("plan", *model_args, "--budget", "1KiB")
    match = re.search(r"needs at least ([0-9.]+) (\w+)", result.stderr)
    assert result.returncode == 1 and match, result.stderr
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    """(target, drafter): one vocabulary, different weights."""
    folder = tmp_path_factory.mktemp("tiny_pair")
    return (write_tiny_model(folder / "tiny.gguf", n_layer=4, seed=1),
            write_tiny_model(folder / "tiny_draft.gguf", n_layer=1, weight_type="Q4_0", seed=1))


@pytest.fixture(scope="session")
def wide_target(tmp_path_factory) -> Path:
    """Four layers of about 8 MB: a budget can fall between "all resident" and
    "nothing resident" with room for the noise in a process's own size."""
    folder = tmp_path_factory.mktemp("wide")
    return write_tiny_model(folder / "wide.gguf", n_layer=4, n_embd=512, n_ff=2048, weight_type="F16", seed=2)


def layer_bytes(model: Path) -> int:
    from duet.config import ModelConfig
    from duet.gguf_file import GGUFFile
    from duet.weight_store import layer_segments

    gguf = GGUFFile(model)
    return max(s.read_bytes for s in layer_segments(gguf, ModelConfig.from_gguf(gguf).n_layer))


def streaming_budget(model: Path, *model_args: str) -> int:
    """A budget that keeps one layer of four resident: a layer above the minimum (no
    layer resident, two buffers), three below everything resident."""
    return minimum_budget("-m", str(model), *model_args) + layer_bytes(model)
