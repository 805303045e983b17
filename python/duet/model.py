"""A qwen2/llama decoder over a GGUF file: embedding, N layers, final norm, LM head.

Weights are addressed in place in the memory-mapped file; each layer runs in one
C++ call (duet._core.TransformerLayer) and the LM head is one quantized matmul."""
from __future__ import annotations

import numpy as np

from duet import _core
from duet.compute_token import NoToken
from duet.config import ModelConfig
from duet.draft_head import DraftHead
from duet.gguf_file import GGUFError, GGUFFile, TensorInfo
from duet.kv_cache import KVCache
from duet.tensor_rows import TensorRowReader

ROPE_MODES = {"normal": 0, "neox": 2}
PREFILL_BLOCK = 256  # tokens per prefill pass; a streamed pass reads its layers once per block
SCRATCH_KEPT_ROWS = 64  # passes up to this many tokens (decoded steps, trees) keep their layer buffers


def tensor_entry(info: TensorInfo, data: np.ndarray | None = None) -> tuple:
    """(type id, bytes, ne0, ne1): how duet._core takes a tensor. data: the tensor's
    bytes (default: in place in the file)."""
    data = (info.data if data is None else data).reshape(-1)
    ne1 = info.shape[1] if len(info.shape) > 1 else 1
    return (info.type_id, data, info.shape[0], ne1)


def layer_key(tensor_name: str) -> str:
    """'blk.3.attn_q.bias' -> 'attn_q_bias', as duet._core.TransformerLayer names it."""
    _, _, rest = tensor_name.split(".", 2)
    return rest.replace(".weight", "").replace(".bias", "_bias")


def layer_tensors(gguf: GGUFFile, index: int) -> dict:
    prefix = f"blk.{index}."
    return {layer_key(name): tensor_entry(info) for name, info in gguf.tensors.items() if name.startswith(prefix)}


def layer_shape(config: ModelConfig) -> dict:
    return {
        "n_embd": config.n_embd, "n_ff": config.n_ff, "n_head": config.n_head, "n_head_kv": config.n_head_kv,
        "head_dim": config.head_dim, "rms_eps": config.rms_eps, "rope_freq_base": config.rope_freq_base,
        "rope_mode": ROPE_MODES[config.rope_mode],
    }


def head_name(config: ModelConfig) -> str:
    """The LM head's tensor: output.weight, or token_embd.weight when tied."""
    return "token_embd.weight" if config.tied_embeddings else "output.weight"


def _check_shape(gguf: GGUFFile, name: str, shape: tuple[int, ...]) -> None:
    """The kernels check sizes too; this names the tensor that disagrees with the config."""
    info = gguf.tensor(name)
    if info.shape != shape:
        raise GGUFError(f"{gguf.path}: {name} has shape {list(info.shape)}, the model needs {list(shape)}")


class Model:
    """Forward passes of one model. Not thread-safe: one pass at a time."""

    def __init__(self, gguf: GGUFFile, pool: "_core.ThreadPool", isa: str = "", layers=None):
        """layers: an iterable giving the layers in order for each pass (for instance
        weight_store.StreamedLayers); default all resident, in place in the mmap."""
        self.gguf = gguf
        self.config = ModelConfig.from_gguf(gguf)
        self.pool = pool
        self.isa = isa
        shape = layer_shape(self.config)
        if layers is None:
            layers = [_core.TransformerLayer(shape, layer_tensors(gguf, i)) for i in range(self.config.n_layer)]
        self.layers = layers
        self.scratch = _core.LayerScratch()  # the layers' buffers, kept across passes
        self.compute = NoToken()  # a ComputeToken when another model shares the cores
        self.urgent = True        # whether this model's calls go first under the token
        # A drafter's rows may take any order (its logits only shape a tree that the
        # target checks): every row then takes the fastest kernels for its batch.
        self.any_order = False
        head = head_name(self.config)
        for name, shape in (("token_embd.weight", (self.config.n_embd, self.config.n_vocab)),
                            (head, (self.config.n_embd, self.config.n_vocab)),
                            ("output_norm.weight", (self.config.n_embd,))):
            _check_shape(gguf, name, shape)
        self.token_embd = tensor_entry(gguf.tensor("token_embd.weight"))  # (type, [n_vocab rows of n_embd])
        self.embedding_rows = None  # optional: ids -> the rows' bytes, read without the mapping
        self.output_norm = gguf.tensor("output_norm.weight").data.reshape(-1).view(np.float32)  # [n_embd]
        self.output = tensor_entry(gguf.tensor(head))  # (type, [n_vocab rows of n_embd])
        self.draft_head: DraftHead | None = None  # a drafter's partial head (restrict_head)
        if hasattr(layers, "load_tensor"):
            # Streamed under a budget: nothing of the target stays mapped.
            self.output = tensor_entry(gguf.tensor(head), layers.load_tensor(gguf.tensor(head)))
            self.embedding_rows = TensorRowReader(gguf.path, gguf.tensor("token_embd.weight"))

    def restrict_head(self, n_prefix: int, always=(), narrow: bool = True) -> None:
        """Scores only the first n_prefix token ids and the rarer ones this model is fed
        (and `always`), for a drafter; narrow: its rows held in a narrower type where
        the file's is wider (see draft_head.py)."""
        head = self.gguf.tensor(head_name(self.config))
        self.draft_head = DraftHead(TensorRowReader(self.gguf.path, head), head.type_id, self.config.n_embd,
                                    n_prefix, always, narrow)

    def new_cache(self, n_ctx: int, kv_type: str = "f16") -> KVCache:
        c = self.config
        return KVCache(c.n_layer, n_ctx, c.n_head_kv, c.head_dim, kv_type)

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """[n] token ids -> [n, n_embd] rows of the embedding table."""
        type_id, table, n_embd, n_vocab = self.token_embd
        if self.embedding_rows is not None:
            rows = self.embedding_rows(tokens)
            return _core.embedding(type_id, rows, len(rows), n_embd, np.arange(len(rows), dtype=np.int32), self.isa)
        return _core.embedding(type_id, table, n_vocab, n_embd, tokens, self.isa)

    def run_layers(self, x: np.ndarray, positions: np.ndarray, cache: KVCache, mask: np.ndarray | None,
                   prompt: np.ndarray | None = None) -> None:
        """Runs every layer on x [n, n_embd] in place, appending n rows to the cache.
        prompt: None or uint8 [n] row orders (see forward)."""
        for index, layer in enumerate(self.layers):  # a streamed layer may wait here for its weights
            with self.compute.hold(self.urgent):
                layer.forward(x, positions, cache.k[index], cache.v[index], cache.n, mask, self.pool, self.isa,
                              prompt, self.scratch)
        cache.n += x.shape[0]
        if x.shape[0] > SCRATCH_KEPT_ROWS:
            # A prompt block's buffers go back rather than stay through decoding, under
            # the memory budget; the layers of one pass share them all the same.
            self.scratch.release()

    def logits(self, hidden: np.ndarray, prompt: np.ndarray | None = None) -> np.ndarray:
        """[n, n_embd] final hidden states -> [n, n_vocab] logits.
        prompt: None or uint8 [n] row orders (see forward)."""
        h = _core.rms_norm(np.ascontiguousarray(hidden), self.output_norm, self.config.rms_eps)
        type_id, data, n_embd, n_vocab = self.output
        with self.compute.hold(self.urgent):
            if self.draft_head is not None:
                return self.draft_head.logits(h, self.pool, self.isa, prompt)
            return _core.matmul(type_id, data, n_vocab, n_embd, h, self.pool, self.isa, prompt=prompt)

    def forward(
        self,
        tokens,
        cache: KVCache,
        positions=None,
        mask: np.ndarray | None = None,
        logits_rows="last",
        prompt=False,
    ) -> np.ndarray | None:
        """Appends `tokens` to the cache and returns logits.

        positions: [n] RoPE positions; default cache.n, cache.n+1, ...
        mask: [n, cache.n + n] uint8 visibility over the cache slots (a token tree);
              default causal.
        logits_rows: "last", "all", row indices into tokens, or None for no logits.
        prompt: True (all), False (none) or [n] flags: which tokens are prompt tokens.
              llama.cpp sums a prompt batch's attention, and its products with
              K-quant weights, in other orders than a decoded token's; each token
              follows the orders its kind gets there, whatever batch it comes in, so
              that every path through the engine agrees. Ignored where any_order is set.
        """
        x, flags = self.hidden_states(tokens, cache, positions, mask, prompt)
        if logits_rows is None:
            return None
        n = x.shape[0]
        if isinstance(logits_rows, str):
            rows = slice(n - 1, n) if logits_rows == "last" else slice(0, n)
        else:
            rows = np.asarray(logits_rows, dtype=np.int64)
        return self.logits(x[rows], None if flags is None else np.ascontiguousarray(flags[rows]))

    def hidden_states(self, tokens, cache: KVCache, positions=None, mask: np.ndarray | None = None,
                      prompt=False) -> tuple[np.ndarray, np.ndarray | None]:
        """forward without the LM head: appends `tokens` to the cache and returns the
        last layer's output [n, n_embd] and the prompt flags for logits (None: none)."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        n = tokens.shape[0]
        if n == 0:
            raise ValueError("forward needs at least one token")
        if cache.n + n > cache.n_ctx:
            raise ValueError(f"context full: {cache.n} + {n} tokens exceed the context size {cache.n_ctx}")
        if positions is None:
            positions = np.arange(cache.n, cache.n + n, dtype=np.int32)
        x = self.embed(tokens)
        if self.draft_head is not None:
            self.draft_head.see(tokens)
        if self.any_order:
            flags = np.full(n, _core.ROW_ANY_ORDER, dtype=np.uint8)
        else:
            flags = None if prompt is False else np.broadcast_to(np.asarray(prompt, dtype=np.uint8), (n,)).copy()
        self.run_layers(x, np.ascontiguousarray(positions, dtype=np.int32), cache, mask, flags)
        return x, flags

    def prefill(self, tokens, cache: KVCache, block: int = PREFILL_BLOCK, prompt: bool = True) -> np.ndarray:
        """Processes a prompt in blocks of `block` tokens; returns the last token's logits [n_vocab].
        prompt: whether the tokens sum in the prompt order (see forward)."""
        tokens = np.asarray(tokens, dtype=np.int32)
        if tokens.size == 0:
            raise ValueError("the prompt is empty")
        if cache.n + tokens.size > cache.n_ctx:
            raise ValueError(
                f"prompt of {tokens.size} tokens does not fit the context ({cache.free} of {cache.n_ctx} slots free)")
        logits = None
        for start in range(0, tokens.size, block):
            is_last = start + block >= tokens.size
            logits = self.forward(tokens[start:start + block], cache, logits_rows="last" if is_last else None,
                                  prompt=prompt)
        return logits[0]
