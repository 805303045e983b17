"""Collaborative decoding with the default pair (marked real): greedy output equals
target-only greedy output, resident and with the target streamed under a budget."""
from __future__ import annotations

import gc
import gzip
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.real

HUMANEVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "HumanEval.jsonl.gz"
N_PROMPTS = 10
N_TOKENS = 48


@pytest.fixture(scope="module")
def prompts_and_reference():
    from duet.engine import Engine
    from duet.models import ModelNotFoundError

    if not HUMANEVAL.exists():
        pytest.skip(f"HumanEval prompts not found at {HUMANEVAL}")
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for line in f][:N_PROMPTS]
    try:
        with Engine(draft=None, threads=2, n_ctx=1024) as engine:
            return prompts, [engine.generate(p, max_tokens=N_TOKENS).tokens for p in prompts]
    except ModelNotFoundError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("budget", [None, "1GiB"])
def test_collaborative_equals_target_only(prompts_and_reference, budget):
    from duet.engine import Engine
    from duet.memory import reset_peak

    prompts, reference = prompts_and_reference
    gc.collect()  # engines of earlier tests are closed; let their mappings go before measuring
    reset_peak()
    with Engine(threads=2, n_ctx=1024, budget=budget) as engine:
        if budget:
            assert engine.plan.streamed, "1 GiB should not hold both models"
        outputs, accepted = [], 0
        for prompt in prompts:
            result = engine.generate(prompt, max_tokens=N_TOKENS)
            outputs.append(result.tokens)
            accepted += result.stats["accepted"]
            if budget:
                assert result.stats["peak_memory"] <= engine.budget
    assert outputs == reference
    assert accepted > N_PROMPTS * N_TOKENS // 4  # the drafter must actually be helping
