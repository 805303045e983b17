"""PNG plots of a `duet profile` report (needs matplotlib, the [plot] extra):
tokens/s against the memory budget, llama.cpp beside duet; and the time per token
split into draft, verify and storage reads for every configuration."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from duet.memory import format_size  # noqa: E402


def _budget_positions(runs: list[dict]) -> dict:
    """Budgets in increasing order on evenly spaced x positions, "no limit" last."""
    budgets = sorted({r["budget"] for r in runs if r["budget"] is not None})
    positions = {budget: i for i, budget in enumerate(budgets)}
    positions[None] = len(budgets)
    return positions


def _tick_labels(positions: dict) -> list[str]:
    return [("none" if b is None else format_size(b)) for b, _ in sorted(positions.items(), key=lambda item: item[1])]


def _measured(runs: list[dict]) -> list[dict]:
    return [r for r in runs if "error" not in r]


def plot_tokens_per_second(report: dict, path: Path) -> Path:
    runs = _measured(report["runs"])
    positions = _budget_positions(report["runs"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for tree in sorted({r["tree_size"] for r in runs if r["engine"] == "duet"}, key=lambda t: (t is None, t)):
        points = sorted((positions[r["budget"]], r["tokens_per_second"]) for r in runs
                        if r["engine"] == "duet" and r["tree_size"] == tree)
        ax.plot(*zip(*points), marker="o", label="duet" + (f", tree {tree}" if tree else ""))
    llama = [r for r in runs if r["engine"] == "llama.cpp"]
    if any(r["constrained"] for r in llama) or len(llama) > 1:
        points = sorted((positions[r["budget"]], r["tokens_per_second"]) for r in llama)
        ax.plot(*zip(*points), marker="s", linestyle="--", color="black", label="llama.cpp (memory cgroup)")
    elif llama:
        ax.axhline(llama[0]["tokens_per_second"], linestyle="--", color="black", label="llama.cpp, unconstrained")
    ax.set_xticks(range(len(positions)), _tick_labels(positions))
    ax.set_xlabel("memory budget")
    ax.set_ylabel("decode tokens / s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_time_split(report: dict, path: Path) -> Path:
    """Stacked draft + verify per token (the wall time of a pass), with the IO thread's
    read time as a thin bar beside it: reads overlap verification, so they do not stack."""
    runs = sorted((r for r in _measured(report["runs"]) if r["engine"] == "duet"),
                  key=lambda r: (r["budget"] is None, r["budget"] or 0, r["tree_size"] or 0))
    labels = [("none" if r["budget"] is None else format_size(r["budget"]))
              + (f"\ntree {r['tree_size']}" if r["tree_size"] else "") for r in runs]
    ms = {part: [1e3 * r["time_split"][part] for r in runs] for part in ("draft", "verify", "read")}
    x = range(len(runs))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(runs) + 2), 4.5))
    ax.bar(x, ms["draft"], width=0.55, label="draft")
    ax.bar(x, ms["verify"], width=0.55, bottom=ms["draft"], label="verify (target pass)")
    ax.bar([i + 0.36 for i in x], ms["read"], width=0.12, color="grey", label="storage reads (overlap verify)")
    ax.set_xticks(list(x), labels)
    ax.set_xlabel("memory budget")
    ax.set_ylabel("ms per generated token")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_report(report: dict, out_dir: Path) -> list[Path]:
    """The plots of report, written into out_dir; none when no run succeeded."""
    if not _measured(report["runs"]):
        return []
    written = [plot_tokens_per_second(report, out_dir / "tokens_per_second.png")]
    if any(r["engine"] == "duet" for r in _measured(report["runs"])):
        written.append(plot_time_split(report, out_dir / "time_split.png"))
    return written
