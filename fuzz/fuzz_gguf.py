"""Coverage-guided fuzzing (atheris, libFuzzer) of the paths that read a GGUF file.

Each input is written to a file and loaded the way duet.Engine loads a model: GGUFFile,
the tokenizer and its chat template from the metadata, ModelConfig, every tensor handed
to the kernels in place (Model) and one forward pass, then the streamed path under the
smallest budget (layer segments, StreamedLayers, TensorRowReader) and a second pass.
A clear refusal (GGUFError, or another ValueError the loaders raise on bad input) is
the expected outcome for a damaged file; any other exception, a crash, or a change to
the file is a finding. The seeds are tiny valid models written at start (none in git);
half of the mutations go to the header alone, where the structure is.

    python fuzz/fuzz_gguf.py -max_total_time=60 -artifact_prefix=build-fuzz/   # make fuzz
    python fuzz/fuzz_gguf.py build-fuzz/crash-...                              # replay one
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models

with atheris.instrument_imports(include=["duet"]):
    from duet import _core
    from duet.config import ModelConfig
    from duet.gguf_file import GGUFFile, _Parser
    from duet.model import Model, layer_shape
    from duet.tokenizer import Tokenizer
    from duet.weight_store import StreamedLayers, layer_segments, minimum_budget, plan_memory

from tiny_models import write_tiny_model

PROMPT = 'def add(a, b):\n    """Sum."""\n    return a + b  # é\n'
N_CTX = 16
POOL = _core.ThreadPool(1)
WORK_DIR = ROOT / "build-fuzz" / "work"  # the seeds and the corpus found; remade per run
# The input rewritten at every run: in memory where there is a tmpfs, so a busy disk does not stall the fuzzer.
INPUT_PATH = Path("/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir()) / f"duet-fuzz-{os.getpid()}.gguf"


def write_seeds(folder: Path) -> None:
    """Small valid models (a few tens of KB) covering tied and untied heads, K-quants,
    legacy quants and float types."""
    small = dict(n_embd=64, n_head=2, n_head_kv=1, n_ff=128, n_merges=20)
    write_tiny_model(folder / "q8_0.gguf", n_layer=1, **small)
    write_tiny_model(folder / "q4_0_untied.gguf", n_layer=2, weight_type="Q4_0", tied=False, **small)
    write_tiny_model(folder / "kquants.gguf", n_layer=1, n_embd=256, n_head=4, n_head_kv=2, n_ff=256,
                     n_merges=20, weight_type={"default": "Q4_K", "ffn_down": "Q6_K", "attn_v": "Q5_K"})
    write_tiny_model(folder / "f16.gguf", n_layer=1, weight_type={"default": "F16", "attn_q": "BF16"}, **small)


def load_and_run(path: Path) -> None:
    """Everything duet does with a model file it is given, in the order the engine does it."""
    gguf = GGUFFile(path)
    tokenizer = Tokenizer.from_metadata(gguf.metadata)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}])
    tokens = tokenizer.encode(prompt, add_special=True, parse_special=True)
    tokenizer.decode(tokens)
    config = ModelConfig.from_gguf(gguf)
    ids = np.array([t for t in tokens if t < config.n_vocab][: N_CTX // 2] or [0], dtype=np.int32)

    model = Model(gguf, POOL)
    model.forward(ids, model.new_cache(N_CTX))

    segments = layer_segments(gguf, config.n_layer)
    plan = plan_memory(segments, minimum_budget(segments, {}), {})
    streamed = StreamedLayers(gguf, plan, layer_shape(config), direct_io=False)
    model = Model(gguf, POOL, layers=streamed)
    model.forward(ids, model.new_cache(N_CTX))


def header_end(data: bytes) -> int:
    """Where the tensor data starts, or the whole input when the header does not parse."""
    try:
        return _Parser(data).parse().data_offset
    except Exception:  # any damage: the header is all of it
        return len(data)


def mutate_mostly_the_header(data: bytes, max_size: int, seed: int) -> bytes:
    """Half of the mutations land in the header (metadata, tensor infos), which is a few
    KB of a seed's tens; the other half anywhere, tensor data included."""
    if seed % 2:
        return atheris.Mutate(data, max_size)
    end = header_end(data)
    return (atheris.Mutate(data[:end], end + 256) + data[end:])[:max_size]


def test_one_input(data: bytes) -> None:
    INPUT_PATH.write_bytes(data)
    try:
        load_and_run(INPUT_PATH)
    except ValueError as refusal:  # GGUFError and the loaders' other clear refusals
        if not str(refusal):
            raise AssertionError("a refusal without a message") from refusal
    finally:
        written = INPUT_PATH.read_bytes() != data
        INPUT_PATH.unlink()  # no file left behind when the run ends
    if written:
        raise AssertionError("loading the file wrote to it")


def main() -> None:
    args = list(sys.argv)
    replaying = any(Path(arg).is_file() for arg in args[1:])
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    if not replaying:
        seeds = WORK_DIR / "seeds"
        seeds.mkdir()
        write_seeds(seeds)
        args.append(str(seeds))
    atheris.Setup(args, test_one_input, custom_mutator=mutate_mostly_the_header)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
