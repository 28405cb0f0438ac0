"""torch.compile(fullgraph=True) of every op: no graph break, and values and gradients equal eager's
(issue 13, item 4).

Most cases compile with the ``aot_eager`` backend: it runs dynamo (where a graph break raises under
fullgraph=True), the fake implementations and AOTAutograd's traced backward, without inductor's
C++ code generation, which takes ~10 s a graph on a small machine. The custom ops, whose real
outputs must have the strides their fake implementations promise, are also compiled with inductor.
"""

import pytest
import torch

from recurlab import ops
from recurlab.ops import _checks, _cpu_ext
from recurlab.ops.gla import chunk as gla_chunk_module

pytestmark = pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile is not available")


def compiled_matches_eager(fn, *inputs, backend="aot_eager", atol=1e-10, rtol=1e-8, compiled_first=False):
    """Compile fn with fullgraph=True and compare outputs and input gradients with eager."""
    torch._dynamo.reset()
    results = []
    functions = (fn, torch.compile(fn, fullgraph=True, backend=backend))
    for f in functions[::-1] if compiled_first else functions:
        xs = [x.detach().clone().requires_grad_(x.is_floating_point()) if isinstance(x, torch.Tensor) else x
              for x in inputs]
        out = f(*xs)
        out = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.Tensor)]
        gen = torch.Generator().manual_seed(3)
        loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in out)
        loss.backward()
        results.append(out + [x.grad for x in xs if isinstance(x, torch.Tensor) and x.grad is not None])
    eager, compiled = results[::-1] if compiled_first else results
    assert len(eager) == len(compiled)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, atol=atol, rtol=rtol)


def f64(*shape, lo=None, hi=None):
    x = torch.randn(*shape, dtype=torch.float64)
    return x if lo is None else torch.rand(*shape, dtype=torch.float64) * (hi - lo) + lo


# --------------------------------------------------------------------------- diag_scan


@pytest.mark.parametrize("backend", ["cpu", "chunk"])
@pytest.mark.parametrize("heads", [False, True])
def test_diag_scan(backend, heads):
    feat = (2, 3) if heads else (6,)
    compiled_matches_eager(lambda la, b, h0: ops.diag_scan(la, b, h0, backend=backend),
                           f64(2, 5, *feat, lo=-2.0, hi=0.0), f64(2, 5, *feat), f64(2, *feat))


def test_diag_scan_cpu_compiles_before_the_kernel_is_loaded(monkeypatch):
    """The first call of a process may be a compiled one: the build and its lock run at trace time."""
    if not _cpu_ext.available():
        pytest.skip("the compiled CPU kernel is unavailable here")
    monkeypatch.setattr(_cpu_ext, "_state", {"tried": False, "ok": False, "error": None})
    compiled_matches_eager(lambda la, b: ops.diag_scan(la, b, backend="auto"), f64(2, 5, 3, lo=-2.0, hi=0.0),
                           f64(2, 5, 3), compiled_first=True)
    assert _cpu_ext.status()["ok"]


def test_diag_step():
    compiled_matches_eager(ops.diag_step, f64(2, 6, lo=-2.0, hi=0.0), f64(2, 6), f64(2, 6))


def test_diag_scan_cpu_under_inductor_with_strided_inputs():
    if _cpu_ext._compiler() is None:
        pytest.skip("inductor needs a C++ compiler")

    def fn(la, b, h0):
        h, last = ops.diag_scan(la.transpose(0, 1), b.transpose(0, 1) * 2, h0, backend="cpu")
        return h.sin() + 1, last * 3

    compiled_matches_eager(fn, f64(5, 2, 7, lo=-2.0, hi=0.0), f64(5, 2, 7), f64(2, 7), backend="inductor")


def test_the_cpu_kernel_is_a_checked_custom_op():
    if not _cpu_ext.available():
        pytest.skip("the compiled CPU kernel is unavailable here")
    la, b, h0 = f64(2, 5, 3, lo=-2.0, hi=0.0), f64(2, 5, 3), f64(2, 3)
    for args in ((la, b, h0), (la, b, None)):
        torch.library.opcheck(torch.ops.recurlab.diag_scan_cpu.default,
                              [x.requires_grad_(True) if x is not None else None for x in args])


# --------------------------------------------------------------------------- gla


def gla_inputs(T=11, K=4, Kg=4, lo=-1.0, hi=0.0):
    return f64(2, T, 2, K), f64(2, T, 2, K), f64(2, T, 2, 3), f64(2, T, 2, Kg, lo=lo, hi=hi), f64(2, 2, K, 3)


@pytest.mark.parametrize("gates", ["direct", "secondary"])
@pytest.mark.parametrize("Kg", [4, 1])
@pytest.mark.parametrize("with_state", [True, False])
def test_gla_chunk(gates, Kg, with_state):
    # gates decaying by more than e^-5 per step take secondary chunking
    q, k, v, g, S0 = gla_inputs(Kg=Kg, **({"lo": -9.0, "hi": -6.0} if gates == "secondary" else {}))
    assert gla_chunk_module._choose_chunk(g)[1] == (gates == "direct")
    if with_state:
        fn = lambda q, k, v, g, S0: ops.gla(q, k, v, g, initial_state=S0, backend="chunk")  # noqa: E731
        compiled_matches_eager(fn, q, k, v, g, S0)
    else:
        compiled_matches_eager(lambda *a: ops.gla(*a, backend="chunk"), q, k, v, g)


def test_gla_chunk_under_inductor():
    if _cpu_ext._compiler() is None:
        pytest.skip("inductor needs a C++ compiler")

    def fn(q, k, v, g):
        o, S = ops.gla(q.transpose(1, 2).transpose(1, 2) * 2, k, v, g, backend="chunk")
        return o.tanh(), S + 1

    compiled_matches_eager(fn, *gla_inputs()[:4], backend="inductor")


def test_gla_step():
    compiled_matches_eager(ops.gla_step, f64(2, 2, 4), f64(2, 2, 4), f64(2, 2, 3), f64(2, 2, 4, lo=-1.0, hi=0.0),
                           f64(2, 2, 4, 3))


@pytest.mark.parametrize("gates", ["direct", "secondary"])
def test_the_compiled_gla_form_is_a_checked_custom_op(gates):
    q, k, v, g, S0 = gla_inputs(T=9, **({"lo": -9.0, "hi": -6.0} if gates == "secondary" else {}))
    args = [x.requires_grad_(True) for x in (q, k, v, g, S0)]
    op = torch.ops.recurlab.gla_chunk.default
    torch.library.opcheck(op, [*args, 0.5])
    torch.library.opcheck(op, [*args[:4], None, 0.5])
    assert torch.autograd.gradcheck(lambda *a: op(*a, 0.5), args, atol=1e-6)


# --------------------------------------------------------------------------- convolutions


def test_causal_conv1d():
    fn = lambda x, w, b, s: ops.causal_conv1d(x, w, b, s, activation="silu", backend="conv")  # noqa: E731
    compiled_matches_eager(fn, f64(2, 7, 3), f64(3, 4), f64(3), f64(2, 3, 3))


def test_causal_conv1d_step():
    compiled_matches_eager(ops.causal_conv1d_step, f64(2, 3), f64(2, 3, 3), f64(3, 4), f64(3))


def test_long_conv():
    compiled_matches_eager(lambda x, h, s, st: ops.long_conv(x, h, s, st, backend="fft"),
                           f64(2, 7, 3), f64(3, 7), f64(3), f64(2, 6, 3))


def test_long_conv_step():
    compiled_matches_eager(ops.long_conv_step, f64(2, 3), f64(2, 4, 3), f64(3, 5), f64(3))


# --------------------------------------------------------------------------- attention


@pytest.mark.parametrize(("causal", "window"), [(True, None), (True, 3), (False, None)])
def test_attention(causal, window):
    compiled_matches_eager(lambda q, k, v: ops.attention(q, k, v, causal=causal, window=window)[0],
                           f64(2, 9, 4, 8), f64(2, 9, 2, 8), f64(2, 9, 2, 8))


@pytest.mark.parametrize(("window", "n_prefix"), [(None, 5), (3, 5), (4, 1)])
def test_attention_with_a_cache(window, n_prefix):
    with torch.no_grad():  # then 9 new tokens: with a window, more than 2 * window (the blocked path)
        _, cache = ops.attention(f64(2, n_prefix, 4, 8), f64(2, n_prefix, 2, 8), f64(2, n_prefix, 2, 8), window=window)

    def fn(q, k, v):
        o, new = ops.attention(q, k, v, window=window, cache=cache)
        o_t, new = ops.attention_step(q[:, -1], k[:, -1], v[:, -1], new, window=window)
        return o, o_t, new.keys

    compiled_matches_eager(fn, f64(2, 9, 4, 8), f64(2, 9, 2, 8), f64(2, 9, 2, 8))


# --------------------------------------------------------------------------- the checks


def test_checks_are_compile_clean():
    def fn(log_a, b):
        _checks.check_tensor("log_a", log_a, ranks=(3,), layout="(B, T, D)")
        _checks.check_shape("b", b, log_a.shape, "(B, T, D)")
        _checks.check_same_dtype("b", b, "log_a", log_a)
        _checks.check_same_device("b", b, "log_a", log_a)
        _checks.check_log_gate("log_a", log_a)  # a value check: skipped while compiling
        return _checks.joined_to_inputs(b * 2, log_a).to(_checks.accumulation_dtype(b.dtype))

    compiled_matches_eager(fn, f64(2, 3, 4, lo=-1.0, hi=0.0), f64(2, 3, 4))
