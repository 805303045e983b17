"""Model hyperparameters read from GGUF metadata."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from duet.gguf_file import GGUFError

if TYPE_CHECKING:
    from duet.gguf_file import GGUFFile

# llama.cpp's rope type per architecture (llama_model_rope_type): NEOX pairs dimension i
# with i + head_dim/2, NORMAL pairs 2i with 2i+1.
ROPE_MODES = {"qwen2": "neox", "llama": "normal"}
DEFAULT_ROPE_FREQ_BASE = 10000.0
_REQUIRED = object()  # marks a metadata key without a default


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    rope_freq_base: float
    rope_mode: str  # "neox" | "normal"
    rms_eps: float
    tied_embeddings: bool  # no output.weight: token_embd doubles as the LM head
    bos_token_id: int | None
    eos_token_id: int | None

    @property
    def n_embd_kv(self) -> int:
        """Width of one K or V row (n_embd_gqa in llama.cpp)."""
        return self.n_head_kv * self.head_dim

    @classmethod
    def from_gguf(cls, model: GGUFFile) -> ModelConfig:
        arch = model.architecture
        if arch not in ROPE_MODES:
            raise GGUFError(
                f"{model.path}: unsupported architecture {arch!r} "
                f"(supported: {', '.join(sorted(ROPE_MODES))})"
            )
        meta = model.metadata

        def value(key: str, kind: type, default: Any = _REQUIRED) -> Any:
            if key not in meta:
                if default is _REQUIRED:
                    raise GGUFError(f"{model.path}: metadata key {key!r} is missing")
                return default
            return _number(model.path, key, meta[key], kind)

        n_embd = value(f"{arch}.embedding_length", int)
        n_head = value(f"{arch}.attention.head_count", int)
        if n_head <= 0 or n_embd % n_head:
            raise GGUFError(f"{model.path}: embedding_length {n_embd} is not a multiple of head_count {n_head}")
        config = cls(
            architecture=arch,
            n_vocab=_vocab_size(model, arch),
            n_ctx_train=value(f"{arch}.context_length", int),
            n_embd=n_embd,
            n_layer=value(f"{arch}.block_count", int),
            n_head=n_head,
            n_head_kv=value(f"{arch}.attention.head_count_kv", int, n_head),
            head_dim=value(f"{arch}.attention.key_length", int, n_embd // n_head),
            n_ff=value(f"{arch}.feed_forward_length", int),
            rope_freq_base=value(f"{arch}.rope.freq_base", float, DEFAULT_ROPE_FREQ_BASE),
            rope_mode=ROPE_MODES[arch],
            rms_eps=value(f"{arch}.attention.layer_norm_rms_epsilon", float),
            tied_embeddings="output.weight" not in model.tensors,
            bos_token_id=value("tokenizer.ggml.bos_token_id", int, None),
            eos_token_id=value("tokenizer.ggml.eos_token_id", int, None),
        )
        config.check(model.path)
        return config

    def check(self, path) -> None:
        """Refuses hyper-parameters no model can have (a damaged file), before they
        reach the kernels as sizes."""
        sizes = {"n_vocab": self.n_vocab, "n_embd": self.n_embd, "n_layer": self.n_layer, "n_head": self.n_head,
                 "n_head_kv": self.n_head_kv, "head_dim": self.head_dim, "n_ff": self.n_ff,
                 "n_ctx_train": self.n_ctx_train}
        for name, value in sizes.items():
            if not 0 < value < 2**31:
                raise GGUFError(f"{path}: {name} = {value} is not a valid size")
        if self.n_head % self.n_head_kv or self.head_dim % 2:
            raise GGUFError(f"{path}: head_count {self.n_head} is not a multiple of head_count_kv "
                            f"{self.n_head_kv}, or head size {self.head_dim} is odd")
        if not (self.rms_eps > 0 and self.rope_freq_base > 0):
            raise GGUFError(f"{path}: rms epsilon {self.rms_eps} and rope base {self.rope_freq_base} must be positive")


def _number(path, key: str, value: Any, kind: type) -> int | float:
    """value as kind (int, or float which an int also satisfies); a damaged file may hold
    a string, an array or a bool there instead."""
    accepted = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise GGUFError(f"{path}: metadata {key} = {str(value)[:40]!r} is not {'an integer' if kind is int else 'a number'}")
    return kind(value)


def _vocab_size(model: GGUFFile, arch: str) -> int:
    # The embedding matrix is the ground truth: it may have more rows than tokens (padding).
    if "token_embd.weight" in model.tensors:
        shape = model.tensors["token_embd.weight"].shape
        if len(shape) != 2:
            raise GGUFError(f"{model.path}: token_embd.weight has shape {shape}, not [n_embd, n_vocab]")
        return shape[1]
    key = f"{arch}.vocab_size"
    if key in model.metadata:
        return _number(model.path, key, model.metadata[key], int)
    raise GGUFError(f"{model.path}: no token_embd.weight tensor, cannot tell the vocabulary size")
