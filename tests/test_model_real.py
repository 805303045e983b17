"""Parity with llama.cpp on the default model pair (marked real: needs the pulled
models and llama-cpp-python)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from duet.incremental_tokenizer import common_prefix_length
from llama_reference import plain_llama

pytestmark = pytest.mark.real

MODELS = ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
HUMANEVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "HumanEval.jsonl.gz"
N_PROMPTS = 20
N_TOKENS = 64


def humaneval_prompts(n: int) -> list[str]:
    if not HUMANEVAL.exists():
        pytest.skip(f"HumanEval prompts not found at {HUMANEVAL}")
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for line in f][:n]


@pytest.fixture(scope="module", params=MODELS)
def pair(request):
    """(duet model, tokenizer, llama.cpp on its plain path) over the same file."""
    from duet import _core
    from duet.gguf_file import GGUFFile
    from duet.model import Model
    from duet.models import ModelNotFoundError, resolve_model
    from duet.tokenizer import Tokenizer

    try:
        path = resolve_model(request.param)
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    gguf = GGUFFile(path)
    llm = plain_llama(path)
    return Model(gguf, _core.ThreadPool(2)), Tokenizer.from_metadata(gguf.metadata), llm


def duet_greedy(model, prompt: list[int], n: int) -> tuple[list[int], np.ndarray]:
    cache = model.new_cache(len(prompt) + n + 1)
    logits = model.prefill(prompt, cache)
    first = logits.copy()
    out = []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = model.forward([out[-1]], cache)[0]
    return out, first


def llama_greedy(llm, prompt: list[int], n: int) -> tuple[list[int], np.ndarray]:
    llm.reset()
    llm.eval(prompt)
    first = np.array(llm.scores[llm.n_tokens - 1])
    out = []
    for _ in range(n):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out, first


def test_greedy_tokens_match_llama_cpp(pair, record_property):
    """64 greedy tokens equal llama.cpp's on at least 19 of 20 prompts, and the logits
    at the end of every prompt are its own, bit for bit. Against llama.cpp's plain path: its default
    repacks Q4_K weights for kernels of yet another rounding (bench/bench_parity.py
    measures both)."""
    model, tokenizer, llm = pair
    prefixes, max_diffs = [], []
    for text in humaneval_prompts(N_PROMPTS):
        prompt = tokenizer.encode(text)
        ours, our_logits = duet_greedy(model, prompt, N_TOKENS)
        theirs, their_logits = llama_greedy(llm, prompt, N_TOKENS)
        assert np.argmax(our_logits) == np.argmax(their_logits), "top-1 differs at the last prompt position"
        max_diffs.append(float(np.max(np.abs(our_logits - their_logits))))
        prefixes.append(common_prefix_length(ours, theirs))
    exact = sum(p == N_TOKENS for p in prefixes)
    record_property("token_exact_prompts", exact)
    record_property("max_abs_logit_diff", max(max_diffs))
    print(f"\n{model.gguf.path.name}: {exact}/{N_PROMPTS} prompts token-exact, mean common prefix "
          f"{np.mean(prefixes):.1f}/{N_TOKENS}; last-position logits max |diff| {max(max_diffs):.4f}")
    assert max(max_diffs) == 0.0, "the prompt pass should give llama.cpp's logits bit for bit"
    assert exact >= N_PROMPTS - 1


@pytest.mark.parametrize("name", MODELS)
def test_prompt_and_decode_steps_bit_identical_to_llama_cpp(name):
    """A 24-token prompt in one batch, then 16 greedy steps: every logit, at every
    prompt position and every step, equals llama.cpp's plain path bit for bit. Same
    activation quantization, RoPE rounding, exp, attention sums (in the prompt
    batch's order and in the decode order) and K-quant products (llama.cpp's tiled
    matmul order for a batch of 8 or more prompt tokens, vec_dot's for a step)."""
    from duet import _core
    from duet.gguf_file import GGUFFile
    from duet.model import Model
    from duet.models import ModelNotFoundError, resolve_model

    try:
        path = resolve_model(name)
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    llm = plain_llama(path, n_ctx=256)
    model = Model(GGUFFile(path), _core.ThreadPool(2))
    prompt = llm.tokenize(b"def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", add_bos=False)
    assert len(prompt) >= 8
    cache = model.new_cache(len(prompt) + 17)
    llm.eval(prompt)
    ours = model.forward(prompt, cache, logits_rows="all", prompt=True)
    np.testing.assert_array_equal(ours, np.array(llm.scores[:len(prompt)]), err_msg="prompt logits")
    token = [int(np.argmax(ours[-1]))]
    for step in range(16):
        llm.eval(token)
        theirs = np.array(llm.scores[llm.n_tokens - 1])
        ours = model.forward(token, cache)[0]
        np.testing.assert_array_equal(ours, theirs, err_msg=f"step {step}")
        token = [int(np.argmax(theirs))]


def perplexity(logits: np.ndarray, tokens: list[int]) -> float:
    """exp(mean NLL) of tokens[1:] given logits rows 0..n-2."""
    logits = logits[:-1].astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(np.exp(-np.mean(logp[np.arange(len(tokens) - 1), tokens[1:]])))


def test_perplexity_within_one_percent_of_llama_cpp(pair):
    model, tokenizer, llm = pair
    tokens = tokenizer.encode("\n".join(humaneval_prompts(40)))[:512]
    cache = model.new_cache(len(tokens))
    ours = perplexity(model.forward(tokens, cache, logits_rows="all", prompt=True), tokens)
    llm.reset()
    llm.eval(tokens)
    theirs = perplexity(np.array(llm.scores[: len(tokens)]), tokens)
    print(f"\nperplexity duet {ours:.4f} llama.cpp {theirs:.4f}")
    assert abs(ours - theirs) / theirs < 0.01
