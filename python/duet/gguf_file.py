"""Read-only view of a GGUF model file (layout: reference/kernels-and-gguf.md §1.1).

The file is memory-mapped read-only; tensor bytes are numpy views of the map (no copy,
never writable). The header is parsed here with bounds checks on every read, so a damaged
file gives a `GGUFError` saying where it breaks. gguf.GGUFReader would do the parsing too,
but it builds a numpy memmap slice per string and takes 10-25 s on the 152k-token
vocabulary of the Qwen files; this parser takes well under a second. Tests check it
against GGUFReader. Types and block sizes come from the gguf package.
"""
from __future__ import annotations

import difflib
import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4

# The types duet has kernels for (see csrc/quant/formats.h).
SUPPORTED_TYPES = tuple(
    GGMLQuantizationType[name]
    for name in ("F32", "F16", "BF16", "Q4_0", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K")
)

# GGUF value type id -> little-endian numpy dtype (arrays of scalars).
_SCALAR_DTYPES = {
    0: np.dtype("<u1"), 1: np.dtype("<i1"), 2: np.dtype("<u2"), 3: np.dtype("<i2"),
    4: np.dtype("<u4"), 5: np.dtype("<i4"), 6: np.dtype("<f4"), 7: np.dtype("?"),
    10: np.dtype("<u8"), 11: np.dtype("<i8"), 12: np.dtype("<f8"),
}
# GGUF value type id -> struct reader of one scalar. Spelled out rather than taken from
# dtype.char: numpy's 64-bit chars ("l", "L") are 4 bytes in struct's standard sizes.
_SCALAR_STRUCTS = {
    type_id: struct.Struct("<" + code)
    for type_id, code in {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?",
                          10: "Q", 11: "q", 12: "d"}.items()
}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
_MIN_STRING_BYTES = 8  # the uint64 length


class GGUFError(ValueError):
    """The file is not a GGUF file duet can read; the message says why."""


class MissingTensorError(GGUFError, KeyError):
    """The model needs a tensor the file does not have (a KeyError too, as for a dict)."""

    __str__ = GGUFError.__str__  # the message as is, not quoted as KeyError would


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_id: int  # ggml_type enum value
    type_name: str  # "Q4_K", "F32", ...
    shape: tuple[int, ...]  # ggml order: shape[0] (ne0) is the contiguous dimension
    n_elements: int
    n_bytes: int
    offset: int  # absolute byte offset of the first block in the file
    # [n_rows, row_bytes] uint8, read-only view of the map; n_rows = prod(shape[1:])
    data: np.ndarray = field(repr=False, compare=False)

    @property
    def n_rows(self) -> int:
        return self.data.shape[0]

    @property
    def row_bytes(self) -> int:
        return self.data.shape[1]

    def dequantize(self) -> np.ndarray:
        """A float32 copy in numpy order (reversed shape: [ne1, ne0]); for references and tests."""
        values = dequantize(self.data, GGMLQuantizationType(self.type_id))
        return np.asarray(values, dtype=np.float32).reshape(self.shape[::-1])


class GGUFFile:
    """A GGUF file opened read-only and memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise GGUFError(f"{self.path}: no such file")
        if self.path.stat().st_size < len(GGUF_MAGIC):
            raise GGUFError(f"{self.path}: not a GGUF file ({self.path.stat().st_size} bytes)")
        with open(self.path, "rb") as stream:
            self._map = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        self._bytes = np.frombuffer(self._map, dtype=np.uint8)  # read-only: the map is
        try:
            header = _Parser(self._map).parse()
        except _Damage as damage:
            raise GGUFError(f"{self.path}: {damage}") from None
        self.version: int = header.version
        self.metadata: dict[str, Any] = header.metadata
        self.data_offset: int = header.data_offset
        self.tensors: dict[str, TensorInfo] = {
            info.name: self._tensor_info(info) for info in header.tensor_infos
        }
        # The parse mapped the header in (6 MB with a 152k-token vocabulary), and its
        # values are copies now: those pages would stay mapped for the file's life,
        # counted against a memory budget.
        self.release([(0, self.data_offset)])

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise GGUFError(f"{self.path}: metadata has no general.architecture string")
        return arch

    def drop_vocabulary(self) -> None:
        """Forgets the tokenizer arrays (about 30 MB of Python strings for a 152k
        vocabulary) once a Tokenizer has been built from them."""
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
            self.metadata.pop(key, None)

    def limit_cache(self, used: list[tuple[int, int]], wait: bool = False) -> None:
        """Under a memory budget: keeps in the page cache only the byte ranges
        (offset, length) this process will read through the map, and fetches those
        ahead. Cached pages count against a memory cgroup, and the kernel's
        read-around (8 MiB windows on some devices) would otherwise fill it with
        neighbours never used (rows of a partial head, the embedding table after the
        header). Faults on the map then read only their own page.
        wait: returns once those pages are in memory. A model kept resident is read
        while the engine loads, not in the background of the first request, where
        its reads would slow the streamed model's."""
        if not (hasattr(os, "posix_fadvise") and hasattr(mmap, "MADV_RANDOM")):
            return  # not Linux: no cgroup to charge, nothing to limit
        self._map.madvise(mmap.MADV_RANDOM)
        page, end = mmap.PAGESIZE, self._map.size()
        spans = self._page_spans(used)
        gaps, position = [], 0
        for start, stop in spans + [(end, end)]:
            first = -(-position // page) * page  # pages of a used span stay (rounded out to them)
            if start > first:
                gaps.append((first, start))
            position = max(position, stop)
        self._uncache(gaps)
        if wait:
            self.fetch(used)
            for start, stop in spans:
                int(self._bytes[start:stop:mmap.PAGESIZE].max())  # a byte of each page maps it
            return
        for start, stop in spans:
            self._map.madvise(mmap.MADV_WILLNEED, start, stop - start)

    def fetch(self, used: list[tuple[int, int]]) -> None:
        """Reads the byte ranges (offset, length) into the page cache in large
        sequential reads, before it returns: a model kept resident is read while
        the engine loads. Faulted in through a map that reads no more than its
        page (limit_cache), 300 MiB took 1.3 s, about a quarter of the storage's
        speed."""
        spans = self._page_spans(used)
        chunk = bytearray(8 << 20)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if hasattr(os, "posix_fadvise"):  # no read-ahead past a span: its neighbours would be charged
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            for start, stop in spans:
                for offset in range(start, stop, len(chunk)):
                    os.preadv(fd, [memoryview(chunk)[:min(len(chunk), stop - offset)]], offset)
        finally:
            os.close(fd)

    def release(self, used: list[tuple[int, int]]) -> None:
        """Drops the byte ranges (offset, length) from this process's memory and from
        the page cache (a parked drafter's weights); a later read through the map
        fetches them from the file again, and limit_cache(used) fetches them ahead."""
        if not (hasattr(os, "posix_fadvise") and hasattr(mmap, "MADV_DONTNEED")):
            return  # not Linux: the pages stay, and no cgroup is charged for them
        spans = self._page_spans(used)
        for start, stop in spans:
            self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)
        self._uncache(spans)

    def _page_spans(self, used: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """(start, stop) of each non-empty range (offset, length), its start rounded
        down to a page (madvise's unit) and its stop cut at the file's end, sorted."""
        page, end = mmap.PAGESIZE, self._map.size()
        return sorted((offset - offset % page, min(offset + length, end)) for offset, length in used if length > 0)

    def _uncache(self, spans: list[tuple[int, int]]) -> None:
        """Drops the (start, stop) spans of the file from the page cache."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for start, stop in spans:
                os.posix_fadvise(fd, start, stop - start, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def tensor(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            near = difflib.get_close_matches(name, self.tensors.keys(), n=5, cutoff=0.5)
            hint = f"; near names: {', '.join(near)}" if near else ""
            raise MissingTensorError(f"no tensor {name!r} in {self.path.name}{hint}") from None

    def _tensor_info(self, info: _RawTensorInfo) -> TensorInfo:
        qtype = info.qtype
        if qtype not in SUPPORTED_TYPES:
            raise GGUFError(
                f"{self.path}: tensor {info.name!r} has type {qtype.name}, which duet does not "
                f"support (supported: {_type_names(SUPPORTED_TYPES)})"
            )
        start = self.data_offset + info.relative_offset
        n_bytes = info.n_bytes
        if start + n_bytes > len(self._map):
            raise GGUFError(
                f"{self.path}: truncated tensor data: tensor {info.name!r} ends at byte "
                f"{start + n_bytes} but the file has only {len(self._map)} bytes"
            )
        n_rows = math.prod(info.shape[1:])
        data = self._bytes[start : start + n_bytes]
        return TensorInfo(
            name=info.name, type_id=int(qtype), type_name=qtype.name, shape=info.shape,
            n_elements=info.n_elements, n_bytes=n_bytes, offset=start,
            data=data.reshape(n_rows, n_bytes // n_rows if n_rows else 0),
        )

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, {len(self.tensors)} tensors, arch={self.metadata.get('general.architecture')!r})"


def _type_names(types) -> str:
    return ", ".join(t.name for t in types)


# --- header parsing ------------------------------------------------------------------------


class _Damage(Exception):
    """Where and how the header stops making sense (becomes a GGUFError with the path)."""


@dataclass(frozen=True)
class _RawTensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order
    qtype: GGMLQuantizationType
    relative_offset: int  # from the start of the data section

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)  # Python ints: a damaged shape must not wrap around to a small size

    @property
    def n_bytes(self) -> int:
        block_elems, block_bytes = GGML_QUANT_SIZES[self.qtype]
        return self.n_elements // block_elems * block_bytes


@dataclass(frozen=True)
class _Header:
    version: int
    metadata: dict[str, Any]
    tensor_infos: list[_RawTensorInfo]
    data_offset: int


class _Parser:
    """Bounds-checked little-endian reads over the map, one section at a time."""

    def __init__(self, buffer: mmap.mmap):
        self.buffer, self.size, self.pos, self.section = buffer, len(buffer), 0, "header"

    def parse(self) -> _Header:
        if self.buffer[:4] != GGUF_MAGIC:
            raise _Damage(f"not a GGUF file (starts with {self.buffer[:4]!r}, expected {GGUF_MAGIC!r})")
        self.pos = 4
        version = self.scalar(_UINT32)
        if version not in SUPPORTED_VERSIONS:
            raise _Damage(f"unsupported GGUF version {version} (a big-endian or corrupt file?)")
        n_tensors, n_kv = self.scalar(10), self.scalar(10)
        self.section = "metadata"
        metadata = self.metadata(n_kv)
        self.section = "tensor infos"
        infos = self.tensor_infos(n_tensors)
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise _Damage(f"general.alignment {alignment!r} is not a power of two")
        data_offset = -(-self.pos // alignment) * alignment
        return _Header(version, metadata, infos, data_offset)

    def need(self, n_bytes: int) -> None:
        if self.pos + n_bytes > self.size:
            raise _Damage(
                f"truncated {self.section}: needs bytes {self.pos}..{self.pos + n_bytes}, file has {self.size}"
            )

    def scalar(self, value_type: int) -> Any:
        reader = _SCALAR_STRUCTS[value_type]
        self.need(reader.size)
        value = reader.unpack_from(self.buffer, self.pos)[0]
        self.pos += reader.size
        return value

    def string(self) -> str:
        length = self.scalar(10)
        self.need(length)
        text = self.buffer[self.pos : self.pos + length].decode("utf-8", errors="replace")
        self.pos += length
        return text

    def array(self) -> list:
        item_type, count = self.scalar(_UINT32), self.scalar(10)
        if item_type in _SCALAR_DTYPES:
            dtype = _SCALAR_DTYPES[item_type]
            self.need(count * dtype.itemsize)
            values = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.pos).tolist()
            self.pos += count * dtype.itemsize
            return values
        if item_type == _STRING:
            self.need(count * _MIN_STRING_BYTES)  # reject absurd counts before looping
            return [self.string() for _ in range(count)]
        raise _Damage(f"corrupt {self.section}: array of value type {item_type}")

    def value(self, value_type: int) -> Any:
        if value_type in _SCALAR_DTYPES:
            return self.scalar(value_type)
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            return self.array()
        raise _Damage(f"corrupt {self.section}: unknown value type {value_type}")

    def metadata(self, n_kv: int) -> dict[str, Any]:
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self.string()
            if key in metadata:
                raise _Damage(f"corrupt metadata: duplicate key {key!r}")
            metadata[key] = self.value(self.scalar(_UINT32))
        return metadata

    def tensor_infos(self, n_tensors: int) -> list[_RawTensorInfo]:
        infos = []
        for _ in range(n_tensors):
            name = self.string()
            n_dims = self.scalar(_UINT32)
            if not 1 <= n_dims <= MAX_DIMS:
                raise _Damage(f"corrupt tensor info for {name!r}: {n_dims} dimensions")
            shape = tuple(self.scalar(11) for _ in range(n_dims))
            type_id, relative_offset = self.scalar(_UINT32), self.scalar(10)
            infos.append(_RawTensorInfo(name, shape, _tensor_type(name, type_id, shape), relative_offset))
        return infos


def _tensor_type(name: str, type_id: int, shape: tuple[int, ...]) -> GGMLQuantizationType:
    try:
        qtype = GGMLQuantizationType(type_id)
    except ValueError:
        raise _Damage(
            f"tensor {name!r} has unknown type id {type_id} (supported: {_type_names(SUPPORTED_TYPES)})"
        ) from None
    if any(n < 0 for n in shape) or shape[0] % GGML_QUANT_SIZES[qtype][0]:
        raise _Damage(f"corrupt tensor info for {name!r}: shape {shape} does not fit type {qtype.name}")
    return qtype
