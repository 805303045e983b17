"""The attention and layer kernels of duet._core against plain numpy references."""
import numpy as np
import pytest

from duet import _core

ISAS = _core.isa_runnable()
# The vector widths of llama.cpp's builds whose rounding a path can follow (AVX2: 8,
# AVX-512: 16); every path computes both.
WIDTHS = [8, 16]


@pytest.fixture(scope="module")
def pool():
    return _core.ThreadPool(2)


# ---- references -----------------------------------------------------------------


def attention_reference(q, k, v, n_kv, mask, scale):
    """float64 softmax attention with GQA; masked rows are never read. With an f16
    cache the probabilities are rounded to f16 before they weigh the values, as
    llama.cpp's product with an f16 V does."""
    n_query, n_head, head_dim = q.shape
    group = n_head // k.shape[1]
    out = np.zeros((n_query, n_head, head_dim))
    for t in range(n_query):
        visible = np.flatnonzero(mask[t, :n_kv])
        if visible.size == 0:
            continue
        for h in range(n_head):
            keys = k[visible, h // group].astype(np.float64)
            values = v[visible, h // group].astype(np.float64)
            scores = keys @ q[t, h].astype(np.float64) * scale
            weights = np.exp(scores - scores.max())
            probabilities = weights / weights.sum()
            if v.dtype == np.float16:
                probabilities = probabilities.astype(np.float16).astype(np.float64)
            out[t, h] = probabilities @ values
    return out


def rope_angles_like_ggml(pos, n_rot, base):
    """[R, n_rot/2] angles built as ggml does: theta *= theta_scale in float32."""
    theta_scale = np.float32(base) ** np.float32(-2.0 / n_rot)
    theta = pos.astype(np.float32)
    angles = []
    for _ in range(n_rot // 2):
        angles.append(theta.copy())
        theta = (theta * theta_scale).astype(np.float32)
    return np.stack(angles, axis=1).astype(np.float64)


def rope_angles_exact(pos, n_rot, base):
    i = np.arange(n_rot // 2)
    return pos[:, None].astype(np.float64) * float(base) ** (-2.0 * i / n_rot)[None, :]


def rope_reference(x, angles, n_rot, mode):
    """Rotates x [R, H, D] by angles [R, n_rot/2] in float64; dims >= n_rot unchanged."""
    out = x.astype(np.float64).copy()
    half = n_rot // 2
    if mode == 2:
        first, second = np.arange(half), np.arange(half) + half
    else:
        first, second = np.arange(half) * 2, np.arange(half) * 2 + 1
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    x0, x1 = out[:, :, first].copy(), out[:, :, second].copy()
    out[:, :, first] = x0 * cos - x1 * sin
    out[:, :, second] = x0 * sin + x1 * cos
    return out


# ---- masks ----------------------------------------------------------------------


def causal_mask(n_prefix, n_query):
    n_kv = n_prefix + n_query
    return (np.arange(n_kv)[None, :] <= n_prefix + np.arange(n_query)[:, None]).astype(np.uint8)


def random_tree(rng, n_nodes):
    """parent[i] < i, or -1 for a child of the prefix's last token."""
    return np.array([rng.integers(-1, i) if i else -1 for i in range(n_nodes)])


def tree_mask_and_depth(parent, n_prefix):
    """Each node sees the prefix, its ancestors and itself; depth counts from 0."""
    n_nodes = len(parent)
    mask = np.zeros((n_nodes, n_prefix + n_nodes), np.uint8)
    mask[:, :n_prefix] = 1
    depth = np.zeros(n_nodes, np.int32)
    for i in range(n_nodes):
        node = i
        while node >= 0:
            mask[i, n_prefix + node] = 1
            node = parent[node]
        depth[i] = 0 if parent[i] < 0 else depth[parent[i]] + 1
    return mask, depth


def make_cache(rng, n_cap, n_head_kv, head_dim, dtype, n_kv):
    """k, v of n_cap rows; rows from n_kv on hold NaN, which must never be read."""
    k = rng.standard_normal((n_cap, n_head_kv, head_dim)).astype(dtype)
    v = rng.standard_normal((n_cap, n_head_kv, head_dim)).astype(dtype)
    k[n_kv:] = np.nan
    v[n_kv:] = np.nan
    return k, v


def check_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-5)


def check_attention(out, q, k, v, n_kv, mask, scale):
    """out against attention_reference. f16 probabilities near a rounding boundary
    may round the other way in f32 than in float64: one f16 step is 2^-11 of it."""
    expected = attention_reference(q, k, v, n_kv, mask, scale)
    if v.dtype == np.float16:
        np.testing.assert_allclose(out, expected, rtol=1e-3, atol=2e-4)
    else:
        check_close(out, expected)


# ---- attention ------------------------------------------------------------------

HEAD_SHAPES = [(2, 2), (12, 2), (14, 2), (7, 1)]  # GQA ratios 1, 6, 7, 7


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("n_head,n_head_kv", HEAD_SHAPES)
@pytest.mark.parametrize("head_dim", [64, 128, 72, 13])
def test_attention_causal(pool, isa, dtype, n_head, n_head_kv, head_dim):
    rng = np.random.default_rng(head_dim * 100 + n_head)
    n_prefix, n_query = 37, 5
    n_kv = n_prefix + n_query
    q = rng.standard_normal((n_query, n_head, head_dim)).astype(np.float32)
    k, v = make_cache(rng, n_kv + 11, n_head_kv, head_dim, dtype, n_kv)
    mask = causal_mask(n_prefix, n_query)
    scale = 1.0 / np.sqrt(head_dim)
    out = _core.attention(q, k, v, n_kv, mask, scale, pool, isa=isa)
    assert out.dtype == np.float32 and out.shape == q.shape
    check_attention(out, q, k, v, n_kv, mask, scale)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("seed", range(4))
def test_attention_tree_with_rope_positions(pool, isa, dtype, seed):
    """A token tree: masks from random parents, RoPE at prefix length + depth."""
    rng = np.random.default_rng(seed)
    n_head, n_head_kv, head_dim, n_prefix, n_nodes = 12, 2, 64, 23 + seed, 9 + 3 * seed
    parent = random_tree(rng, n_nodes)
    mask, depth = tree_mask_and_depth(parent, n_prefix)
    n_kv = n_prefix + n_nodes
    pos = np.concatenate([np.arange(n_prefix), n_prefix + depth]).astype(np.int32)
    q = rng.standard_normal((n_nodes, n_head, head_dim)).astype(np.float32)
    k32 = rng.standard_normal((n_kv, n_head_kv, head_dim)).astype(np.float32)
    v = rng.standard_normal((n_kv, n_head_kv, head_dim)).astype(dtype)
    q_ref = rope_reference(q, rope_angles_like_ggml(pos[n_prefix:], head_dim, 1e6), head_dim, 2)
    k_ref = rope_reference(k32, rope_angles_like_ggml(pos, head_dim, 1e6), head_dim, 2)
    _core.rope(q, pos[n_prefix:].copy(), head_dim, 1e6, 2)
    _core.rope(k32, pos, head_dim, 1e6, 2)
    k = k32.astype(dtype)
    out = _core.attention(q, k, v, n_kv, mask, 0.125, pool, isa=isa)
    check_attention(out, q_ref, k_ref.astype(dtype), v, n_kv, mask, 0.125)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_attention_fully_masked_query_gives_zeros(pool, isa, dtype):
    rng = np.random.default_rng(5)
    q = rng.standard_normal((3, 6, 64)).astype(np.float32)
    k, v = make_cache(rng, 20, 1, 64, dtype, 20)
    mask = rng.integers(0, 2, (3, 20)).astype(np.uint8)
    mask[1] = 0
    out = _core.attention(q, k, v, 20, mask, 0.125, pool, isa=isa)
    assert np.all(out[1] == 0)
    check_attention(out, q, k, v, 20, mask, 0.125)


@pytest.mark.parametrize("isa", ISAS)
def test_attention_masked_rows_are_never_read(pool, isa):
    rng = np.random.default_rng(6)
    q = rng.standard_normal((2, 4, 64)).astype(np.float32)
    k, v = make_cache(rng, 30, 2, 64, np.float16, 30)
    mask = np.ones((2, 30), np.uint8)
    hidden = [3, 17, 29]
    mask[:, hidden] = 0
    k[hidden] = np.inf
    v[hidden] = np.nan
    out = _core.attention(q, k, v, 30, mask, 0.125, pool, isa=isa)
    assert np.all(np.isfinite(out))
    check_attention(out, q, k, v, 30, mask, 0.125)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("scale", [1 / np.sqrt(128), 1.5])  # 1.5: score gaps beyond -87, where exp underflows
def test_attention_decode_long_cache(pool, isa, dtype, scale):
    """One query over a long cache (the decode case), n_kv not a multiple of anything."""
    rng = np.random.default_rng(7)
    n_kv = 2999
    q = rng.standard_normal((1, 12, 128)).astype(np.float32)
    k, v = make_cache(rng, 3072, 2, 128, dtype, n_kv)
    mask = np.ones((1, n_kv), np.uint8)
    out = _core.attention(q, k, v, n_kv, mask, scale, pool, isa=isa)
    check_attention(out, q, k, v, n_kv, mask, scale)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("head_dim", [64, 128, 13])
@pytest.mark.parametrize("n_head,n_head_kv", [(14, 2), (7, 1)])
def test_attention_batch_invariance(isa, width, dtype, head_dim, n_head, n_head_kv):
    """A query's output is bit-identical alone, inside its block, or inside another
    block of other queries with other masks and summation orders (prompt flags), on
    any number of threads (which also changes how the heads of a kv group are split
    into work items)."""
    rng = np.random.default_rng(head_dim)
    n_prefix, n_query = 70, 7  # over two tiles of cache rows
    n_kv = n_prefix + n_query
    mask, _ = tree_mask_and_depth(random_tree(rng, n_query), n_prefix)
    q = rng.standard_normal((n_query, n_head, head_dim)).astype(np.float32)
    k, v = make_cache(rng, n_kv + 5, n_head_kv, head_dim, dtype, n_kv)
    prompt = rng.integers(0, 2, n_query).astype(np.uint8)
    pools = [_core.ThreadPool(1), _core.ThreadPool(2), _core.ThreadPool(3)]
    block = _core.attention(q, k, v, n_kv, mask, 0.1, pools[1], isa=isa, prompt=prompt, width=width)
    for t in range(n_query):
        for p in pools:
            alone = _core.attention(q[t : t + 1].copy(), k, v, n_kv, mask[t : t + 1].copy(), 0.1, p, isa=isa,
                                    prompt=prompt[t : t + 1].copy(), width=width)
            np.testing.assert_array_equal(alone[0], block[t])
        others = rng.standard_normal((4, n_head, head_dim)).astype(np.float32)
        other_masks = rng.integers(0, 2, (4, n_kv)).astype(np.uint8)
        mixed_q = np.concatenate([others[:2], q[t : t + 1], others[2:]])
        mixed_mask = np.concatenate([other_masks[:2], mask[t : t + 1], other_masks[2:]])
        mixed_prompt = np.array([1 - prompt[t], prompt[t], prompt[t], 1 - prompt[t], 1], np.uint8)
        mixed = _core.attention(mixed_q, k, v, n_kv, mixed_mask, 0.1, pools[1], isa=isa, prompt=mixed_prompt,
                                width=width)
        np.testing.assert_array_equal(mixed[2], block[t])


@pytest.mark.parametrize("isa", ISAS)
def test_attention_orders_are_other_summations(pool, isa):
    """The prompt order (one vector: 8 or 16 lanes) and the decode order (four: 32 or
    64), in either build's width, sum the same products: close to each other, and
    not bit-identical everywhere on random data."""
    rng = np.random.default_rng(11)
    q = rng.standard_normal((3, 12, 128)).astype(np.float32)
    k, v = make_cache(rng, 90, 2, 128, np.float32, 90)
    mask = np.ones((3, 90), np.uint8)
    outs = [_core.attention(q, k, v, 90, mask, 0.09, pool, isa=isa, prompt=np.full(3, flag, np.uint8), width=width)
            for flag in (0, 1) for width in WIDTHS]
    for i, out in enumerate(outs):
        check_close(out, outs[0])
        for other in outs[:i]:
            assert not np.array_equal(out, other)
    with pytest.raises(ValueError, match="prompt"):
        _core.attention(q, k, v, 90, mask, 0.09, pool, isa=isa, prompt=np.ones(2, np.uint8))
    with pytest.raises(ValueError, match="width"):
        _core.attention(q, k, v, 90, mask, 0.09, pool, isa=isa, width=4)


def test_attention_width_follows_the_isa():
    assert {isa: _core.ggml_width(isa) for isa in ISAS} == {isa: 16 if isa in ("avx512", "amx") else 8 for isa in ISAS}


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("width", WIDTHS)
def test_attention_isa_paths_agree(pool, dtype, width):
    """Long enough for two tiles and a softmax over whole and partial groups, with
    scores far enough apart that exp's 2^n leaves the normal range."""
    rng = np.random.default_rng(8)
    q = (rng.standard_normal((4, 12, 128)) * 3).astype(np.float32)
    k, v = make_cache(rng, 150, 2, 128, dtype, 150)
    mask = causal_mask(146, 4)
    prompt = np.array([1, 0, 1, 0], np.uint8)
    outs = [_core.attention(q, k, v, 150, mask, 0.5, pool, isa=isa, prompt=prompt, width=width) for isa in ISAS]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("head_dim", [64, 96, 128])
def test_attention_decode_order_rows_agree_across_paths(pool, dtype, head_dim):
    """The decode order, which AVX-512 scores sixteen rows at a time and sums with
    its 64 lanes in registers: queries that see 1 to 150 rows (part of a block of
    16 or of 64, one or more whole ones, scattered rows), bit-identical on every
    path. head_dim 96 takes the AVX2 score and the AVX-512 sums."""
    rng = np.random.default_rng(head_dim)
    n_kv = 150
    counts = [1, 5, 15, 16, 17, 63, 64, 65, 97, 150]
    mask = np.zeros((len(counts) + 1, n_kv), np.uint8)
    for row, count in enumerate(counts):
        mask[row, :count] = 1
    mask[-1] = rng.integers(0, 2, n_kv)  # scattered rows
    q = (rng.standard_normal((len(mask), 14, head_dim)) * 2).astype(np.float32)
    k, v = make_cache(rng, n_kv + 3, 2, head_dim, dtype, n_kv)
    outs = [_core.attention(q, k, v, n_kv, mask, 0.3, pool, isa=isa, width=16) for isa in ISAS]
    check_attention(outs[0], q, k, v, n_kv, mask, 0.3)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_attention_writes_into_out(pool):
    rng = np.random.default_rng(9)
    q = rng.standard_normal((2, 2, 16)).astype(np.float32)
    k, v = make_cache(rng, 4, 1, 16, np.float32, 4)
    out = np.full(q.shape, 7.0, np.float32)
    result = _core.attention(q, k, v, 4, np.ones((2, 4), np.uint8), 0.25, pool, out=out)
    assert result is out or np.shares_memory(result, out)
    check_attention(out, q, k, v, 4, np.ones((2, 4)), 0.25)


def test_attention_rejects_bad_input(pool):
    q = np.zeros((2, 4, 16), np.float32)
    k = np.zeros((8, 2, 16), np.float32)
    mask = np.ones((2, 6), np.uint8)
    good = dict(q=q, k=k, v=k, n_kv=6, mask=mask, scale=1.0, pool=pool)
    bad_cases = [
        dict(q=q.astype(np.float64)),
        dict(q=np.zeros((2, 8, 16), np.float32)[:, ::2]),  # not contiguous
        dict(k=np.zeros((8, 3, 16), np.float32), v=np.zeros((8, 3, 16), np.float32)),  # 4 % 3
        dict(k=np.zeros((8, 2, 8), np.float32), v=np.zeros((8, 2, 8), np.float32)),  # head_dim
        dict(v=k.astype(np.float16)),
        dict(v=np.zeros((7, 2, 16), np.float32)),
        dict(n_kv=9),
        dict(n_kv=-1),
        dict(mask=np.ones((2, 7), np.uint8)),
        dict(mask=np.ones((2, 6), bool)),
        dict(out=np.zeros((2, 4, 15), np.float32)),
    ]
    for bad in bad_cases:
        with pytest.raises(ValueError):
            _core.attention(**{**good, **bad})
    with pytest.raises(ValueError):
        _core.attention(**good, isa="no-such-isa")


# ---- rope -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0, 2])
@pytest.mark.parametrize("head_dim,n_rot", [(64, 64), (128, 128), (128, 64), (10, 6)])
@pytest.mark.parametrize("base", [1e4, 1e6])
def test_rope_matches_ggml_angles(mode, head_dim, n_rot, base):
    rng = np.random.default_rng(head_dim + n_rot)
    pos = rng.integers(0, 5000, 9).astype(np.int32)
    x = rng.standard_normal((9, 3, head_dim)).astype(np.float32)
    expected = rope_reference(x, rope_angles_like_ggml(pos, n_rot, base), n_rot, mode)
    _core.rope(x, pos, n_rot, base, mode)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", [0, 2])
def test_rope_matches_exact_formula_at_small_positions(mode):
    """theta_i = pos * base^(-2i/n_rot): the float recurrence drifts little at small pos."""
    rng = np.random.default_rng(1)
    pos = np.arange(0, 64, 7, dtype=np.int32)
    x = rng.standard_normal((len(pos), 2, 128)).astype(np.float32)
    expected = rope_reference(x, rope_angles_exact(pos, 128, 1e6), 128, mode)
    _core.rope(x, pos, 128, 1e6, mode)
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-4)


def test_rope_position_zero_is_identity():
    x = np.random.default_rng(2).standard_normal((1, 2, 64)).astype(np.float32)
    before = x.copy()
    _core.rope(x, np.zeros(1, np.int32), 64, 1e6, 2)
    np.testing.assert_array_equal(x, before)


def test_rope_rejects_bad_input():
    x = np.zeros((2, 2, 8), np.float32)
    pos = np.zeros(2, np.int32)
    with pytest.raises(ValueError):
        _core.rope(x, pos, 7, 1e4, 2)  # odd
    with pytest.raises(ValueError):
        _core.rope(x, pos, 10, 1e4, 2)  # > head_dim
    with pytest.raises(ValueError):
        _core.rope(x, pos, 8, 1e4, 1)  # mode
    with pytest.raises(ValueError):
        _core.rope(x, np.zeros(3, np.int32), 8, 1e4, 2)
    with pytest.raises(ValueError):
        _core.rope(x, np.zeros(2, np.int64), 8, 1e4, 2)
    with pytest.raises(ValueError):
        _core.rope(x.reshape(4, 8), pos, 8, 1e4, 2)
    read_only = x.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        _core.rope(read_only, pos, 8, 1e4, 2)


# ---- rms_norm, swiglu, adds -------------------------------------------------------


@pytest.mark.parametrize("n", [1, 896, 1536, 1001])
def test_rms_norm(n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((5, n)) * 3).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = x64 / np.sqrt((x64**2).mean(axis=1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(_core.rms_norm(x, w, 1e-6), expected, rtol=2e-6, atol=1e-6)
    out = np.empty_like(x)
    _core.rms_norm(x, w, 1e-6, out=out)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-6)


def test_rms_norm_rows_independent():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    block = _core.rms_norm(x, w, 1e-6)
    for r in range(6):
        np.testing.assert_array_equal(_core.rms_norm(x[r : r + 1].copy(), w, 1e-6)[0], block[r])


def test_rms_norm_rejects_bad_input():
    with pytest.raises(ValueError):
        _core.rms_norm(np.zeros((2, 4), np.float32), np.zeros(5, np.float32), 1e-6)
    with pytest.raises(ValueError):
        _core.rms_norm(np.zeros(4, np.float32), np.zeros(4, np.float32), 1e-6)
    with pytest.raises(ValueError):
        _core.rms_norm(np.zeros((2, 4), np.float32), np.zeros(4, np.float32), 1e-6, out=np.zeros((2, 4)))


def swiglu_inputs():
    """Gates over exp's whole range (its 2^n split in two beyond |n| = 126, zero or
    infinity beyond 192) and a length that leaves a scalar tail after blocks of 8."""
    rng = np.random.default_rng(4)
    extremes = [-100.0, 100.0, 0.0, -90.0, 88.0, -87.5, 89.0, -140.0, 140.0]
    gate = np.concatenate([rng.standard_normal(1000) * 4, extremes]).astype(np.float32)
    return gate, rng.standard_normal(gate.shape).astype(np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("width", WIDTHS)
def test_swiglu(isa, width):
    gate, up = swiglu_inputs()
    g = gate.astype(np.float64)
    with np.errstate(over="ignore"):
        expected = g / (1 + np.exp(-g)) * up
    _core.swiglu(gate, up, isa=isa, width=width)
    np.testing.assert_allclose(gate, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("width", WIDTHS)
def test_swiglu_isa_paths_agree_bit_for_bit(width):
    """Every path evaluates ggml's exp of a build's width with the same operations."""
    outs = []
    for isa in ISAS:
        gate, up = swiglu_inputs()
        _core.swiglu(gate, up, isa=isa, width=width)
        outs.append(gate)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_swiglu_widths_round_differently():
    """AVX-512 ggml's exp (1 inside the polynomial, 2^n by scalef) is another rounding
    of the same function: some gates differ in the last bit, none by more."""
    outs = []
    for width in WIDTHS:
        gate, up = swiglu_inputs()
        _core.swiglu(gate, up, width=width)
        outs.append(gate)
    assert not np.array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[1], outs[0], rtol=3e-7, atol=1e-30)
    with pytest.raises(ValueError, match="width"):
        _core.swiglu(*swiglu_inputs(), width=12)


def test_swiglu_rejects_bad_input():
    with pytest.raises(ValueError):
        _core.swiglu(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError):
        _core.swiglu(np.zeros(3, np.float64), np.zeros(3, np.float64))


def test_add_bias_and_add_inplace():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 9)).astype(np.float32)
    b = rng.standard_normal(9).astype(np.float32)
    y = rng.standard_normal((4, 9)).astype(np.float32)
    expected = (x + b) + y
    _core.add_bias(x, b)
    _core.add_inplace(x, y)
    np.testing.assert_array_equal(x, expected)
    with pytest.raises(ValueError):
        _core.add_bias(x, np.zeros(8, np.float32))
    with pytest.raises(ValueError):
        _core.add_inplace(x, np.zeros((4, 8), np.float32))
    with pytest.raises(ValueError):
        _core.add_inplace(x[:, ::2], np.zeros((4, 5), np.float32))


def test_thread_pool_many_small_jobs_stay_exact():
    """Thousands of back-to-back jobs on a pool whose helper may wake late: every
    result must still be complete and exact (a late helper must never run a chunk
    of the wrong job)."""
    rng = np.random.default_rng(5)
    pool = _core.ThreadPool(3)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    expected = _core.rms_norm(x, w, 1e-6)
    q = rng.standard_normal((2, 4, 16)).astype(np.float32)
    k = rng.standard_normal((8, 2, 16)).astype(np.float32)
    mask = np.ones((2, 8), dtype=np.uint8)
    first = _core.attention(q, k, k, 8, mask, 0.25, pool)
    for _ in range(3000):
        assert np.array_equal(_core.attention(q, k, k, 8, mask, 0.25, pool), first)
    assert np.array_equal(_core.rms_norm(x, w, 1e-6), expected)


# ---- the bandwidth baseline -------------------------------------------------------


@pytest.mark.parametrize("prefetch", [False, True])
@pytest.mark.parametrize("n", [0, 7, 32, 100_003, 3 * 32768 + 41])
def test_read_bytes_is_the_xor_of_every_word(pool, n, prefetch):
    """Every byte is read once whatever the threads' split (the tail of the last chunk
    included), so the benchmark's read is a read of the whole buffer."""
    buf = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    words = np.frombuffer(np.concatenate([buf, np.zeros(-n % 8, np.uint8)]).tobytes(), dtype="<u8")
    assert _core.read_bytes(buf, pool, prefetch=prefetch) == int(np.bitwise_xor.reduce(words, initial=0))
