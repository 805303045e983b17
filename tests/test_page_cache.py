"""What duet reads of a model file under a budget, and what it leaves in the page
cache (cached pages are charged to a memory cgroup): TensorRowReader's rows and
errors, no pages left behind by it, and GGUFFile.limit_cache; what stays mapped
in this process after a GGUF header's parse and after KVCache.release."""
from __future__ import annotations

import ctypes
import gc
import mmap
import os
import sys
from types import SimpleNamespace

import gguf as gguf_writer
import numpy as np
import pytest

from duet.gguf_file import GGUFFile
from duet.kv_cache import KVCache
from duet.tensor_rows import PAGE, TensorRowReader
from tiny_models import write_tiny_model


@pytest.fixture
def embedding(tmp_path):
    path = write_tiny_model(tmp_path / "tiny.gguf", weight_type="Q8_0")
    with open(path, "rb") as f:  # written pages must be clean for the kernel to drop them
        os.fsync(f.fileno())
    info = GGUFFile(path).tensor("token_embd.weight")
    # The file's map is gone once the GGUFFile is: pages mapped in a process
    # (parsing the header maps its cached neighbours too) are never dropped.
    fields = SimpleNamespace(offset=info.offset, shape=info.shape, n_bytes=info.n_bytes)
    del info
    gc.collect()
    return path, fields


def test_rows_are_the_tensors_rows(embedding):
    path, info = embedding
    reader = TensorRowReader(path, info)
    ids = np.array([0, info.shape[1] - 1, 7, 7])
    table = GGUFFile(path).tensor("token_embd.weight").data.reshape(info.shape[1], -1)
    np.testing.assert_array_equal(reader(ids), table[ids])


def test_a_span_is_those_rows(embedding):
    path, info = embedding
    reader = TensorRowReader(path, info)
    table = GGUFFile(path).tensor("token_embd.weight").data.reshape(info.shape[1], -1)
    np.testing.assert_array_equal(reader.span(200, 250), table[200:250])
    np.testing.assert_array_equal(reader.span(0, info.shape[1]), table)
    for start, stop in ((5, 5), (-1, 2), (0, info.shape[1] + 1)):
        with pytest.raises(IndexError, match="outside"):
            reader.span(start, stop)


def test_ids_outside_the_vocabulary_are_refused(embedding):
    path, info = embedding
    with pytest.raises(IndexError, match="outside the vocabulary"):
        TensorRowReader(path, info)(np.array([info.shape[1]]))


def test_a_file_cut_short_is_an_error(embedding, tmp_path):
    path, info = embedding
    short = tmp_path / "short.gguf"
    short.write_bytes(open(path, "rb").read()[:info.offset + 10])
    with pytest.raises(RuntimeError, match="unexpected end"):
        TensorRowReader(short, info)(np.array([3]))
    with pytest.raises(RuntimeError, match="unexpected end"):
        TensorRowReader(short, info).span(0, 4)


def resident_pages(path, offset: int, length: int) -> np.ndarray:
    """mincore over the file's pages that hold [offset, offset + length)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    start = offset - offset % PAGE
    size = -(-(offset + length - start) // PAGE) * PAGE
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        vec = (ctypes.c_ubyte * (size // PAGE))()
        try:
            assert libc.mincore(address, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    return np.frombuffer(vec, dtype=np.uint8) & 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and fadvise semantics of Linux")
def test_rows_read_leave_no_pages_in_the_page_cache(embedding):
    path, info = embedding
    reader = TensorRowReader(path, info)
    ids = np.array([1, 5, info.shape[1] - 2])
    with open(path, "rb") as f:  # the pages are cached before the reader runs
        f.seek(info.offset)
        f.read(info.n_bytes)
    assert resident_pages(path, info.offset + ids[0] * reader.row_bytes, reader.row_bytes).all()
    reader(ids)
    for row in ids:
        assert not resident_pages(path, info.offset + row * reader.row_bytes, reader.row_bytes).any()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and fadvise semantics of Linux")
def test_limit_cache_keeps_only_the_ranges_read_through_the_map(tmp_path):
    path = write_tiny_model(tmp_path / "wide.gguf", weight_type="Q8_0", n_layer=4)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        f.read()  # every page cached
    gguf = GGUFFile(path)
    by_offset = sorted(gguf.tensors.values(), key=lambda t: t.offset)
    used, unused = by_offset[-1], by_offset[-2]  # far from the header, whose pages the parse mapped
    assert unused.offset - gguf.data_offset > 256 * 1024, "the tiny model is too small for this test"
    gguf.limit_cache([(used.offset, used.n_bytes)])
    inner = unused.offset + PAGE, unused.n_bytes - 2 * PAGE  # pages wholly inside the unused tensor
    assert not resident_pages(path, *inner).any()
    assert resident_pages(path, used.offset, used.n_bytes).all()
    np.testing.assert_array_equal(used.data.reshape(-1), np.fromfile(path, np.uint8, used.n_bytes, offset=used.offset))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and fadvise semantics of Linux")
def test_limit_cache_waiting_maps_the_used_ranges_before_it_returns(tmp_path):
    import resource

    path = write_tiny_model(tmp_path / "wide.gguf", n_layer=2, n_embd=512, n_ff=1024, weight_type="F16")
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # cold
    gguf = GGUFFile(path)
    used, unused = sorted(gguf.tensors.values(), key=lambda t: t.n_bytes)[-2:]
    gguf.limit_cache([(used.offset, used.n_bytes)], wait=True)
    assert resident_pages(path, used.offset, used.n_bytes).all()
    assert not resident_pages(path, unused.offset + PAGE, unused.n_bytes - 2 * PAGE).any()

    def faults() -> int:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_minflt + usage.ru_majflt

    before = faults()
    int(used.data.max())  # already mapped: reading it faults no page in
    n_pages = used.n_bytes // PAGE
    assert n_pages >= 16 and faults() - before < n_pages // 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and fadvise semantics of Linux")
def test_a_resident_drafter_is_read_while_the_engine_loads(tmp_path):
    """With no budget as with one, the drafter's layers are in the page cache once the
    engine is built: the first request's drafting does not wait for the storage."""
    from duet.engine import Engine

    target = write_tiny_model(tmp_path / "target.gguf", n_layer=1, weight_type="Q8_0", seed=1)
    draft = write_tiny_model(tmp_path / "draft.gguf", n_layer=2, n_embd=512, n_ff=1024, weight_type="F16", seed=1)
    layers = [(name, t.offset, t.n_bytes) for name, t in GGUFFile(draft).tensors.items() if name.startswith("blk.")]
    gc.collect()  # the parse's map, and the pages it holds, are gone
    with open(draft, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # cold
    name, offset, n_bytes = max(layers, key=lambda layer: layer[2])
    assert not resident_pages(draft, offset, n_bytes).all()
    with Engine(target=str(target), draft=str(draft), threads=1, n_ctx=64):
        for name, offset, n_bytes in layers:
            assert resident_pages(draft, offset, n_bytes).all(), name


def mapped_bytes(address: int) -> int:
    """Resident bytes of this process's mapping that holds address (smaps' Rss; the
    kernel may have merged it with anonymous neighbours)."""
    with open("/proc/self/smaps") as smaps:
        lines = iter(smaps)
        for line in lines:
            start, _, end = line.split()[0].partition("-")
            if end and int(start, 16) <= address < int(end, 16):
                for field in lines:
                    if field.startswith("Rss:"):
                        return int(field.split()[1]) * 1024
    raise LookupError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps")
def test_a_parsed_header_leaves_no_pages_mapped(tmp_path):
    path = tmp_path / "big_header.gguf"
    writer = gguf_writer.GGUFWriter(path, "qwen2")
    writer.add_array("test.strings", [f"token number {i:08d}" for i in range(100_000)])  # 3 MB
    writer.add_tensor("weight", np.ones((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    model = GGUFFile(path)
    assert len(model.metadata["test.strings"]) == 100_000 and model.data_offset > 2_500_000
    assert mapped_bytes(model.tensor("weight").data.ctypes.data - model.tensor("weight").offset) < 64 * 1024
    np.testing.assert_array_equal(model.tensor("weight").data.view(np.float32), 1.0)  # the map still reads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps")
def test_released_kv_rows_leave_memory_and_the_cache_works_on():
    cache = KVCache(n_layer=4, n_ctx=512, n_head_kv=2, head_dim=64)
    cache.k[:] = 1.0
    cache.v[:] = 2.0
    cache.n = 512
    written = mapped_bytes(cache.k.ctypes.data)
    assert written >= cache.nbytes
    cache.release()
    assert cache.n == 0 and written - mapped_bytes(cache.k.ctypes.data) >= cache.nbytes
    assert not cache.k.any() and not cache.v.any()
    cache.k[0, :3] = 5.0  # written again, as the next prefill would
    assert cache.k[0, :3].min() == 5.0
