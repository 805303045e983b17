"""llama.cpp (llama-cpp-python) as the tests' reference, on its plain CPU path."""
from __future__ import annotations

from pathlib import Path

import pytest


def plain_llama(path: str | Path, n_ctx: int = 1024):
    """llama.cpp over path, 2 threads, logits kept at every position, weights used in
    the file's layout as duet uses them (duet.llama_baseline.open_llama)."""
    pytest.importorskip("llama_cpp")
    from duet.llama_baseline import open_llama

    try:
        return open_llama(path, plain=True, n_ctx=n_ctx, n_batch=512, n_threads=2, logits_all=True)
    except ImportError as e:
        pytest.skip(str(e))
