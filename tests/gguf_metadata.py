"""Stand-in GGUF metadata reader for the tokenizer tests (to be replaced by the
package's own GGUF reader): returns the tokenizer.* keys as plain Python values."""

from __future__ import annotations

import functools
from typing import Any

import gguf


def _field_value(field: Any) -> Any:
    kinds = field.types
    if kinds[0] == gguf.GGUFValueType.ARRAY:
        if kinds[-1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i][0].item() for i in field.data]
    if kinds[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]][0].item()


@functools.lru_cache(maxsize=2)   # reading 150k strings takes ~20 s; tests share it
def read_tokenizer_metadata(path: str) -> dict[str, Any]:
    reader = gguf.GGUFReader(path, "r")
    return {key: _field_value(field) for key, field in reader.fields.items()
            if key.startswith("tokenizer.")}
