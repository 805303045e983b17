"""Long use of one engine, and two engines side by side, on tiny models."""
from __future__ import annotations

import gc

import pytest

from duet.engine import Engine
from duet.memory import memory_usage
from tiny_models import write_tiny_model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("endurance")
    return (write_tiny_model(folder / "t.gguf", n_layer=2, weight_type="Q8_0", seed=4),
            write_tiny_model(folder / "d.gguf", n_layer=1, weight_type="Q4_0", seed=4))


def test_hundred_generations_do_not_grow_memory(pair):
    target, draft = pair
    with Engine(target=target, draft=draft, threads=2, n_ctx=256) as engine:
        for _ in range(10):  # warm-up: caches, allocator pools, lazy imports
            engine.generate("def f(x): return x", max_tokens=16)
        gc.collect()
        before = memory_usage().rss
        for i in range(100):
            engine.generate(f"def f{i}(x): return x + {i}", max_tokens=16, temperature=0.7 if i % 2 else 0.0,
                            seed=i)
        gc.collect()
        growth = memory_usage().rss - before
    assert growth < 8 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB over 100 generations"


def test_two_engines_in_one_process(pair):
    target, draft = pair
    with Engine(target=target, draft=None, threads=1, n_ctx=256) as alone, \
            Engine(target=target, draft=draft, threads=2, n_ctx=256) as together:
        a = alone.generate("def g(y):", max_tokens=24).tokens
        b = together.generate("def g(y):", max_tokens=24).tokens
        assert a == b
        assert alone.generate("def g(y):", max_tokens=24).tokens == a
