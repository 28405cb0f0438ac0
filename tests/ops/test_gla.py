import pytest
import torch

from recurlab.ops import gla, gla_step
from recurlab.ops.gla import chunk as gla_chunk  # the chunk backend module (recurlab.ops.gla is the function)
from tests.conftest import assert_rel_close


def make(B=2, T=20, H=2, K=8, V=6, Kg=None, lo=-1.0, hi=0.0, dtype=torch.float64):
    Kg = K if Kg is None else Kg
    q, k = (torch.randn(B, T, H, K, dtype=torch.float64).to(dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, dtype=torch.float64).to(dtype)
    log_alpha = (torch.rand(B, T, H, Kg, dtype=torch.float64) * (hi - lo) + lo).to(dtype)
    S0 = torch.randn(B, H, K, V, dtype=torch.float64).to(dtype)
    return q, k, v, log_alpha, S0


def outputs_and_grads(backend, q, k, v, log_alpha, S0):
    xs = [x.detach().clone().requires_grad_(True) for x in (q, k, v, log_alpha, S0)]
    o, S = gla(*xs[:4], initial_state=xs[4], backend=backend)
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)
    w_S = torch.randn(S.shape, generator=gen, dtype=torch.float64).to(S.dtype)
    ((o * w).sum() + (S * w_S).sum()).backward()
    return [o, S] + [x.grad for x in xs]


NAMES = ["o", "S", "dq", "dk", "dv", "dlog_alpha", "dS0"]


@pytest.fixture(params=["direct", "secondary"])
def intra_path(request, monkeypatch):
    """Run a test once with each intra-chunk form of the chunk backend."""
    if request.param == "secondary":
        monkeypatch.setattr(gla_chunk, "DIRECT_MAX_DECAY", -1.0)
    else:
        monkeypatch.setattr(gla_chunk, "DIRECT_MAX_DECAY", float("inf"))
    return request.param


@pytest.mark.parametrize("Kg", [8, 1])
def test_gradcheck_reference(Kg):
    inputs = [x.requires_grad_(True) for x in make(1, 5, 2, 8, 3, Kg=Kg)]
    f = lambda q, k, v, g, s: gla(q, k, v, g, initial_state=s, backend="reference")
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("Kg", [4, 1])
def test_gradcheck_chunk(Kg, intra_path):
    inputs = [x.requires_grad_(True) for x in make(1, 37, 1, 4, 3, Kg=Kg)]
    f = lambda q, k, v, g, s: gla(q, k, v, g, initial_state=s, backend="chunk")
    assert torch.autograd.gradcheck(f, inputs, atol=1e-6)


@pytest.mark.parametrize("T", [1, 15, 16, 63, 64, 65, 1000])
@pytest.mark.parametrize("Kg", [16, 1])
def test_float32_chunk_matches_reference(T, Kg, intra_path):
    inputs = make(2, T, 2, 16, 8, Kg=Kg, lo=-0.5)
    expected = outputs_and_grads("reference", *inputs)
    got = outputs_and_grads("chunk", *[x.float() for x in inputs])
    for name, g, e in zip(NAMES, got, expected):
        assert_rel_close(g, e, 1e-5, f"T={T} Kg={Kg} {name}")


@pytest.mark.parametrize("level", [-20.0, -5.0, -1.0, -1e-2, -1e-6])
@pytest.mark.parametrize("Kg", [8, 1])
def test_gate_sweep(level, Kg):
    # strong decay takes secondary chunking automatically, weak decay the direct form
    q, k, v, _, S0 = make(2, 150, 2, 8, 4, Kg=Kg)
    log_alpha = level * (1 + 0.5 * torch.rand(2, 150, 2, Kg, dtype=torch.float64))
    expected = outputs_and_grads("reference", q, k, v, log_alpha, S0)
    got = outputs_and_grads("chunk", *[x.float() for x in (q, k, v, log_alpha, S0)])
    for name, g, e in zip(NAMES, got, expected):
        assert_rel_close(g, e, 1e-5, f"level={level} {name}")


def test_strong_decay_would_break_the_direct_form():
    # the reason secondary chunking exists: e^{+G} overflows float32 past -88
    q, k, v, _, S0 = [x.float() for x in make(1, 64, 1, 4, 2)]
    log_alpha = torch.full((1, 64, 1, 4), -5.0)
    G = torch.cumsum(log_alpha, 1)
    assert torch.isinf(torch.exp(-G)).any()
    o, _ = gla(q, k, v, log_alpha, initial_state=S0, backend="chunk")
    o_ref, _ = gla(q.double(), k.double(), v.double(), log_alpha.double(), initial_state=S0.double(), backend="reference")
    assert_rel_close(o, o_ref, 1e-5, "strong decay")


@pytest.mark.parametrize("backend", ["reference", "chunk"])
def test_streaming_equals_whole(backend):
    q, k, v, g, S0 = make(2, 130, 2, 8, 4)
    o, S = gla(q, k, v, g, initial_state=S0, backend=backend)
    for t in (1, 64, 77):
        o1, S1 = gla(q[:, :t], k[:, :t], v[:, :t], g[:, :t], initial_state=S0, backend=backend)
        o2, S2 = gla(q[:, t:], k[:, t:], v[:, t:], g[:, t:], initial_state=S1, backend=backend)
        torch.testing.assert_close(torch.cat([o1, o2], 1), o)
        torch.testing.assert_close(S2, S)


@pytest.mark.parametrize("Kg", [8, 1])
def test_step_equals_forward(Kg):
    q, k, v, g, S0 = make(2, 12, 2, 8, 4, Kg=Kg)
    o, S = gla(q, k, v, g, initial_state=S0, backend="chunk", scale=0.3)
    state = S0
    for t in range(12):
        o_t, state = gla_step(q[:, t], k[:, t], v[:, t], g[:, t], state, scale=0.3)
        torch.testing.assert_close(o_t, o[:, t])
    torch.testing.assert_close(state, S)


def test_defaults_scale_state_and_final_state_flag():
    q, k, v, g, _ = make(1, 10, 1, 4, 3)
    o, S = gla(q, k, v, g)
    o2, _ = gla(q, k, v, g, initial_state=torch.zeros(1, 1, 4, 3, dtype=torch.float64), scale=4**-0.5)
    torch.testing.assert_close(o, o2)
    assert gla(q, k, v, g, output_final_state=False)[1] is None
    o_t, _ = gla_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0])
    torch.testing.assert_close(o_t, o[:, 0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_keep_float32_state(dtype):
    q, k, v, g, S0 = make(2, 70, 2, 8, 4, dtype=dtype)
    o, S = gla(q, k, v, g, initial_state=S0, backend="chunk")
    assert o.dtype == dtype and S.dtype == torch.float32
    o_t, S_t = gla_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], S0)
    assert o_t.dtype == dtype and S_t.dtype == torch.float32
    o_ref, S_ref = gla(*[x.double() for x in (q, k, v, g)], initial_state=S0.double(), backend="reference")
    assert_rel_close(o, o_ref, torch.finfo(dtype).eps, "o")
    assert_rel_close(S, S_ref, 1e-5, "S")


def test_bad_inputs_raise():
    q, k, v, g, S0 = make(1, 10, 2, 8, 4)
    with pytest.raises(ValueError, match=r"q must have shape \(B, T, H, K\), got a 3-d"):
        gla(q[0], k, v, g)
    with pytest.raises(ValueError, match=r"k must have shape \(B, T, H, K\) like q = \(1, 10, 2, 8\), got \(1, 10, 2, 7\)"):
        gla(q, k[..., :7], v, g)
    with pytest.raises(ValueError, match=r"v must have shape \(B, T, H, V\) with \(B, T, H\) of q"):
        gla(q, k, v[:, :9], g)
    with pytest.raises(ValueError, match=r"log_alpha must have shape \(B, T, H, K\) like q"):
        gla(q, k, v, g[..., :3])
    with pytest.raises(ValueError, match="v must have the dtype of q"):
        gla(q, k, v.float(), g)
    with pytest.raises(ValueError, match=r"initial_state must have shape \(B, H, K, V\) = \(1, 2, 8, 4\)"):
        gla(q, k, v, g, initial_state=S0[..., :3])
    with pytest.raises(ValueError, match="log_alpha must be on the device of q"):
        gla(q, k, v, g.to("meta"))
    for bad in (float("nan"), float("-inf"), 1.0):
        g_bad = g.clone()
        g_bad[0, 3, 1, 2] = bad
        with pytest.raises(ValueError, match="log_alpha must be finite and <= 0"):
            gla(q, k, v, g_bad)
    with pytest.raises(ValueError, match="backend must be one of"):
        gla(q, k, v, g, backend="cpu")
    with pytest.raises(ValueError, match=r"state must have shape \(B, H, K, V\)"):
        gla_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], S0[0])


@pytest.mark.parametrize("level,expected", [(-0.01, (64, True)), (-0.5, (32, True)), (-0.9, (16, True)),
                                            (-3.0, (4, True)), (-6.0, (64, False))])
def test_chunk_length_adapts_to_decay(level, expected):
    q, k, v, _, S0 = make(2, 200, 2, 8, 4)
    log_alpha = torch.full((2, 200, 2, 8), level, dtype=torch.float64)
    assert gla_chunk._choose_chunk(log_alpha) == expected
    got = outputs_and_grads("chunk", *[x.float() for x in (q, k, v, log_alpha, S0)])
    want = outputs_and_grads("reference", q, k, v, log_alpha, S0)
    for name, g, e in zip(NAMES, got, want):
        assert_rel_close(g, e, 1e-5, f"level={level} {name}")


# ------------------------------------------------------------------------ states after every prefix


@pytest.mark.parametrize("per_head", [False, True], ids=["key-wise", "head-wise"])
@pytest.mark.parametrize("with_state", [False, True])
def test_prefix_states_equal_the_step_loop(per_head, with_state):
    from recurlab.ops import gla_prefix_states

    g = torch.Generator().manual_seed(4)
    B, T, H, K, V = 2, 7, 3, 4, 5
    k, v = torch.randn(B, T, H, K, generator=g, dtype=torch.float64), torch.randn(B, T, H, V, generator=g, dtype=torch.float64)
    log_alpha = -torch.rand(B, T, H, 1 if per_head else K, generator=g, dtype=torch.float64) * 3
    S0 = torch.randn(B, H, K, V, generator=g, dtype=torch.float64) if with_state else None
    states = gla_prefix_states(k, v, log_alpha, S0)
    assert states.shape == (B, T, H, K, V) and states.dtype == torch.float64
    S = S0 if with_state else torch.zeros(B, H, K, V, dtype=torch.float64)
    for t in range(T):
        S = torch.exp(log_alpha[:, t]).unsqueeze(-1) * S + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        torch.testing.assert_close(states[:, t], S, rtol=1e-12, atol=1e-12)


def test_prefix_states_survive_extreme_decay_and_accumulate_low_precision_in_float32():
    from recurlab.ops import gla, gla_prefix_states

    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 6, 2, 4, generator=g)
    k, v = torch.randn(1, 6, 2, 4, generator=g), torch.randn(1, 6, 2, 4, generator=g)
    log_alpha = torch.full((1, 6, 2, 4), -200.0)  # exp(-1200) underflows: no inf * 0
    states = gla_prefix_states(k, v, log_alpha)
    assert torch.isfinite(states).all()
    torch.testing.assert_close(states[:, -1], gla(q, k, v, log_alpha)[1], rtol=1e-6, atol=1e-6)
    assert gla_prefix_states(k.bfloat16(), v.bfloat16(), log_alpha).dtype == torch.float32
    with pytest.raises(ValueError, match="log_alpha"):
        gla_prefix_states(k, v, -log_alpha)
