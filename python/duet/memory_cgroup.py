"""A memory cgroup (v1) that caps another program, llama.cpp in the profiler, at a
budget: the kernel charges its anonymous memory and its page cache to the group and
reclaims (or kills it) at the limit. Needs root and a cgroup v1 memory hierarchy;
where either is missing, `MemoryCgroup.create` returns None and the caller runs the
program unconstrained."""
from __future__ import annotations

import os
from pathlib import Path

MEMORY_HIERARCHY = Path("/sys/fs/cgroup/memory")


class MemoryCgroup:
    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, name: str, limit_bytes: int) -> "MemoryCgroup | None":
        """A new group limited to limit_bytes, or None where cgroups cannot be made."""
        if not (MEMORY_HIERARCHY / "memory.limit_in_bytes").exists():
            return None
        path = MEMORY_HIERARCHY / name
        try:
            path.mkdir()
        except OSError:
            return None
        group = cls(path)
        try:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            # With swap, anonymous pages could leave the group's RAM; the same cap on
            # RAM + swap keeps the limit a limit of memory use (absent without swap accounting).
            memsw = path / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(limit_bytes))
        except OSError:
            group.remove()
            return None
        return group

    @staticmethod
    def join(path: str | os.PathLike) -> None:
        """Moves the calling process into the group at path (before it allocates)."""
        Path(path, "cgroup.procs").write_text(str(os.getpid()))

    def peak_usage(self) -> int | None:
        """Bytes: the most ever charged to the group (anonymous + page cache). File pages
        another group already holds are not charged here, so on a shared machine this
        can be below the process's own VmHWM."""
        try:
            return int((self.path / "memory.max_usage_in_bytes").read_text())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Deletes the group; its processes must have ended."""
        try:
            self.path.rmdir()
        except OSError:
            pass
