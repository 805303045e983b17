"""Bounded fuzzing of GGUF reading: damaged files either load or raise GGUFError
with a message; nothing else escapes, nothing crashes, the file is not written."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duet import _core
from duet.gguf_file import GGUFError, GGUFFile
from duet.model import Model
from tiny_models import write_tiny_model


PRISTINE: list[bytes] = []  # the undamaged file, written once (not a fixture: hypothesis would print it)


def pristine(folder) -> bytes:
    if not PRISTINE:
        PRISTINE.append(write_tiny_model(folder / "seed.gguf", n_layer=1, weight_type="Q4_K").read_bytes())
    return PRISTINE[0]


damage = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 2**31)),
    st.tuples(st.just("splice"), st.tuples(st.integers(0, 2**31), st.binary(min_size=1, max_size=64))),
)


def damaged(data: bytes, how) -> bytes:
    kind, arg = how
    buf = bytearray(data)
    if kind == "flip":
        header = 64 * 1024  # most flips land where the structure is, not in weights
        for pos, value in arg:
            buf[pos % min(len(buf), header)] = value
    elif kind == "truncate":
        del buf[arg % len(buf):]
    else:
        pos, blob = arg
        pos %= len(buf)
        buf[pos:pos + len(blob)] = blob
    return bytes(buf)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=damage)
def test_damaged_gguf_loads_or_raises_gguf_error(tmp_path, how):
    path = tmp_path / "damaged.gguf"
    data = damaged(pristine(tmp_path), how)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    try:
        gguf = GGUFFile(path)
    except GGUFError as e:
        assert str(e)
        return
    # It parsed: a model over it must also load or refuse cleanly, and run.
    try:
        model = Model(gguf, _core.ThreadPool(1))
    except ValueError as e:  # GGUFError and the loaders' other refusals
        assert str(e)
        return
    model.forward(np.array([1, 2, 3], dtype=np.int32), model.new_cache(8))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # never written to
