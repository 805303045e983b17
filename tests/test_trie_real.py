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
