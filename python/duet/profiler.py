"""`duet profile`: how fast duet decodes under each memory budget and draft tree size.

Each configuration runs in a fresh process (`python -m duet.profiler duet CONFIG`), so
that its peak resident memory (VmHWM) is that run's own. The child decodes the prompt
set and prints one JSON line of measurements. llama.cpp (llama-cpp-python, when
installed) runs the same prompts beside it, inside a memory cgroup at each budget when
one can be made, else once without a limit and labelled so.

The report is JSON (everything), a Markdown table and, with matplotlib (the [plot]
extra), PNG plots drawn by duet.profile_plots.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from duet.memory import format_size, parse_size

# Where a source checkout finds the shared HumanEval prompts: <repo>/../shared/data.
DEFAULT_HUMANEVAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "HumanEval.jsonl.gz"
# Used when neither --prompts-file nor HumanEval is there.
FALLBACK_PROMPTS = (
    'def fibonacci(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n',
    'def is_palindrome(text: str) -> bool:\n    """Return True if text reads the same backwards."""\n',
    'def flatten(nested: list) -> list:\n    """Flatten a list of lists into one list."""\n',
)
CHILD_TIMEOUT_S = 3600
SUMMED_STATS = ("generated_tokens", "prompt_tokens", "seconds", "prompt_seconds", "bytes_read", "read_seconds",
                "draft_seconds", "verify_seconds", "decode_seconds", "passes", "drafted", "accepted")


@dataclass
class ProfileRequest:
    target: str | None            # catalog name or path; None: the catalog's target
    draft: str | None             # "default", a name or path; None: target-only
    budgets: list[int | None]     # bytes; None: no limit
    tree_sizes: list[int]         # draft tree nodes; ignored without a drafter
    prompts: list[str]
    max_tokens: int = 64
    threads: int | None = None
    n_ctx: int = 2048
    llama_baseline: bool = True


# ---- inputs ----------------------------------------------------------------------------


def parse_budgets(text: str) -> list[int | None]:
    """'0.6GiB,1GiB,none' -> [644245094, 1073741824, None]."""
    budgets = [None if part.strip().lower() == "none" else parse_size(part) for part in text.split(",") if part.strip()]
    if not budgets:
        raise ValueError("no budgets given (example: --budgets 0.8GiB,1GiB,none)")
    return budgets


def parse_counts(text: str) -> list[int]:
    """'8,24' -> [8, 24]; each at least 1."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"cannot read {text!r} as comma-separated whole numbers (example: 8,24)") from None
    if not counts or min(counts) < 1:
        raise ValueError(f"tree sizes must be whole numbers >= 1, got {text!r}")
    return counts


def load_prompts(path: str | os.PathLike | None, count: int) -> list[str]:
    """The first `count` prompts of a file: JSON lines with a "prompt" field (optionally
    gzipped, like HumanEval) or plain text, one prompt per line. Default: HumanEval
    ($DUET_HUMANEVAL or the shared data folder), else a few built-in prompts."""
    if path is None:
        path = os.environ.get("DUET_HUMANEVAL") or (DEFAULT_HUMANEVAL if DEFAULT_HUMANEVAL.is_file() else None)
        if path is None:
            return list(FALLBACK_PROMPTS[:count])
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    is_jsonl = ".jsonl" in path.suffixes or ".json" in path.suffixes
    prompts = [json.loads(line)["prompt"] if is_jsonl else line.rstrip("\n") for line in lines[:count]]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def configurations(request: ProfileRequest) -> list[dict]:
    """One duet configuration per (budget, tree size); one tree size without a drafter."""
    tree_sizes = request.tree_sizes if request.draft else request.tree_sizes[:1]
    common = {"target": request.target, "draft": request.draft, "prompts": request.prompts,
              "max_tokens": request.max_tokens, "threads": request.threads, "n_ctx": request.n_ctx}
    return [{**common, "engine": "duet", "budget": budget, "tree_size": tree}
            for budget in request.budgets for tree in tree_sizes]


# ---- the sweep (parent process) ---------------------------------------------------------


def run_profile(request: ProfileRequest, progress: bool = True) -> dict:
    """Runs every configuration in its own process; the report as a JSON-ready dict."""
    from tqdm import tqdm

    runs = configurations(request)
    llama = _llama_configurations(request) if request.llama_baseline and _llama_cpp_installed() else []
    rows = []
    with tqdm(total=len(runs) + len(llama), desc="profile", unit="run", disable=not progress) as bar:
        for config in runs + llama:
            bar.set_postfix_str(f"{config['engine']} budget={_budget_label(config['budget'])}")
            rows.append({**_row_key(config), **_measure_in_child(config)})
            bar.update(1)
    return {"request": {k: v for k, v in asdict(request).items() if k != "prompts"},
            "n_prompts": len(request.prompts), "llama_cpp_installed": _llama_cpp_installed(),
            "machine": {"cpus": os.cpu_count(), "platform": sys.platform}, "runs": rows}


def _llama_cpp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _llama_configurations(request: ProfileRequest) -> list[dict]:
    """llama.cpp at each budget when a memory cgroup can be made, else once unconstrained."""
    from duet.memory_cgroup import MemoryCgroup

    base = {"engine": "llama.cpp", "target": request.target, "prompts": request.prompts,
            "max_tokens": request.max_tokens, "threads": request.threads, "n_ctx": request.n_ctx, "tree_size": None}
    probe = MemoryCgroup.create(f"duet-profile-probe-{os.getpid()}", 1 << 40)
    if probe is None:
        return [{**base, "budget": None, "constrained": False}]
    probe.remove()
    return [{**base, "budget": budget, "constrained": budget is not None} for budget in request.budgets]


def _row_key(config: dict) -> dict:
    return {"engine": config["engine"], "budget": config["budget"], "tree_size": config["tree_size"],
            "constrained": config.get("constrained", config["budget"] is not None)}


def _measure_in_child(config: dict) -> dict:
    """Runs one configuration in a fresh interpreter; its JSON line, or an "error"."""
    from duet.memory_cgroup import MemoryCgroup

    group = None
    if config["engine"] == "llama.cpp" and config["budget"] is not None:
        group = MemoryCgroup.create(f"duet-profile-{os.getpid()}-{time.monotonic_ns()}", config["budget"])
        if group is None:
            return {"error": "could not create a memory cgroup"}
        config = {**config, "cgroup": str(group.path)}
    try:
        result = subprocess.run([sys.executable, "-m", "duet.profiler", json.dumps(config)],
                                capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        measured = _child_result(result)
        if group is not None:
            measured["cgroup_peak_memory"] = group.peak_usage()
        return measured
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {CHILD_TIMEOUT_S} s"}
    finally:
        if group is not None:
            group.remove()


def _child_result(result: subprocess.CompletedProcess) -> dict:
    if result.returncode == -9:
        return {"error": "killed (SIGKILL: out of memory)"}
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return {"error": last}
    return json.loads(lines[-1])


# ---- one configuration (child process) ----------------------------------------------------


def _drop_cached_pages(paths: Iterable[Path]) -> None:
    """Start cold: the previous run's pages of the model files leave the page cache."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure_duet(config: dict) -> dict:
    """Decodes the prompts with one Engine; totals over the prompts, memory at its most."""
    from duet.engine import Engine
    from duet.memory import memory_usage
    from duet.models import default_pair, resolve_model

    target, draft = default_pair()
    paths = [resolve_model(config["target"] or target)]
    if config["draft"]:
        paths.append(resolve_model(draft if config["draft"] == "default" else config["draft"]))
    _drop_cached_pages(paths)
    start = time.perf_counter()
    engine = Engine(target=paths[0], draft=paths[1] if config["draft"] else None, budget=config["budget"],
                    threads=config["threads"], n_ctx=config["n_ctx"], max_tree_nodes=config["tree_size"])
    load_seconds = time.perf_counter() - start
    totals = dict.fromkeys(SUMMED_STATS, 0)
    anonymous = file_backed = 0
    with engine:
        for prompt in config["prompts"]:
            for _ in engine.stream(prompt, max_tokens=config["max_tokens"]):
                usage = memory_usage()
                anonymous, file_backed = max(anonymous, usage.anonymous), max(file_backed, usage.file)
            for key in SUMMED_STATS:
                totals[key] += engine.last_stats.get(key, 0)
        streamed_layers = len(engine.plan.streamed) if engine.plan is not None else 0
    return {**_rates(totals, load_seconds), "peak_memory": memory_usage().peak, "anonymous_memory": anonymous,
            "file_memory": file_backed, "streamed_layers": streamed_layers}


def _rates(totals: dict, load_seconds: float) -> dict:
    """Decode rate (prompt processing excluded), bytes read per token, acceptance, and
    the time split per generated token."""
    generated = max(totals["generated_tokens"], 1)
    decode_seconds = totals["seconds"] - totals["prompt_seconds"]
    if not totals["passes"]:  # target-only: all decode time is the target's
        totals["verify_seconds"] = decode_seconds
    return {
        "load_seconds": load_seconds,
        "generated_tokens": totals["generated_tokens"],
        "prompt_tokens": totals["prompt_tokens"],
        "tokens_per_second": totals["generated_tokens"] / decode_seconds if decode_seconds > 0 else 0.0,
        "prompt_seconds": totals["prompt_seconds"],
        "decode_seconds": decode_seconds,
        "bytes_read": totals["bytes_read"],
        "bytes_read_per_token": totals["bytes_read"] / generated,
        "passes": totals["passes"],
        "drafted": totals["drafted"],
        "accepted": totals["accepted"],
        "mean_accepted_per_pass": totals["accepted"] / totals["passes"] if totals["passes"] else None,
        "acceptance_rate": totals["accepted"] / totals["drafted"] if totals["drafted"] else None,
        # seconds per generated token; reads run on the IO thread, overlapping verification
        "time_split": {"draft": totals["draft_seconds"] / generated, "read": totals["read_seconds"] / generated,
                       "verify": totals["verify_seconds"] / generated},
    }


def measure_llama(config: dict) -> dict:
    """Greedy decoding with llama.cpp over the same prompts (inside config["cgroup"] if set)."""
    from duet.memory_cgroup import MemoryCgroup

    if config.get("cgroup"):
        MemoryCgroup.join(config["cgroup"])  # before anything large is allocated or mapped
    import numpy as np

    from duet.llama_baseline import open_llama
    from duet.memory import memory_usage
    from duet.models import default_pair, resolve_model

    path = resolve_model(config["target"] or default_pair()[0])
    _drop_cached_pages([path])
    threads = config["threads"] or os.cpu_count() or 1
    start = time.perf_counter()
    llm = open_llama(path, n_threads=threads, n_threads_batch=threads, n_ctx=config["n_ctx"])
    load_seconds = time.perf_counter() - start
    totals = dict.fromkeys(SUMMED_STATS, 0)
    for prompt in config["prompts"]:
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        begin = time.perf_counter()
        llm.eval(tokens)
        prompt_end = time.perf_counter()
        for i in range(config["max_tokens"]):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            totals["generated_tokens"] += 1
            if token == llm.token_eos() or i == config["max_tokens"] - 1:
                break
            llm.eval([token])
        totals["prompt_tokens"] += len(tokens)
        totals["prompt_seconds"] += prompt_end - begin
        totals["seconds"] += time.perf_counter() - begin
    usage = memory_usage()
    return {**_rates(totals, load_seconds), "peak_memory": usage.peak, "anonymous_memory": usage.anonymous,
            "file_memory": usage.file}


# ---- report ---------------------------------------------------------------------------------


def _budget_label(budget: int | None) -> str:
    return "none" if budget is None else format_size(budget)


def _cell(value, scale: float = 1.0, digits: int = 2) -> str:
    return "" if value is None else f"{value / scale:.{digits}f}"


MARKDOWN_COLUMNS = ("engine", "budget", "tree", "tokens/s", "peak MiB", "anon MiB", "file MiB", "read/token MiB",
                    "accepted/pass", "acceptance", "draft ms/tok", "read ms/tok", "verify ms/tok", "note")


def markdown_table(report: dict) -> str:
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    for row in report["runs"]:
        budget = _budget_label(row["budget"])
        if row["engine"] == "llama.cpp" and not row["constrained"]:
            budget += " (unconstrained)"
        split = row.get("time_split", {})
        cells = [row["engine"], budget, _cell(row["tree_size"], digits=0), _cell(row.get("tokens_per_second")),
                 _cell(row.get("peak_memory"), 2**20, 0), _cell(row.get("anonymous_memory"), 2**20, 0),
                 _cell(row.get("file_memory"), 2**20, 0), _cell(row.get("bytes_read_per_token"), 2**20),
                 _cell(row.get("mean_accepted_per_pass")), _cell(row.get("acceptance_rate")),
                 _cell(split.get("draft"), 1e-3), _cell(split.get("read"), 1e-3), _cell(split.get("verify"), 1e-3),
                 _note(row)]
        lines.append("| " + " | ".join(cells) + " |")
    request = report["request"]
    header = (f"# duet profile\n\n{report['n_prompts']} prompts, {request['max_tokens']} tokens each, "
              f"threads {request['threads'] or 'all'}, context {request['n_ctx']}. tokens/s is the decode rate "
              f"(prompt processing excluded); the time split is per generated token, and reads run on the IO "
              f"thread, overlapping verification.\n")
    return header + "\n" + "\n".join(lines) + "\n"


def _note(row: dict) -> str:
    if "error" in row:
        return row["error"]
    charged = row.get("cgroup_peak_memory")
    return f"cgroup charged at most {charged / 2**20:.0f} MiB" if charged else ""


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """profile.json, profile.md and, with matplotlib, the PNG plots; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "profile.json", out_dir / "profile.md"]
    written[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    written[1].write_text(markdown_table(report), encoding="utf-8")
    if not plotting_available():
        return written
    from duet import profile_plots

    return written + profile_plots.plot_report(report, out_dir)


def plotting_available() -> bool:
    """matplotlib is the optional [plot] extra."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _child_main(config_json: str) -> int:
    config = json.loads(config_json)
    measure = measure_duet if config["engine"] == "duet" else measure_llama
    print(json.dumps(measure(config)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_child_main(sys.argv[1]))
    except Exception as exc:  # the parent records the last stderr line as the run's error
        print(f"{type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(1)
