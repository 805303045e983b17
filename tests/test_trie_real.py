"""Trie drafts on the real pair (marked real: needs the pulled models and
llama-cpp-python, as the other real tests): greedy output identical to target-only
decoding on HumanEval prompts, for target + trie and for the merged drafter."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.real

HUMANEVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "HumanEval.jsonl.gz"
N_PROMPTS = 3
N_TOKENS = 48


@pytest.fixture(scope="module")
def pair():
    pytest.importorskip("llama_cpp")
    from duet import _core
    from duet.gguf_file import GGUFFile
    from duet.model import Model
    from duet.models import ModelNotFoundError, resolve_model
    from duet.tokenizer import Tokenizer

    try:
        target_path, small_path = resolve_model("qwen2.5-coder-1.5b"), resolve_model("qwen2.5-coder-0.5b")
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    if not HUMANEVAL.exists():
        pytest.skip(f"HumanEval prompts not found at {HUMANEVAL}")
    pool = _core.ThreadPool(2)
    target = Model(GGUFFile(target_path), pool)
    return target, Model(GGUFFile(small_path), pool), Tokenizer.from_metadata(target.gguf.metadata)


def prompts(tokenizer) -> list[list[int]]:
    """Chat requests to copy a HumanEval prompt's code, so the trie has something to find."""
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as f:
        codes = [json.loads(line)["prompt"] for line in f][:N_PROMPTS]
    return [tokenizer.encode(tokenizer.apply_chat_template(
        [{"role": "user", "content": f"Return this code unchanged:\n```python\n{code}```"}])) for code in codes]


def test_trie_and_merged_match_target_only(pair):
    from duet.generate import decode_tokens
    from duet.ngram_store import NGramStore
    from duet.policy import FallbackPolicy
    from duet.sampling import Sampler
    from duet.speculative import SpeculativeStats, TreeDrafter, TreeVerifier, speculative_generate
    from duet.trie_drafter import MergedDrafter, TrieDrafter

    target, small, tokenizer = pair
    stop = tokenizer.is_end_of_generation
    trie_accepted = 0
    for prompt in prompts(tokenizer):
        n_ctx = len(prompt) + N_TOKENS + 40
        expected = list(decode_tokens(target, target.new_cache(n_ctx), prompt, N_TOKENS, Sampler(temperature=0), stop))
        drafters = {"trie": TrieDrafter(NGramStore(), max_nodes=8),
                    "merged": MergedDrafter(TreeDrafter(small, small.new_cache(n_ctx)),
                                            TrieDrafter(NGramStore(), max_nodes=8))}
        for name, drafter in drafters.items():
            stats = SpeculativeStats()
            out = [t for t, _ in speculative_generate(TreeVerifier(target, target.new_cache(n_ctx)), drafter, prompt,
                                                      N_TOKENS, FallbackPolicy(max_nodes=16), stop, stats=stats)]
            assert out == expected, name
            trie_accepted += stats.accepted_by_source.get("trie", 0)
    assert trie_accepted > 0


# Runs in a fresh interpreter (a budget limits a whole process's peak): the merged
# drafter under 1 GiB, parked for the second request and back for the third.
PARKING_WORKER = """
import json, sys
from duet.engine import Engine
prompts, n_tokens = json.loads(sys.stdin.read())
with Engine(threads=2, n_ctx=1024, budget="1GiB", trie=True) as engine:
    # Switched here only, both ways: the rule has its own tests.
    engine.parking.min_rounds = engine.parking.min_parked_rounds = 10 ** 9
    runs = []
    for i, prompt in enumerate(prompts):
        if i == 1 and not engine.parking.parked:
            engine.parking.park()
        if i == 2 and engine.parking.parked:
            engine.parking.unpark()
        result = engine.generate(prompt, max_tokens=n_tokens)
        runs.append({"tokens": result.tokens, "parked": result.stats["drafter_parked"],
                     "by_source": result.stats["accepted_by_source"]})
    print(json.dumps({"runs": runs, "peak": result.stats["peak_memory"], "budget": engine.budget}))
"""


def test_merged_under_a_budget_parks_and_comes_back_with_the_same_text(pair):
    import subprocess
    import sys

    from duet.generate import decode_tokens
    from duet.sampling import Sampler

    target, _, tokenizer = pair
    requests = prompts(tokenizer)
    expected = [list(decode_tokens(target, target.new_cache(1024), p, N_TOKENS, Sampler(temperature=0),
                                   tokenizer.is_end_of_generation)) for p in requests]
    proc = subprocess.run([sys.executable, "-c", PARKING_WORKER], input=json.dumps([requests, N_TOKENS]),
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [run["tokens"] for run in result["runs"]] == expected
    assert result["runs"][1]["parked"] and not result["runs"][2]["parked"]
    assert set(result["runs"][1]["by_source"]) <= {"trie"}
    assert result["runs"][2]["by_source"].get("draft", 0) > 0  # the drafter back at work
    assert result["peak"] <= result["budget"]
