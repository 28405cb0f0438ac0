import pytest
import torch

from recurlab.ops import KVCache, attention, attention_step
from tests.conftest import assert_rel_close


def qkv(B=2, T=20, H=4, H_kv=4, Dh=8, dtype=torch.float64):
    return (torch.randn(B, T, H, Dh, dtype=dtype), torch.randn(B, T, H_kv, Dh, dtype=dtype),
            torch.randn(B, T, H_kv, Dh, dtype=dtype))


def naive(q, k, v, window=None, causal=True):
    """Per query, softmax over the keys it may see, straight from the definition."""
    B, T, H, Dh = q.shape
    group = H // k.shape[2]
    k, v = k.repeat_interleave(group, 2), v.repeat_interleave(group, 2)
    o = torch.zeros_like(q)
    for t in range(T):
        lo = 0 if window is None else max(0, t - window + 1)
        hi = t + 1 if causal else T
        s = torch.einsum("bhd,bshd->bhs", q[:, t], k[:, lo:hi]) * Dh**-0.5
        o[:, t] = torch.einsum("bhs,bshd->bhd", s.softmax(-1), v[:, lo:hi])
    return o


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
@pytest.mark.parametrize("window", [None, 1, 5, 7])
@pytest.mark.parametrize("H_kv", [4, 2, 1])
def test_matches_definition(backend, window, H_kv):
    q, k, v = qkv(H_kv=H_kv)
    o, cache = attention(q, k, v, window=window, backend=backend)
    torch.testing.assert_close(o, naive(q, k, v, window))
    assert cache.offset == 20
    assert cache.length == (20 if window is None else window - 1)


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_full_attention(backend):
    q, k, v = qkv()
    o, _ = attention(q, k, v, causal=False, backend=backend)
    torch.testing.assert_close(o, naive(q, k, v, causal=False))


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
@pytest.mark.parametrize("window", [None, 6])
def test_streaming_chunks_and_steps_equal_whole(backend, window):
    q, k, v = qkv(T=30, H_kv=2)
    o, _ = attention(q, k, v, window=window, backend=backend)
    with torch.no_grad():  # in-place cache path
        cache = KVCache(window)
        parts = []
        for lo, hi in ((0, 4), (4, 17), (17, 18), (18, 30)):
            o_part, cache = attention(q[:, lo:hi], k[:, lo:hi], v[:, lo:hi], window=window, cache=cache, backend=backend)
            parts.append(o_part)
        torch.testing.assert_close(torch.cat(parts, 1), o)
        cache = KVCache(window)
        for t in range(30):
            o_t, cache = attention_step(q[:, t], k[:, t], v[:, t], cache, window=window, backend=backend)
            torch.testing.assert_close(o_t, o[:, t])
    if window is not None:
        assert cache.length == window - 1  # memory bounded by the window


def test_sliding_window_cache_gives_back_prompt_memory():
    """After a prompt much longer than the window, the cache holds O(window) memory, not O(prompt)."""
    window = 4
    q, k, v = qkv(T=40, H_kv=2)
    o, _ = attention(q, k, v, window=window)
    per_token = 2 * k.shape[0] * k.shape[2] * k.shape[3] * k.element_size()  # keys and values
    with torch.no_grad():
        _, cache = attention(q[:, :32], k[:, :32], v[:, :32], window=window)
        assert cache.nbytes() <= 2 * window * per_token
        for t in range(32, 40):
            o_t, cache = attention_step(q[:, t], k[:, t], v[:, t], cache, window=window)
            torch.testing.assert_close(o_t, o[:, t])
            assert cache.nbytes() <= 2 * window * per_token


def test_streaming_with_gradients_keeps_autograd_intact():
    q, k, v = [x.requires_grad_(True) for x in qkv(T=12)]
    o1, cache = attention(q[:, :5], k[:, :5], v[:, :5])
    o2, cache = attention(q[:, 5:], k[:, 5:], v[:, 5:], cache=cache)
    (o1.sum() + o2.sum()).backward()
    grads = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    attention(q, k, v)[0].sum().backward()
    for g, x in zip(grads, (q, k, v)):
        torch.testing.assert_close(g, x.grad)


def test_cache_grows_geometrically():
    cache = KVCache()
    with torch.no_grad():
        for _ in range(100):
            _, cache = attention_step(*[torch.randn(1, 2, 4) for _ in range(3)], cache)
    assert cache.length == 100 and cache.offset == 100
    assert cache.keys.shape == (1, 100, 2, 4)
    assert cache.nbytes() <= 2 * 2 * 128 * 2 * 4 * 4  # capacity at most 2x length


@pytest.mark.parametrize("window", [None, 3])
def test_a_cache_is_a_value_that_later_appends_never_change(window):
    """Branching: two continuations of one cache each see the prefix and only their own new keys."""
    q, k, v = qkv(T=12)
    with torch.no_grad():
        _, prefix = attention(q[:, :6], k[:, :6], v[:, :6], window=window)
        keys_before = prefix.keys.clone()
        o_a, cache_a = attention(q[:, 6:9], k[:, 6:9], v[:, 6:9], window=window, cache=prefix)
        q2, k2, v2 = (torch.randn_like(x[:, 6:9]) for x in (q, k, v))
        o_b, cache_b = attention(q2, k2, v2, window=window, cache=prefix)  # a second branch from the same prefix
        o_a2, _ = attention(q[:, 6:9], k[:, 6:9], v[:, 6:9], window=window, cache=prefix)  # branch a again
        o_full, _ = attention(q, k, v, window=window)
    torch.testing.assert_close(prefix.keys, keys_before)
    assert prefix.offset == 6 and cache_a.offset == cache_b.offset == 9
    torch.testing.assert_close(o_a, o_full[:, 6:9])
    torch.testing.assert_close(o_a2, o_a)
    with torch.no_grad():
        o_b_ref, _ = attention(torch.cat([q[:, :6], q2], 1), torch.cat([k[:, :6], k2], 1),
                               torch.cat([v[:, :6], v2], 1), window=window)
    torch.testing.assert_close(o_b, o_b_ref[:, 6:9])
    torch.testing.assert_close(cache_a.keys[:, -1], k[:, 8])
    torch.testing.assert_close(cache_b.keys[:, -1], k2[:, -1])


def test_cache_select_takes_batch_rows():
    q, k, v = qkv(B=3, T=7)
    with torch.no_grad():
        _, cache = attention(q[:, :5], k[:, :5], v[:, :5])
        picked = cache.select([2, 0, 2])
        o, _ = attention(q[[2, 0, 2], 5:], k[[2, 0, 2], 5:], v[[2, 0, 2], 5:], cache=picked)
        o_ref, _ = attention(q[[2, 0, 2]], k[[2, 0, 2]], v[[2, 0, 2]])
    torch.testing.assert_close(o, o_ref[:, 5:])
    assert picked.offset == 5 and picked.batch_size == 3


def test_half_precision():
    q, k, v = qkv(dtype=torch.bfloat16)
    o, _ = attention(q, k, v)
    assert o.dtype == torch.bfloat16
    assert_rel_close(o, naive(q.double(), k.double(), v.double()), 2e-2, "bf16")


def test_bad_inputs():
    q, k, v = qkv(H_kv=2)
    with pytest.raises(ValueError, match=r"q must have shape \(B, T, H, Dh\)"):
        attention(q[0], k, v)
    with pytest.raises(ValueError, match="k must have a number of heads H_kv dividing q's H = 4, got H_kv = 3"):
        attention(q, torch.randn(2, 20, 3, 8, dtype=torch.float64), torch.randn(2, 20, 3, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"v must have shape \(B, T, H_kv, Dh\) like k"):
        attention(q, k, v[:, :, :1])
    with pytest.raises(ValueError, match="window must be a positive int"):
        attention(q, k, v, window=0)
    with pytest.raises(ValueError, match="causal=False"):
        attention(q, k, v, causal=False, window=3)
    with pytest.raises(ValueError, match="window must equal the cache's window"):
        attention(q, k, v, window=3, cache=KVCache(4))
    with pytest.raises(ValueError, match="cache must be a recurlab.ops.KVCache"):
        attention(q, k, v, cache=(k, v))
    with torch.no_grad():
        _, cache = attention(q, k, v)
        with pytest.raises(ValueError, match="k must match the cache"):
            attention(q[..., :4], k[..., :4], v[..., :4], cache=cache)


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_gradcheck(backend, window):
    q, k, v = [x.requires_grad_(True) for x in qkv(1, 6, 2, 1, 3)]
    assert torch.autograd.gradcheck(lambda *a: attention(*a, window=window, backend=backend)[0], (q, k, v))


def test_sdpa_gradients_match_reference_in_float32():
    q, k, v = qkv(2, 50, 4, 2, 16)
    grads = {}
    for backend in ("reference", "sdpa"):
        xs = [x.float().requires_grad_(True) for x in (q, k, v)]
        o, _ = attention(*xs, window=20, backend=backend)
        o.backward(torch.ones_like(o))
        grads[backend] = [o] + [x.grad for x in xs]
    for g, e in zip(grads["sdpa"], grads["reference"]):
        assert_rel_close(g, e, 1e-5, "sdpa vs reference")


# --------------------------------------------------------------------------- sliding windows in blocks


def prefix_cache(kind, window, P, B=2, H_kv=2, Dh=8, dtype=torch.float64):
    """P earlier tokens as a cache: the trimmed cache attention returns, or ("long") every key kept."""
    _, kp, vp = qkv(B, P, H_kv, H_kv, Dh, dtype)
    if kind == "long":
        cache = KVCache(window).append(kp, vp)
    else:
        with torch.no_grad():
            _, cache = attention(torch.randn(B, P, H_kv, Dh, dtype=dtype), kp, vp, window=window, backend="reference")
    return cache, kp, vp


@pytest.mark.parametrize("window", [1, 2, 3, 5, 40])
@pytest.mark.parametrize("T", [7, 20, 23])
@pytest.mark.parametrize("H_kv", [4, 1])
@pytest.mark.parametrize("past", [None, "trimmed", "long"])
def test_sliding_window_in_blocks_matches_reference(window, T, H_kv, past):
    """Every window (1, 2, larger than T), T not a multiple of it, grouped-query heads, with earlier
    tokens in the cache (n_past = 0, < window - 1, = window - 1, and a cache holding more)."""
    P = {None: 0, "trimmed": 3 + window, "long": 2 + 3 * window}[past]
    q, k, v = qkv(2, T, 4, H_kv)
    cache, kp, vp = prefix_cache(past, window, P, H_kv=H_kv) if past else (None, k[:, :0], v[:, :0])
    expected = naive(torch.cat([torch.zeros(2, P, 4, 8, dtype=q.dtype), q], 1), torch.cat([kp, k], 1),
                     torch.cat([vp, v], 1), window)[:, P:]
    o_ref, c_ref = attention(q, k, v, window=window, cache=cache, backend="reference")
    o, c = attention(q, k, v, window=window, cache=cache, backend="sdpa")
    torch.testing.assert_close(o_ref, expected)
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(c.keys, c_ref.keys)
    assert c.offset == c_ref.offset == (cache.offset if cache else 0) + T
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        cast = cache.map_tensors(lambda t: t.to(dtype)) if cache else None
        o_low, _ = attention(q.to(dtype), k.to(dtype), v.to(dtype), window=window, cache=cast, backend="sdpa")
        ref_low, _ = attention(q.to(dtype), k.to(dtype), v.to(dtype), window=window, cache=cast, backend="reference")
        assert o_low.dtype == dtype
        assert_rel_close(o_low, ref_low, tol, f"{dtype}")


@pytest.mark.parametrize("past", [None, "trimmed"])
def test_sliding_window_in_blocks_gradcheck(past):
    cache = prefix_cache(past, 2, 3, B=1, H_kv=1, Dh=3)[0] if past else None
    q, k, v = [x.requires_grad_(True) for x in qkv(1, 7, 2, 1, 3)]  # T = 7 > 2 * window: blocks
    assert torch.autograd.gradcheck(lambda *a: attention(*a, window=2, cache=cache, backend="sdpa")[0], (q, k, v))


@pytest.mark.parametrize("past", [None, "trimmed"])
def test_sliding_window_prefill_memory_is_linear(past):
    """A long prompt (after earlier tokens or not) costs O(T * window) memory: quadrupling T may at
    most quadruple the peak (a T x T mask made it 16x: 3 GB at T = 32768)."""
    from recurlab.bench.memory import forward_peak_bytes

    window, peaks = 64, []
    for T in (1024, 4096):
        q, k, v = qkv(1, T, 1, 1, 16, dtype=torch.float32)
        cache = prefix_cache(past, window, 100, B=1, H_kv=1, Dh=16, dtype=torch.float32)[0] if past else None
        with torch.no_grad():
            peaks.append(forward_peak_bytes(lambda: attention(q, k, v, window=window, cache=cache)))
    assert peaks[1] / peaks[0] < 6, peaks
