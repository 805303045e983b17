"""duet.gguf_file / duet.config / duet.quantize against gguf's own reader and dequantizer."""
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

import tiny_models
from llama_reference import plain_llama
from duet import _core
from duet.config import ModelConfig
from duet.gguf_file import SUPPORTED_TYPES, GGUFError, GGUFFile
from duet.model import Model
from duet.quantize import quantize

SUPPORTED_NAMES = [t.name for t in SUPPORTED_TYPES]
REAL_DIR = Path("/root/.cache/duet")
REAL_MODELS = {
    # file -> (n_layer, n_embd, n_head, n_head_kv, types that must be present); DESIGN.md / reference §4.2
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf": (24, 896, 14, 2, {"F32", "Q5_0", "Q8_0", "Q4_K", "Q6_K"}),
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf": (28, 1536, 12, 2, {"F32", "Q4_K", "Q6_K"}),
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module")
def tiny_q8(tiny_dir):
    return tiny_models.write_tiny_model(tiny_dir / "q8.gguf", weight_type="Q8_0", tied=False, seed=3)


def expected_shapes(n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, tied):
    """ggml-order shapes of every qwen2 tensor (reference/kernels-and-gguf.md §4.1)."""
    n_embd_kv = n_embd // n_head * n_head_kv
    shapes = {"token_embd.weight": (n_embd, n_vocab), "output_norm.weight": (n_embd,)}
    if not tied:
        shapes["output.weight"] = (n_embd, n_vocab)
    for i in range(n_layer):
        p = f"blk.{i}."
        shapes.update({
            p + "attn_norm.weight": (n_embd,), p + "ffn_norm.weight": (n_embd,),
            p + "attn_q.weight": (n_embd, n_embd), p + "attn_q.bias": (n_embd,),
            p + "attn_k.weight": (n_embd, n_embd_kv), p + "attn_k.bias": (n_embd_kv,),
            p + "attn_v.weight": (n_embd, n_embd_kv), p + "attn_v.bias": (n_embd_kv,),
            p + "attn_output.weight": (n_embd, n_embd),
            p + "ffn_gate.weight": (n_embd, n_ff), p + "ffn_up.weight": (n_embd, n_ff),
            p + "ffn_down.weight": (n_ff, n_embd),
        })
    return shapes


# --- quantizers -------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", SUPPORTED_NAMES)
def test_quantize_round_trips_through_gguf_dequantize(type_name):
    rng = np.random.default_rng(1)
    values = (rng.standard_normal((3, 512)) * 0.05).astype(np.float32)
    values[1] += 0.2  # a row that is all positive: exercises the K-quant mins
    values[2, :256] = 0.0  # an all-zero block must not divide by zero
    restored = dequantize(quantize(values, type_name), GGMLQuantizationType[type_name])
    block_max = np.abs(values).reshape(3, -1, 32).max(axis=2, keepdims=True)
    # Each value is within a few steps of its block's range: 4-bit codes have 15 steps.
    error = np.abs(restored - values).reshape(3, -1, 32)
    assert np.all(error <= block_max / 6 + 1e-6)
    assert np.all(restored[2, :256] == 0)


def test_k_quants_reject_rows_not_multiple_of_256():
    with pytest.raises(ValueError, match="multiple of 256"):
        quantize(np.zeros((2, 96), np.float32), "Q4_K")


def test_quantize_names_supported_types_for_unsupported():
    with pytest.raises(ValueError, match="Q6_K"):
        quantize(np.zeros((1, 256), np.float32), "Q2_K")


# --- tiny models ------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", SUPPORTED_NAMES)
def test_tiny_model_loads_with_expected_tensors(tiny_dir, type_name):
    path = tiny_models.write_tiny_model(tiny_dir / f"{type_name}.gguf", weight_type=type_name, tied=True)
    model = GGUFFile(path)
    n_vocab = len(model.metadata["tokenizer.ggml.tokens"])
    shapes = expected_shapes(2, 256, 4, 2, 512, n_vocab, tied=True)
    assert {name: t.shape for name, t in model.tensors.items()} == shapes
    reader = gguf.GGUFReader(path)  # the reference parser
    reference_metadata = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert model.metadata == reference_metadata
    assert model.data_offset == reader.data_offset
    for reference in reader.tensors:
        tensor = model.tensor(reference.name)
        is_matrix = len(tensor.shape) == 2
        assert tensor.type_name == (type_name if is_matrix else "F32")
        assert tensor.n_bytes == reference.n_bytes and tensor.n_elements == reference.n_elements
        assert tensor.offset == reference.data_offset
        assert tensor.data.dtype == np.uint8 and not tensor.data.flags.writeable
        assert tensor.data.shape[0] * tensor.data.shape[1] == tensor.n_bytes
        assert tensor.data.tobytes() == np.asarray(reference.data).tobytes()


def test_tensor_data_is_a_view_of_the_map(tiny_q8):
    model = GGUFFile(tiny_q8)
    embedding = model.tensor("token_embd.weight")
    assert embedding.data.base is not None and not embedding.data.flags.owndata
    restored = embedding.dequantize()
    assert restored.shape == (embedding.shape[1], embedding.shape[0])
    assert np.array_equal(restored, dequantize(np.asarray(embedding.data), GGMLQuantizationType.Q8_0))
    norm = model.tensor("output_norm.weight")
    assert np.array_equal(norm.dequantize(), norm.data.view(np.float32).reshape(-1))


def test_weight_type_per_kind_and_fallback(tiny_dir):
    path = tiny_models.write_tiny_model(
        tiny_dir / "mixed.gguf", n_embd=128, n_ff=256, n_head=2, n_head_kv=1, tied=False,
        weight_type={"default": "Q4_K", "attn_v": "Q6_K", "ffn_down": "Q6_K", "output": "Q6_K", "token_embd": "Q8_0"},
    )
    types = {name: t.type_name for name, t in GGUFFile(path).tensors.items()}
    # Rows of 128 cannot hold 256-value blocks: Q4_K -> Q5_0 and Q6_K -> Q8_0, as llama.cpp does.
    assert types["blk.0.attn_q.weight"] == "Q5_0"
    assert types["blk.0.attn_v.weight"] == "Q8_0"
    assert types["blk.1.ffn_down.weight"] == "Q6_K"  # rows of n_ff = 256
    assert types["output.weight"] == "Q8_0"
    assert types["token_embd.weight"] == "Q8_0"


def test_tiny_metadata_and_config(tiny_q8):
    model = GGUFFile(tiny_q8)
    meta = model.metadata
    assert model.architecture == "qwen2"
    tokens = meta["tokenizer.ggml.tokens"]
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "qwen2"
    assert isinstance(meta["tokenizer.ggml.add_bos_token"], bool) and meta["tokenizer.ggml.add_bos_token"] is False
    assert len(meta["tokenizer.ggml.token_type"]) == len(tokens)
    assert tokens[meta["tokenizer.ggml.eos_token_id"]] == "<|im_end|>"
    assert tokens[meta["tokenizer.ggml.bos_token_id"]] == "<|endoftext|>"
    assert [tokens[i] for i, t in enumerate(meta["tokenizer.ggml.token_type"]) if t == 3] == list(tiny_models.SPECIAL_TOKENS)
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    config = ModelConfig.from_gguf(model)
    assert (config.n_layer, config.n_embd, config.n_head, config.n_head_kv, config.n_ff) == (2, 256, 4, 2, 512)
    assert config.head_dim == 64 and config.n_embd_kv == 128
    assert config.n_vocab == len(tokens) and config.n_ctx_train == 256
    assert config.rope_mode == "neox" and config.rope_freq_base == 1e6
    assert config.rms_eps == pytest.approx(1e-6)
    assert config.tied_embeddings is False
    assert (config.bos_token_id, config.eos_token_id) == (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"])


def test_bpe_merges_build_their_tokens():
    tokens, types, merges = tiny_models.tiny_vocabulary()
    assert len(tokens) == 256 + len(merges) + len(tiny_models.SPECIAL_TOKENS) and len(merges) == tiny_models.DEFAULT_MERGES
    assert len(set(tokens)) == len(tokens)
    known = set(tokens[:256])
    for merge in merges:
        left, right = merge.split(" ")
        assert left in known and right in known  # every merge joins tokens that exist before it
        known.add(left + right)
    assert tiny_models.tiny_vocabulary() == (tokens, types, merges)  # deterministic


def test_tied_model_has_no_output_and_config_says_so(tiny_dir):
    config = ModelConfig.from_gguf(GGUFFile(tiny_models.write_tiny_model(tiny_dir / "tied.gguf", tied=True)))
    assert config.tied_embeddings is True


def test_tiny_writer_leaves_no_temp_file(tiny_dir):
    path = tiny_models.write_tiny_model(tiny_dir / "clean.gguf")
    assert [p.name for p in tiny_dir.iterdir() if p.name.startswith(".")] == []
    assert path.is_file()


def test_llama_cpp_reads_the_tiny_model(tiny_q8):
    model = plain_llama(tiny_q8, n_ctx=64)
    text = b"def below_zero(operations): return the balance"
    tokens = model.tokenize(text, add_bos=False)
    assert model.detokenize(tokens) == text
    assert len(tokens) < len(text)  # merges were applied
    model.eval(tokens)
    assert np.isfinite(np.asarray(model.scores[: len(tokens)])).all()


def llama_cpp_logits(path: Path) -> np.ndarray:
    """[n_tokens, n_vocab] logits llama.cpp computes for a fixed prompt."""
    model = plain_llama(path, n_ctx=64)
    tokens = model.tokenize(b"def below_zero(operations): return the balance", add_bos=False)
    model.eval(tokens)
    return np.asarray(model.scores[: len(tokens)])


@pytest.mark.parametrize("type_name", ["Q4_K", "Q5_K", "Q6_K"])
def test_llama_cpp_reads_our_k_quants(tiny_dir, type_name):
    # Same seed, same float weights: llama.cpp's own K-quant kernels must see (nearly) the
    # F32 model. A byte-layout mistake would scramble the weights and the logits with them.
    reference = llama_cpp_logits(tiny_models.write_tiny_model(tiny_dir / "ref32.gguf", weight_type="F32", tied=False, seed=7))
    logits = llama_cpp_logits(tiny_models.write_tiny_model(tiny_dir / f"k_{type_name}.gguf", weight_type=type_name, tied=False, seed=7))
    assert np.corrcoef(logits.ravel(), reference.ravel())[0, 1] > 0.9


# --- damaged and unsupported files ------------------------------------------------------------


def cut_copy(source: Path, dest: Path, n_bytes: int) -> Path:
    dest.write_bytes(source.read_bytes()[:n_bytes])
    return dest


def test_bad_magic(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGML" + bytes(100))
    with pytest.raises(GGUFError, match="not a GGUF file"):
        GGUFFile(path)


@pytest.mark.parametrize("where, message", [("header", "truncated header"), ("metadata", "truncated metadata"),
                                            ("infos", "truncated tensor infos"), ("data", "truncated tensor data")])
def test_truncated_files(tiny_q8, tmp_path, where, message):
    reader = gguf.GGUFReader(tiny_q8)
    cut = {
        "header": 12,
        "metadata": reader.fields["tokenizer.ggml.merges"].offset + 10,
        "infos": reader.data_offset - 40,
        "data": reader.tensors[-1].data_offset + 10,  # reader offsets are absolute
    }[where]
    with pytest.raises(GGUFError, match=message):
        GGUFFile(cut_copy(tiny_q8, tmp_path / "cut.gguf", cut))


def write_gguf(path: Path, arch: str, tensors: dict, alignment: int = 0) -> Path:
    """tensors: name -> (array, raw ggml type or None)."""
    writer = gguf.GGUFWriter(path, arch)
    if alignment:
        writer.add_custom_alignment(alignment)
    for name, (array, raw_type) in tensors.items():
        writer.add_tensor(name, array, raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def q2_k_tensor():
    block_bytes = gguf.GGML_QUANT_SIZES[GGMLQuantizationType.Q2_K][1]
    return np.zeros((4, 2 * block_bytes), np.uint8), GGMLQuantizationType.Q2_K


def test_unsupported_tensor_type_lists_supported(tmp_path):
    path = write_gguf(tmp_path / "q2k.gguf", "qwen2", {"blk.0.ffn_down.weight": q2_k_tensor()})
    with pytest.raises(GGUFError) as error:
        GGUFFile(path)
    message = str(error.value)
    assert "Q2_K" in message and "blk.0.ffn_down.weight" in message
    for name in SUPPORTED_NAMES:
        assert name in message


def test_unknown_tensor_type_id(tmp_path):
    path = write_gguf(tmp_path / "odd.gguf", "qwen2", {"odd.weight": q2_k_tensor()})
    raw = bytearray(path.read_bytes())
    # tensor info: name, uint32 n_dims (2), int64 ne[2], then the uint32 type id
    type_at = raw.index(b"odd.weight") + len(b"odd.weight") + 4 + 2 * 8
    raw[type_at : type_at + 4] = (99).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(GGUFError, match="unknown type id 99.*Q6_K"):
        GGUFFile(path)


def patch_tensor_info(path: Path, name: str, shape=None, relative_offset=None) -> None:
    """Rewrites a tensor info in place: name, uint32 n_dims, int64 ne[n_dims], uint32 type, uint64 offset."""
    raw = bytearray(path.read_bytes())
    dims_at = raw.index(name.encode()) + len(name) + 4
    n_dims = int.from_bytes(raw[dims_at - 4:dims_at], "little")
    if shape is not None:
        assert len(shape) == n_dims
        for i, ne in enumerate(shape):
            raw[dims_at + 8 * i:dims_at + 8 * (i + 1)] = ne.to_bytes(8, "little")
    if relative_offset is not None:
        offset_at = dims_at + 8 * n_dims + 4
        raw[offset_at:offset_at + 8] = relative_offset.to_bytes(8, "little")
    path.write_bytes(bytes(raw))


def test_tensor_offset_past_the_end(tmp_path):
    # Found by the fuzzer's probes: 64-bit fields were read as their low 32 bits, so an
    # offset of 2**40 became 0 and the tensor loaded over the wrong bytes.
    path = write_gguf(tmp_path / "far.gguf", "qwen2", {"a.weight": (np.ones(8, np.float32), None)})
    patch_tensor_info(path, "a.weight", relative_offset=2**40)
    with pytest.raises(GGUFError, match=r"tensor 'a.weight' ends at byte \d{13}"):
        GGUFFile(path)


def test_tensor_size_that_overflows_64_bits_is_past_the_end(tmp_path):
    # 2**32 x 2**32 floats: 2**66 bytes, which int64 arithmetic would wrap to 0.
    path = write_gguf(tmp_path / "huge.gguf", "qwen2", {"a.weight": (np.ones((2, 8), np.float32), None)})
    patch_tensor_info(path, "a.weight", shape=(2**32, 2**32))
    with pytest.raises(GGUFError, match=r"tensor 'a.weight' ends at byte 7378697629483820\d{4} "):  # 2**66 + data offset
        GGUFFile(path)


def test_embedding_that_disagrees_with_the_config_is_named(tmp_path):
    # Same bytes, rows half as long: the kernels would refuse it deep inside a pass.
    path = tiny_models.write_tiny_model(tmp_path / "m.gguf", n_layer=1, n_embd=64, n_head=2, n_head_kv=1,
                                        n_ff=128, n_merges=20)
    n_vocab = GGUFFile(path).tensor("token_embd.weight").shape[1]
    patch_tensor_info(path, "token_embd.weight", shape=(32, 2 * n_vocab))
    with pytest.raises(GGUFError, match=rf"token_embd.weight has shape \[32, {2 * n_vocab}\], the model needs \[64, "):
        Model(GGUFFile(path), _core.ThreadPool(1))


def test_64_bit_metadata_values_are_read_whole(tmp_path):
    writer = gguf.GGUFWriter(tmp_path / "wide.gguf", "qwen2")
    writer.add_uint64("test.unsigned", 2**40 + 5)
    writer.add_int64("test.signed", -(2**40) - 7)
    writer.add_float64("test.float", 1.0 / 3.0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    metadata = GGUFFile(tmp_path / "wide.gguf").metadata
    assert metadata["test.unsigned"] == 2**40 + 5
    assert metadata["test.signed"] == -(2**40) - 7
    assert metadata["test.float"] == 1.0 / 3.0


def test_custom_alignment_matches_gguf_reader(tmp_path):
    rng = np.random.default_rng(5)
    tensors = {"a.weight": (rng.standard_normal(3).astype(np.float32), None),
               "b.weight": (quantize(rng.standard_normal((2, 64)), "Q8_0"), GGMLQuantizationType.Q8_0)}
    path = write_gguf(tmp_path / "aligned.gguf", "qwen2", tensors, alignment=256)
    model, reader = GGUFFile(path), gguf.GGUFReader(path)
    assert model.metadata["general.alignment"] == 256 and model.data_offset == reader.data_offset
    assert model.data_offset % 256 == 0
    for reference in reader.tensors:
        assert model.tensor(reference.name).offset == reference.data_offset
        assert model.tensor(reference.name).data.tobytes() == np.asarray(reference.data).tobytes()


def test_unsupported_architecture(tmp_path):
    path = write_gguf(tmp_path / "gpt.gguf", "gpt2", {"token_embd.weight": (np.zeros((4, 32), np.float32), None)})
    with pytest.raises(GGUFError, match="unsupported architecture 'gpt2'"):
        ModelConfig.from_gguf(GGUFFile(path))


@pytest.mark.parametrize("key, value", [
    ("qwen2.embedding_length", [64]), ("qwen2.block_count", "2"), ("qwen2.context_length", float("inf")),
    ("qwen2.attention.layer_norm_rms_epsilon", "small"), ("qwen2.attention.head_count_kv", True),
    ("tokenizer.ggml.eos_token_id", 2.5),
])
def test_config_metadata_of_the_wrong_type_is_named(tiny_q8, key, value):
    model = GGUFFile(tiny_q8)
    model.metadata[key] = value
    with pytest.raises(GGUFError, match=key):
        ModelConfig.from_gguf(model)


def test_tensor_lookup_error_names_near_tensors(tiny_q8):
    with pytest.raises(KeyError, match="blk.0.attn_q.weight") as error:
        GGUFFile(tiny_q8).tensor("blk.0.attn_q")
    # A model file without a tensor the model needs is a bad file, refused like the others.
    assert isinstance(error.value, GGUFError) and str(error.value).startswith("no tensor 'blk.0.attn_q'")


def test_file_is_opened_read_only(tiny_q8):
    os.chmod(tiny_q8, 0o444)
    try:
        model = GGUFFile(tiny_q8)
        with pytest.raises(ValueError):
            model.tensor("output_norm.weight").data[0, 0] = 1
    finally:
        os.chmod(tiny_q8, 0o644)


# --- the real default pair ---------------------------------------------------------------------


@pytest.mark.parametrize("file_name", sorted(REAL_MODELS))
def test_real_models_load(file_name):
    path = REAL_DIR / file_name
    if not path.is_file():
        pytest.skip(f"{path} not present (duet models pull)")
    n_layer, n_embd, n_head, n_head_kv, types = REAL_MODELS[file_name]
    model = GGUFFile(path)
    config = ModelConfig.from_gguf(model)
    assert (config.n_layer, config.n_embd, config.n_head, config.n_head_kv) == (n_layer, n_embd, n_head, n_head_kv)
    assert config.n_vocab == 151936 and config.rope_mode == "neox" and config.rope_freq_base == 1e6
    assert {t.type_name for t in model.tensors.values()} == types
    assert len(model.tensors) == n_layer * 12 + 2 + (0 if config.tied_embeddings else 1)
