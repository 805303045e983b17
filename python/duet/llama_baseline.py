"""llama.cpp (llama-cpp-python, an optional dependency) as the baseline duet is
measured and tested against."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and " amx_tile" in line for line in f)
    except OSError:
        return False


def open_llama(path: str | Path, *, plain: bool = False, **kwargs):
    """llama_cpp.Llama over path (kwargs as Llama takes them; verbose off unless given).

    plain: its extra buffer types off, so weights are used in the file's layout, as
    duet uses them; by default llama.cpp repacks Q4_K rows for kernels that round
    their sums otherwise. They are also off on a CPU with AMX: llama-cpp-python
    0.3.36's AMX matmul crashes (SIGSEGV in ggml_backend_amx_mul_mat, Xeon with
    amx_int8), and a baseline must not take the process down. Raises ImportError
    without llama-cpp-python."""
    import llama_cpp

    plain = plain or cpu_has_amx()
    if plain and "use_extra_bufts" not in {name for name, _ in llama_cpp.llama_model_params._fields_}:
        raise ImportError("this llama-cpp-python cannot turn its extra buffer types off")
    default_params = llama_cpp.llama_cpp.llama_model_default_params

    def model_params():
        params = default_params()
        if plain:
            params.use_extra_bufts = False
        return params

    kwargs.setdefault("verbose", False)
    llama_cpp.llama.llama_cpp.llama_model_default_params = model_params
    try:
        return llama_cpp.Llama(model_path=str(path), **kwargs)
    finally:
        llama_cpp.llama.llama_cpp.llama_model_default_params = default_params
