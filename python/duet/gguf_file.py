"""Read-only view of a GGUF model file.

`GGUFFile` wraps `gguf.GGUFReader` (a read-only numpy memmap) and turns everything the
reader can trip over into a `GGUFError` that says what is wrong with the file. Tensor
bytes are exposed as views of the memmap: nothing is copied, nothing is ever written.
"""
from __future__ import annotations

import difflib
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.constants import GGML_QUANT_SIZES

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# The types duet has kernels for (see csrc/quant/formats.h).
SUPPORTED_TYPES = tuple(
    GGMLQuantizationType[name]
    for name in ("F32", "F16", "BF16", "Q4_0", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K")
)


class GGUFError(ValueError):
    """The file is not a GGUF file duet can read; the message says why."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_id: int  # ggml_type enum value
    type_name: str  # "Q4_K", "F32", ...
    shape: tuple[int, ...]  # ggml order: shape[0] (ne0) is the contiguous dimension
    n_elements: int
    n_bytes: int
    offset: int  # absolute byte offset of the first block in the file
    # [n_rows, row_bytes] uint8, read-only view of the memmap; n_rows = prod(shape[1:])
    data: np.ndarray = field(repr=False, compare=False)

    @property
    def n_rows(self) -> int:
        return self.data.shape[0]

    @property
    def row_bytes(self) -> int:
        return self.data.shape[1]


class GGUFFile:
    """A GGUF file opened read-only and memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        file_size = _checked_file_size(self.path)
        _check_magic(self.path)
        try:
            self._reader = GGUFReader(self.path, "r")
        except Exception as exc:  # gguf raises bare struct/numpy/enum errors
            raise GGUFError(_describe_damage(self.path, file_size, exc)) from exc
        self.metadata: dict[str, Any] = _read_metadata(self._reader)
        self.tensors: dict[str, TensorInfo] = _read_tensors(self._reader, self.path, file_size)
        self.data_offset: int = int(self._reader.data_offset)

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise GGUFError(f"{self.path}: metadata has no general.architecture string")
        return arch

    def tensor(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            near = difflib.get_close_matches(name, self.tensors.keys(), n=5, cutoff=0.5)
            hint = f"; near names: {', '.join(near)}" if near else ""
            raise KeyError(f"no tensor {name!r} in {self.path.name}{hint}") from None

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, {len(self.tensors)} tensors, arch={self.metadata.get('general.architecture')!r})"


def _checked_file_size(path: Path) -> int:
    if not path.is_file():
        raise GGUFError(f"{path}: no such file")
    return path.stat().st_size


def _check_magic(path: Path) -> None:
    with open(path, "rb") as stream:
        magic = stream.read(4)
    if magic != GGUF_MAGIC:
        raise GGUFError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python scalars/lists, recursively."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _read_metadata(reader: GGUFReader) -> dict[str, Any]:
    # GGUF.version/tensor_count/kv_count are header fields the reader presents as keys.
    return {
        key: _plain(reader_field.contents())
        for key, reader_field in reader.fields.items()
        if not key.startswith("GGUF.")
    }


def _type_names(types) -> str:
    return ", ".join(t.name for t in types)


def _read_tensors(reader: GGUFReader, path: Path, file_size: int) -> dict[str, TensorInfo]:
    tensors = {}
    for tensor in reader.tensors:
        qtype = GGMLQuantizationType(tensor.tensor_type)
        if qtype not in SUPPORTED_TYPES:
            raise GGUFError(
                f"{path}: tensor {tensor.name!r} has type {qtype.name}, which duet does not "
                f"support (supported: {_type_names(SUPPORTED_TYPES)})"
            )
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > file_size:
            raise GGUFError(_truncated_data_message(path, tensor.name, end, file_size))
        shape = tuple(int(n) for n in tensor.shape)
        n_rows = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        raw = reader.data[int(tensor.data_offset) : end]
        tensors[tensor.name] = TensorInfo(
            name=tensor.name,
            type_id=int(qtype),
            type_name=qtype.name,
            shape=shape,
            n_elements=int(tensor.n_elements),
            n_bytes=int(tensor.n_bytes),
            offset=int(tensor.data_offset),
            data=raw.reshape(n_rows, int(tensor.n_bytes) // n_rows),
        )
    return tensors


def _truncated_data_message(path: Path, name: str, end: int, file_size: int) -> str:
    return (
        f"{path}: truncated tensor data: tensor {name!r} ends at byte {end} "
        f"but the file has only {file_size} bytes"
    )


# --- diagnosis of files gguf.GGUFReader refused -------------------------------------------
# A small bounds-checked walk over the layout (reference/kernels-and-gguf.md §1.1) that
# finds the first place the file stops making sense. Only runs after the reader failed.

_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, data: mmap.mmap, section: str):
        self.data, self.pos, self.section = data, 0, section

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Damage(f"truncated {self.section}: needs bytes {self.pos}..{self.pos + n}, file has {len(self.data)}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("Q")).decode("utf-8", errors="replace")


class _Damage(Exception):
    pass


def _skip_value(cursor: _Cursor, value_type: int) -> Any:
    if value_type in _SCALAR_FORMATS:
        return cursor.unpack(_SCALAR_FORMATS[value_type])
    if value_type == _STRING:
        return cursor.string()
    if value_type == _ARRAY:
        item_type, count = cursor.unpack("I"), cursor.unpack("Q")
        if item_type == _ARRAY:
            raise _Damage("corrupt metadata: array of arrays")
        for _ in range(count):
            _skip_value(cursor, item_type)
        return None
    raise _Damage(f"corrupt metadata: unknown value type {value_type}")


def _walk_layout(data: mmap.mmap) -> None:
    cursor = _Cursor(data, "header")
    cursor.take(4)
    version = cursor.unpack("I")
    if version not in (2, 3):
        raise _Damage(f"unsupported GGUF version {version} (big-endian or corrupt file?)")
    n_tensors, n_kv = cursor.unpack("Q"), cursor.unpack("Q")
    cursor.section = "metadata"
    alignment = DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key = cursor.string()
        value = _skip_value(cursor, cursor.unpack("I"))
        if key == "general.alignment" and isinstance(value, int) and value > 0:
            alignment = value
    cursor.section = "tensor infos"
    infos = []
    for _ in range(n_tensors):
        name = cursor.string()
        n_dims = cursor.unpack("I")
        if n_dims > 4:
            raise _Damage(f"corrupt tensor info for {name!r}: {n_dims} dimensions")
        shape = [cursor.unpack("q") for _ in range(n_dims)]
        type_id, offset = cursor.unpack("I"), cursor.unpack("Q")
        infos.append((name, shape, type_id, offset))
    data_offset = -(-cursor.pos // alignment) * alignment
    for name, shape, type_id, offset in infos:
        _check_tensor_extent(name, shape, type_id, data_offset + offset, len(data))


def _check_tensor_extent(name: str, shape: list[int], type_id: int, start: int, file_size: int) -> None:
    try:
        qtype = GGMLQuantizationType(type_id)
    except ValueError:
        raise _Damage(
            f"tensor {name!r} has unknown type id {type_id} "
            f"(supported: {_type_names(SUPPORTED_TYPES)})"
        ) from None
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    n_elements = int(np.prod(shape, dtype=np.int64))
    end = start + n_elements // block_elems * block_bytes
    if end > file_size:
        raise _Damage(f"truncated tensor data: tensor {name!r} ends at byte {end} but the file has only {file_size} bytes")


def _describe_damage(path: Path, file_size: int, exc: Exception) -> str:
    with open(path, "rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            _walk_layout(data)
        except _Damage as damage:
            return f"{path}: {damage}"
    return f"{path}: unreadable GGUF file ({file_size} bytes): {type(exc).__name__}: {exc}"
