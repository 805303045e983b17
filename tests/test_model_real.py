"""Parity with llama.cpp on the default model pair (marked real: needs the pulled
models and llama-cpp-python)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from duet.incremental_tokenizer import common_prefix_length

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
    """(duet model, tokenizer, llama.cpp model) over the same file."""
    llama_cpp = pytest.importorskip("llama_cpp")
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
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_batch=512, n_threads=2, logits_all=True,
                          verbose=False)
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
    """Top-1 at the end of every prompt equals llama.cpp's, and the greedy
    continuations share long prefixes. Exact 64-token agreement is recorded, not
    asserted at 19/20: our decode steps are llama.cpp's bit for bit (next test), but
    its prompt pass runs other matmul kernels than its decode (and by default it
    repacks the weights for yet others), whose last bits flip near-ties."""
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
    assert max(max_diffs) < 1.0
    assert np.mean(prefixes) >= 0.75 * N_TOKENS
    assert exact >= N_PROMPTS // 2


def llama_without_repacking(llama_cpp, path, monkeypatch):
    """llama.cpp on its plain CPU path: weights used in the file's layout, as duet
    uses them. By default it repacks K-quant rows eight at a time for other kernels,
    whose sums round otherwise (its logits then move by up to ~0.7)."""
    field_names = [name for name, _ in llama_cpp.llama_model_params._fields_]
    if "use_extra_bufts" not in field_names:
        pytest.skip("this llama-cpp-python cannot turn weight repacking off")
    default_params = llama_cpp.llama_cpp.llama_model_default_params

    def plain_params():
        params = default_params()
        params.use_extra_bufts = False
        return params
    monkeypatch.setattr(llama_cpp.llama.llama_cpp, "llama_model_default_params", plain_params)
    return llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, logits_all=True, verbose=False)


@pytest.mark.parametrize("name", MODELS)
def test_decode_steps_bit_identical_to_llama_cpp(name, monkeypatch):
    """From a one-token prompt (which llama.cpp also runs as a decode step), every
    logit of 16 greedy steps equals llama.cpp's plain path bit for bit: same
    activation quantization, dot products, RoPE rounding, attention sums and exp."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from duet import _core
    from duet.gguf_file import GGUFFile
    from duet.model import Model
    from duet.models import ModelNotFoundError, resolve_model

    try:
        path = resolve_model(name)
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    llm = llama_without_repacking(llama_cpp, path, monkeypatch)
    model = Model(GGUFFile(path), _core.ThreadPool(2))
    cache = model.new_cache(32)
    token = llm.tokenize(b"def", add_bos=False)[:1]
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
    ours = perplexity(model.forward(tokens, cache, logits_rows="all"), tokens)
    llm.reset()
    llm.eval(tokens)
    theirs = perplexity(np.array(llm.scores[: len(tokens)]), tokens)
    print(f"\nperplexity duet {ours:.4f} llama.cpp {theirs:.4f}")
    assert abs(ours - theirs) / theirs < 0.01
