"""duet: on-device LLM inference. A resident small model drafts token trees; a large
model, streamed from storage under a memory budget, verifies them in one pass.

    import duet

    with duet.Engine(budget="1GiB") as engine:
        for event in engine.stream("def fib(n):", max_tokens=64):
            print(event.text, end="", flush=True)

The engine names are imported on first use, so that `import duet` stays cheap and
works without the compiled extension (`duet models pull` needs none of it).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY_NAMES = {
    "Engine": "duet.engine",
    "TokenEvent": "duet.engine",
    "GenerationResult": "duet.engine",
    "BudgetTooSmallError": "duet.weight_store",
    "ModelError": "duet.models",
    "parse_size": "duet.memory",
    "memory_usage": "duet.memory",
}

__all__ = ["__version__", *_LAZY_NAMES]

if TYPE_CHECKING:  # static checkers see the real names
    from duet.engine import Engine, GenerationResult, TokenEvent
    from duet.memory import memory_usage, parse_size
    from duet.models import ModelError
    from duet.weight_store import BudgetTooSmallError


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'duet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))
