"""Memory accounting of this process: what the budget is checked against. Bytes."""
from __future__ import annotations

import mmap
import re
from dataclasses import dataclass

UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
         "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


@dataclass(frozen=True)
class MemoryUsage:
    rss: int        # resident now: anonymous + file-backed + shared
    anonymous: int  # RssAnon: heap, buffers, KV caches
    file: int       # RssFile: mapped file pages (model weights via mmap)
    peak: int       # VmHWM: the most resident at any moment so far


def anonymous_map(nbytes: int) -> mmap.mmap:
    """Zeroed memory in a mapping of its own rather than from the allocator: its
    pages are resident only once written, and they go back to the system when the
    map is dropped or madvised away (heap memory a few MB large may stay in the
    process after it is freed, below glibc's largest mmap threshold of 32 MiB)."""
    return mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE)


def parse_size(text: str | int) -> int:
    """'1GiB', '800M', '1.5g', 1073741824 -> bytes. Binary units: budgets are RAM."""
    if isinstance(text, int):
        size = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if not match or match.group(2).lower() not in UNITS:
            raise ValueError(f"cannot read {text!r} as a size (examples: 1GiB, 800MiB, 1.5G)")
        size = int(float(match.group(1)) * UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return size


def format_size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _proc_status() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[key] = int(parts[0]) * 1024
    return fields


def memory_usage() -> MemoryUsage:
    """RSS from psutil; the anonymous/file split and the peak from /proc, which psutil
    does not report. Either source alone is enough (psutil fails on some Androids)."""
    try:
        status = _proc_status()
    except OSError:
        status = {}
    try:
        import psutil

        info = psutil.Process().memory_info()
        rss, shared = info.rss, getattr(info, "shared", 0)
    except Exception:  # psutil missing or refused: /proc alone
        if "VmRSS" not in status:
            raise OSError("cannot read this process's memory use (no psutil, no /proc/self/status)")
        rss, shared = status["VmRSS"], status.get("RssFile", 0)
    return MemoryUsage(rss=rss, anonymous=status.get("RssAnon", max(rss - shared, 0)),
                       file=status.get("RssFile", shared), peak=max(status.get("VmHWM", rss), rss))


def peak_memory() -> int:
    """The process's peak resident bytes so far, cheaply (once per token)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return memory_usage().peak


def reset_peak() -> bool:
    """Restarts VmHWM from the current RSS (Linux 4.0+); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False
