"""Running a benchmark worker under a hard memory limit, cold: a cgroup v1 memory
controller (as root) and the model file's cached pages dropped first."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")


def drop_file_cache(path) -> None:
    """Evicts the file's pages from the page cache, so that a run starts cold."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cgroups_available() -> bool:
    return CGROUP_ROOT.is_dir() and os.access(CGROUP_ROOT, os.W_OK)


def make_cgroup(name: str, limit_bytes: int) -> Path:
    group = CGROUP_ROOT / name
    group.mkdir(exist_ok=True)
    (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
    if (group / "memory.memsw.limit_in_bytes").exists():  # no swap around the limit
        try:
            (group / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        except OSError:
            pass
    (group / "memory.max_usage_in_bytes").write_text("0")
    return group


def remove_cgroup(group: Path) -> None:
    try:
        group.rmdir()
    except OSError:
        pass


def run_worker(args: list[str], limit_bytes: int | None, model_path, timeout: float, name: str) -> dict:
    """Runs `python <args>` (which prints one JSON object last on stdout) cold, in a
    cgroup of limit_bytes when given. Returns its result plus the cgroup's peak, or
    {"error": ...} if it failed or was killed."""
    drop_file_cache(model_path)
    group = make_cgroup(name, limit_bytes) if limit_bytes and cgroups_available() else None

    def enter_cgroup():  # in the child, before exec: everything it loads is charged
        if group:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    try:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                              preexec_fn=enter_cgroup)
        if proc.returncode != 0:
            killed = proc.returncode < 0 or proc.returncode == 137
            result = {"error": "killed (out of memory)" if killed else proc.stderr.strip().splitlines()[-1:]}
        else:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        result = {"error": f"timed out after {timeout:.0f} s"}
    if group:
        result["cgroup_peak"] = int((group / "memory.max_usage_in_bytes").read_text())
        result["cgroup_limit"] = limit_bytes
        remove_cgroup(group)
    return result
