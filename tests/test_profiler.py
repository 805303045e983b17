"""duet profile on tiny models: every configuration runs in its own process, the report
is JSON + Markdown (+ PNG plots with matplotlib), a streaming budget shows its reads."""
from __future__ import annotations

import gzip
import json

import pytest

from duet import profiler
from duet.memory import parse_size
from duet_subprocess import run_duet, streaming_budget, tiny_pair, wide_target  # noqa: F401 (fixtures)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_FIELDS = ("engine", "budget", "tree_size", "tokens_per_second", "peak_memory", "anonymous_memory", "file_memory",
              "bytes_read_per_token", "mean_accepted_per_pass", "acceptance_rate", "time_split", "generated_tokens")


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("def below_zero(operations):\nclass Counter:\n", encoding="utf-8")
    return path


def test_profile_command_writes_json_markdown_and_plots(tiny_pair, prompts_file, tmp_path):
    target, draft = tiny_pair
    out = tmp_path / "out"
    result = run_duet("profile", "-m", str(target), "-md", str(draft), "--budgets", "2GiB,none", "--tree-sizes", "4",
                      "--prompts-file", str(prompts_file), "-n", "6", "-c", "256", "-t", "1", "--no-llama", "-q",
                      "-o", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "profile.json").read_text())
    runs = report["runs"]
    assert [(r["engine"], r["budget"], r["tree_size"]) for r in runs] == [("duet", 2 << 30, 4), ("duet", None, 4)]
    for run in runs:
        assert "error" not in run, run
        assert all(field in run for field in RUN_FIELDS)
        assert run["generated_tokens"] == 2 * 6 and run["tokens_per_second"] > 0
        assert run["anonymous_memory"] > 0 and run["file_memory"] > 0
        assert run["anonymous_memory"] <= run["peak_memory"]
        assert run["passes"] > 0 and 0 <= run["acceptance_rate"] <= 1
        assert set(run["time_split"]) == {"draft", "read", "verify"} and run["time_split"]["draft"] > 0
        assert run["bytes_read_per_token"] == 0  # both budgets hold everything
    table = (out / "profile.md").read_text()
    assert table.count("\n| duet |") == 2
    pytest.importorskip("matplotlib")
    import matplotlib.image

    for name in ("tokens_per_second.png", "time_split.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_streaming_budget_reads_and_small_budget_is_recorded(wide_target, prompts_file):
    budget = streaming_budget(wide_target, "--no-draft", "-c", "256")
    request = profiler.ProfileRequest(target=str(wide_target), draft=None, budgets=[1024, budget], tree_sizes=[8],
                                      prompts=profiler.load_prompts(prompts_file, 1), max_tokens=6, threads=1,
                                      n_ctx=256, llama_baseline=False)
    report = profiler.run_profile(request, progress=False)
    too_small, streaming = report["runs"]
    assert "at least" in too_small["error"]
    assert "error" not in streaming, streaming
    assert streaming["streamed_layers"] == 3
    assert streaming["bytes_read_per_token"] > 0 and streaming["time_split"]["read"] > 0
    assert streaming["passes"] == 0 and streaming["mean_accepted_per_pass"] is None  # target-only


def test_report_without_matplotlib_is_json_and_markdown(monkeypatch, tmp_path):
    monkeypatch.setattr(profiler, "plotting_available", lambda: False)
    report = {"request": {"max_tokens": 4, "threads": 1, "n_ctx": 64}, "n_prompts": 1,
              "runs": [{"engine": "duet", "budget": None, "tree_size": 8, "constrained": False, "error": "boom"}]}
    written = profiler.write_report(report, tmp_path)
    assert [p.name for p in written] == ["profile.json", "profile.md"]
    assert json.loads(written[0].read_text()) == report
    assert "| duet | none | 8 |" in written[1].read_text() and "boom" in written[1].read_text()


def test_budget_and_tree_size_lists():
    assert profiler.parse_budgets("0.5GiB, 800MiB ,none") == [parse_size("0.5GiB"), 800 << 20, None]
    assert profiler.parse_counts("8,24") == [8, 24]
    for bad in ("", "8,x", "0"):
        with pytest.raises(ValueError):
            profiler.parse_counts(bad)
    with pytest.raises(ValueError):
        profiler.parse_budgets("1GiB,lots")


def test_prompts_from_jsonl_gz_and_text(tmp_path):
    humaneval = tmp_path / "he.jsonl.gz"
    with gzip.open(humaneval, "wt", encoding="utf-8") as f:
        for i in range(5):
            f.write(json.dumps({"task_id": i, "prompt": f"def f{i}():\n    pass\n"}) + "\n")
    assert profiler.load_prompts(humaneval, 2) == ["def f0():\n    pass\n", "def f1():\n    pass\n"]
    text = tmp_path / "prompts.txt"
    text.write_text("one\n\ntwo\nthree\n")
    assert profiler.load_prompts(text, 5) == ["one", "two", "three"]


def test_configurations_cross_budgets_and_tree_sizes():
    request = profiler.ProfileRequest(target="t", draft="d", budgets=[1 << 30, None], tree_sizes=[8, 24],
                                      prompts=["p"])
    assert [(c["budget"], c["tree_size"]) for c in profiler.configurations(request)] == \
        [(1 << 30, 8), (1 << 30, 24), (None, 8), (None, 24)]
    request.draft = None  # without a drafter the tree size means nothing: one run per budget
    assert len(profiler.configurations(request)) == 2


def test_llama_cpp_baseline_runs_beside_duet(tiny_pair, prompts_file):
    pytest.importorskip("llama_cpp")
    from duet.memory_cgroup import MEMORY_HIERARCHY

    request = profiler.ProfileRequest(target=str(tiny_pair[0]), draft=None, budgets=[2 << 30, None], tree_sizes=[8],
                                      prompts=profiler.load_prompts(prompts_file, 1), max_tokens=6, threads=1,
                                      n_ctx=256)
    runs = profiler.run_profile(request, progress=False)["runs"]
    llama = [r for r in runs if r["engine"] == "llama.cpp"]
    assert llama and all("error" not in r for r in llama), llama
    assert all(r["tokens_per_second"] > 0 and r["generated_tokens"] > 0 for r in llama)
    # Under a cgroup, one run per budget; without one, a single unconstrained run.
    assert [r["budget"] for r in llama] in ([2 << 30, None], [None])
    for run in llama:
        if run["constrained"]:  # what the kernel charged to the group stayed under its limit
            assert 0 < run["cgroup_peak_memory"] <= run["budget"]
    assert not list(MEMORY_HIERARCHY.glob("duet-profile-*"))  # the groups are removed afterwards
