import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recurlab.ops import _cpu_ext, diag_scan, diag_step
from recurlab.ops.backends import resolve
from tests.conftest import assert_rel_close

FAST = ["chunk", "cpu"]
ALL = ["reference", "chunk", "cpu"]


def make(B, T, D, dtype=torch.float64, lo=-3.0, hi=0.0, b_scale=1.0, requires_grad=False):
    log_a = (torch.rand(B, T, D, dtype=torch.float64) * (hi - lo) + lo).to(dtype)
    b = (torch.randn(B, T, D, dtype=torch.float64) * b_scale).to(dtype)
    h0 = torch.randn(B, D, dtype=torch.float64).to(dtype)
    for x in (log_a, b, h0):
        x.requires_grad_(requires_grad)
    return log_a, b, h0


def test_cpu_kernel_is_built():
    assert _cpu_ext.available(), _cpu_ext.status()


@pytest.mark.parametrize("backend", ALL)
def test_gradcheck_float64(backend):
    log_a, b, h0 = make(2, 7, 3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *xs: diag_scan(*xs, backend=backend), (log_a, b, h0))


def test_chunk_double_backward():
    log_a, b, h0 = make(1, 5, 2, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda *xs: diag_scan(*xs, backend="chunk"), (log_a, b, h0))


def _values_and_grads(backend, log_a, b, h0):
    xs = [x.detach().clone().requires_grad_(True) for x in (log_a, b, h0)]
    h, h_last = diag_scan(*xs, backend=backend)
    gen = torch.Generator().manual_seed(1)
    # float64 draws cast down, so every dtype sees the same weights
    w = torch.randn(h.shape, generator=gen, dtype=torch.float64).to(h.dtype)
    w_last = torch.randn(h_last.shape, generator=gen, dtype=torch.float64).to(h_last.dtype)
    ((h * w).sum() + (h_last * w_last).sum()).backward()
    return [h, h_last] + [x.grad for x in xs]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("T", [1, 63, 64, 65, 1000])
def test_float32_matches_reference(backend, T):
    log_a, b, h0 = make(3, T, 33)
    expected = _values_and_grads("reference", log_a, b, h0)
    got = _values_and_grads(backend, log_a.float(), b.float(), h0.float())
    for name, g, e in zip(["h", "h_last", "dlog_a", "db", "dh0"], got, expected):
        assert_rel_close(g, e, 2e-6, f"{backend} T={T} {name}")


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("level", [-20.0, -5.0, -1.0, -1e-3, -1e-6])
def test_gate_sweep_negative_and_large_b(backend, level):
    # constant gates from nearly 0 (exp(-20)) to nearly 1, b negative and large
    T = 300
    log_a = torch.full((2, T, 16), level, dtype=torch.float64) * (1 + 0.1 * torch.rand(2, T, 16, dtype=torch.float64))
    b = -torch.rand(2, T, 16, dtype=torch.float64) * 1e4
    h0 = -torch.rand(2, 16, dtype=torch.float64) * 1e4
    expected = _values_and_grads("reference", log_a, b, h0)
    got = _values_and_grads(backend, log_a.float(), b.float(), h0.float())
    for name, g, e in zip(["h", "h_last", "dlog_a", "db", "dh0"], got, expected):
        assert_rel_close(g, e, 5e-6, f"{backend} level={level} {name}")


@pytest.mark.parametrize("backend", ALL)
def test_streaming_equals_whole(backend):
    log_a, b, h0 = make(2, 150, 5)
    h, h_last = diag_scan(log_a, b, h0, backend=backend)
    for t in (1, 64, 97):
        h1, s1 = diag_scan(log_a[:, :t], b[:, :t], h0, backend=backend)
        h2, s2 = diag_scan(log_a[:, t:], b[:, t:], s1, backend=backend)
        torch.testing.assert_close(torch.cat([h1, h2], 1), h, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(s2, h_last, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ALL)
def test_step_equals_scan(backend):
    log_a, b, h0 = make(2, 20, 4)
    h, h_last = diag_scan(log_a, b, h0, backend=backend)
    state = h0
    for t in range(20):
        h_t, state = diag_step(log_a[:, t], b[:, t], state)
        torch.testing.assert_close(h_t, h[:, t], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, h_last, rtol=1e-12, atol=1e-12)


def test_step_without_state_starts_from_zero():
    log_a, b, _ = make(2, 1, 4)
    h_t, state = diag_step(log_a[:, 0], b[:, 0])
    torch.testing.assert_close(h_t, b[:, 0])


@pytest.mark.parametrize("backend", ALL)
def test_head_layout_matches_flat(backend):
    log_a, b, h0 = make(2, 30, 12)
    h, h_last = diag_scan(log_a, b, h0, backend=backend)
    h4, last4 = diag_scan(log_a.view(2, 30, 3, 4), b.view(2, 30, 3, 4), h0.view(2, 3, 4), backend=backend)
    assert h4.shape == (2, 30, 3, 4) and last4.shape == (2, 3, 4)
    torch.testing.assert_close(h4.reshape(2, 30, 12), h)
    torch.testing.assert_close(last4.reshape(2, 12), h_last)


@pytest.mark.parametrize("backend", ALL)
def test_non_contiguous_inputs(backend):
    log_a, b, h0 = make(2, 40, 6)
    expected = diag_scan(log_a, b, h0, backend="reference")
    la_t = log_a.transpose(0, 1).contiguous().transpose(0, 1)
    b_t = b.transpose(0, 1).contiguous().transpose(0, 1)
    assert not la_t.is_contiguous()
    got = diag_scan(la_t, b_t, h0, backend=backend)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])


@pytest.mark.parametrize("backend", FAST)
def test_gradient_of_final_state_only(backend):
    log_a, b, h0 = make(2, 50, 3)
    grads = []
    for be in ("reference", backend):
        xs = [x.clone().requires_grad_(True) for x in (log_a, b, h0)]
        diag_scan(*xs, backend=be)[1].sum().backward()
        grads.append([x.grad for x in xs])
    for g, e in zip(grads[1], grads[0]):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(backend, dtype):
    log_a, b, h0 = make(2, 500, 64, dtype=dtype, lo=-0.05)
    h, h_last = diag_scan(log_a, b, h0, backend=backend)
    assert h.dtype == dtype and h_last.dtype == torch.float32
    # the reference on the same (rounded) inputs, in float64
    h_ref, last_ref = diag_scan(log_a.double(), b.double(), h0.double(), backend="reference")
    eps = torch.finfo(dtype).eps
    assert_rel_close(h, h_ref, eps, f"{backend} {dtype} h")  # one rounding of the output
    assert_rel_close(h_last, last_ref, 1e-5, f"{backend} {dtype} h_last")
    # and gradients flow in the input dtype
    xs = [x.clone().requires_grad_(True) for x in (log_a, b, h0)]
    diag_scan(*xs, backend=backend)[0].float().sum().backward()
    assert [x.grad.dtype for x in xs] == [dtype] * 3


@pytest.mark.parametrize("backend", ALL)
def test_empty_sequence_returns_initial_state(backend):
    log_a, b, h0 = make(2, 0, 3)
    h, h_last = diag_scan(log_a, b, h0, backend=backend)
    assert h.shape == (2, 0, 3)
    torch.testing.assert_close(h_last, h0)


@given(
    B=st.integers(1, 3),
    T=st.integers(1, 140),
    D=st.integers(1, 20),
    lo=st.floats(-25, -1e-6),
    b_scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=40, deadline=None)
def test_property_fast_backends_match_reference(B, T, D, lo, b_scale, seed):
    torch.manual_seed(seed)
    log_a, b, h0 = make(B, T, D, lo=lo, hi=lo / 10, b_scale=b_scale)
    h_ref, last_ref = diag_scan(log_a, b, h0, backend="reference")
    for backend in FAST:
        h, last = diag_scan(log_a.float(), b.float(), h0.float(), backend=backend)
        assert_rel_close(h, h_ref, 2e-6, backend)
        assert_rel_close(last, last_ref, 2e-6, backend)


def test_kernel_exp_is_accurate():
    x = torch.linspace(-100.0, 0.0, 200_001)
    y = torch.ops.recurlab.exp_nonpositive(x).double()
    exact = torch.exp(x.double())
    normal = x > -87.0
    rel = ((y - exact).abs() / exact)[normal]
    assert rel.max().item() < 2.5e-7
    assert (y[x < -87.34] == 0).all()  # below the smallest normal float: flushed to zero


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 0.5])
def test_non_finite_or_positive_gates_raise(backend, bad):
    log_a, b, h0 = make(2, 10, 3, dtype=torch.float32)
    log_a[1, 7, 2] = bad
    with pytest.raises(ValueError, match="log_a must be finite and <= 0"):
        diag_scan(log_a, b, h0, backend=backend)


def test_bad_shapes_dtypes_devices_raise():
    log_a, b, h0 = make(2, 10, 3)
    with pytest.raises(ValueError, match=r"log_a must have shape \(B, T, D\) or \(B, T, H, K\), got a 2-d"):
        diag_scan(log_a[0], b[0])
    with pytest.raises(ValueError, match=r"b must have shape \(B, T, D\) like log_a = \(2, 10, 3\), got \(2, 9, 3\)"):
        diag_scan(log_a, b[:, :9])
    with pytest.raises(ValueError, match="b must have the dtype of log_a"):
        diag_scan(log_a, b.float())
    with pytest.raises(ValueError, match="floating dtype"):
        diag_scan(log_a, b.long())
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, D\) = \(2, 3\), got \(3, 2\)"):
        diag_scan(log_a, b, h0.t())
    with pytest.raises(ValueError, match="b must be on the device of log_a"):
        diag_scan(log_a, b.to("meta"))
    with pytest.raises(ValueError, match="backend must be one of"):
        diag_scan(log_a, b, backend="cuda")
    with pytest.raises(ValueError, match="log_a must be a torch.Tensor"):
        diag_scan(log_a.numpy(), b)
    with pytest.raises(ValueError, match=r"b_t must have shape like log_a_t"):
        diag_step(log_a[:, 0], b[:, 0, :2])
    with pytest.raises(ValueError, match="log_a_t must be finite"):
        diag_step(log_a[:, 0].abs() + 1, b[:, 0])


# --------------------------------------------------------------------------- fallback


def test_missing_compiler_falls_back_to_chunk_with_one_warning(monkeypatch):
    monkeypatch.setattr(_cpu_ext, "_state", {"tried": False, "ok": False, "error": None})
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    log_a, b, h0 = make(2, 10, 3)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found") as record:
        assert resolve("diag_scan", "auto", log_a.device) == "chunk"
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert resolve("diag_scan", "cpu", log_a.device) == "chunk"
        h, _ = diag_scan(log_a, b, h0, backend="cpu")
    torch.testing.assert_close(h, diag_scan(log_a, b, h0, backend="reference")[0])


def test_disable_env_var_falls_back(monkeypatch):
    monkeypatch.setattr(_cpu_ext, "_state", {"tried": False, "ok": False, "error": None})
    monkeypatch.setenv(_cpu_ext.DISABLE_ENV, "1")
    with pytest.warns(RuntimeWarning, match="disabled by RECURLAB_DISABLE_CPU_KERNELS"):
        assert not _cpu_ext.available()
