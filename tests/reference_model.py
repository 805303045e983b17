"""A plain numpy qwen2 forward pass, the reference that duet's model is tested
against. Written for clarity, in float64, from gguf's own reader and dequantizer."""
from __future__ import annotations

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def _field(reader: GGUFReader, key: str):
    field = reader.fields[key]
    return field.parts[field.data[0]][0]


class ReferenceQwen2:
    def __init__(self, path):
        reader = GGUFReader(str(path))
        arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
        self.n_layer = int(_field(reader, f"{arch}.block_count"))
        self.n_head = int(_field(reader, f"{arch}.attention.head_count"))
        self.n_head_kv = int(_field(reader, f"{arch}.attention.head_count_kv"))
        self.eps = float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon"))
        self.base = float(_field(reader, f"{arch}.rope.freq_base"))
        self.w = {}
        for t in reader.tensors:
            values = dequantize(t.data, t.tensor_type).astype(np.float64)
            self.w[t.name] = values.reshape(list(reversed([int(x) for x in t.shape])))  # numpy order [ne1, ne0]
        self.head_dim = self.w["blk.0.attn_q.weight"].shape[0] // self.n_head

    def rms_norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope_neox(self, x, pos):  # x [n, heads, dim]
        d = self.head_dim
        inv = self.base ** (-np.arange(0, d // 2) * 2.0 / d)
        ang = pos[:, None].astype(np.float64) * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., : d // 2], x[..., d // 2:]
        return np.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)

    def forward(self, tokens, positions=None, mask=None):
        """Logits [n, vocab] for tokens attending causally (or by mask [n, n])."""
        tokens = np.asarray(tokens)
        n = len(tokens)
        pos = np.arange(n) if positions is None else np.asarray(positions)
        visible = np.tril(np.ones((n, n), dtype=bool)) if mask is None else np.asarray(mask, dtype=bool)
        x = self.w["token_embd.weight"][tokens]
        group = self.n_head // self.n_head_kv
        for i in range(self.n_layer):
            p = f"blk.{i}."
            h = self.rms_norm(x, self.w[p + "attn_norm.weight"])
            q = h @ self.w[p + "attn_q.weight"].T + self.w.get(p + "attn_q.bias", 0)
            k = h @ self.w[p + "attn_k.weight"].T + self.w.get(p + "attn_k.bias", 0)
            v = h @ self.w[p + "attn_v.weight"].T + self.w.get(p + "attn_v.bias", 0)
            q = self.rope_neox(q.reshape(n, self.n_head, self.head_dim), pos)
            k = self.rope_neox(k.reshape(n, self.n_head_kv, self.head_dim), pos)
            v = v.reshape(n, self.n_head_kv, self.head_dim)
            out = np.zeros_like(q)
            for head in range(self.n_head):
                kh, vh = k[:, head // group], v[:, head // group]
                scores = q[:, head] @ kh.T / np.sqrt(self.head_dim)
                scores = np.where(visible, scores, -np.inf)
                scores -= scores.max(axis=1, keepdims=True)
                probs = np.exp(scores)
                probs /= probs.sum(axis=1, keepdims=True)
                out[:, head] = probs @ vh
            x = x + out.reshape(n, -1) @ self.w[p + "attn_output.weight"].T
            h = self.rms_norm(x, self.w[p + "ffn_norm.weight"])
            gate = h @ self.w[p + "ffn_gate.weight"].T
            up = h @ self.w[p + "ffn_up.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ self.w[p + "ffn_down.weight"].T
        h = self.rms_norm(x, self.w["output_norm.weight"])
        head = self.w.get("output.weight", self.w["token_embd.weight"])
        return h @ head.T
