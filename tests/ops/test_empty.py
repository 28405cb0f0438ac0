"""Empty inputs are valid for every op, backend and form (issue 13, item 1).

B = 0, T = 0 or a feature axis = 0 gives an empty output of the right shape and dtype, passes the
state through (the initial state, or zeros of the right shape when none was given), and backward
through the outputs runs. The interface answers before dispatch: the ``no_backend`` fixture makes
every backend function fail, so these tests never reach the compiled kernel in this process (a
SIGFPE there would kill pytest); the kernel's own safety is tested in a subprocess at the end.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from recurlab import ops
from recurlab.ops import _cpu_ext
from recurlab.ops.attention import interface as attention_interface
from recurlab.ops.conv import interface as conv_interface
from recurlab.ops.diag_scan import interface as diag_interface
from recurlab.ops.gla import interface as gla_interface

BACKEND_FUNCTIONS = {
    diag_interface: ("diag_scan_reference", "diag_scan_chunk", "diag_scan_cpu"),
    gla_interface: ("gla_reference", "gla_chunk"),
    conv_interface: ("causal_conv1d_reference", "causal_conv1d_conv", "long_conv_reference", "long_conv_fft"),
    attention_interface: ("attention_reference", "attention_sdpa", "sliding_window_sdpa"),
}


@pytest.fixture
def no_backend(monkeypatch):
    """Every backend function fails: empty inputs must be answered by the interface."""
    for module, names in BACKEND_FUNCTIONS.items():
        for name in names:
            def fail(*args, _name=name, **kwargs):
                raise AssertionError(f"{_name} was called on an empty input")
            monkeypatch.setattr(module, name, fail)


def sizes(base: dict, axis: str) -> dict:
    return {**base, axis: 0}


def leaves(*xs):
    return [None if x is None else x.detach().clone().requires_grad_(True) for x in xs]


def backward_runs(outputs, inputs):
    """sum of the outputs backward: must not raise; every input that requires grad gets a grad of its shape."""
    loss = sum(o.float().sum() for o in outputs if o is not None)
    loss.backward()
    for x in inputs:
        if x is not None:
            assert x.grad is not None and x.grad.shape == x.shape


# --------------------------------------------------------------------------- diag_scan


@pytest.mark.parametrize("backend", ["auto", "reference", "chunk", "cpu"])
@pytest.mark.parametrize("axis", ["B", "T", "D"])
@pytest.mark.parametrize("heads", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_diag_scan_empty(no_backend, backend, axis, heads, with_h0, dtype):
    n = sizes({"B": 2, "T": 5, "D": 4}, axis)
    feat = (2, n["D"]) if heads else (n["D"],)  # (H, K) = (2, D) or D; D = 0 means K = 0
    log_a = -torch.rand(n["B"], n["T"], *feat).to(dtype)
    b = torch.randn(n["B"], n["T"], *feat).to(dtype)
    h0 = torch.randn(n["B"], *feat) if with_h0 else None
    log_a, b, h0 = leaves(log_a, b, h0)
    h, h_last = ops.diag_scan(log_a, b, h0, backend=backend)
    assert h.shape == b.shape and h.dtype == dtype
    assert h_last.shape == (n["B"], *feat) and h_last.dtype == torch.float32
    torch.testing.assert_close(h_last, h0.detach() if with_h0 else torch.zeros(n["B"], *feat))
    backward_runs([h, h_last], [log_a, b, h0])
    if with_h0 and axis == "T":  # h_last = h0
        torch.testing.assert_close(h0.grad, torch.ones_like(h0))


@pytest.mark.parametrize("axis", ["B", "D"])
def test_diag_step_empty(axis):
    n = sizes({"B": 2, "D": 4}, axis)
    log_a_t, b_t, h = leaves(-torch.rand(n["B"], n["D"]), torch.randn(n["B"], n["D"]), torch.randn(n["B"], n["D"]))
    h_t, h_new = ops.diag_step(log_a_t, b_t, h)
    assert h_t.shape == h_new.shape == (n["B"], n["D"])
    backward_runs([h_t, h_new], [log_a_t, b_t, h])


# --------------------------------------------------------------------------- gla


@pytest.mark.parametrize("backend", ["auto", "reference", "chunk"])
@pytest.mark.parametrize("axis", ["B", "T", "H", "K", "V"])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("head_decay", [False, True])
def test_gla_empty(no_backend, backend, axis, with_state, head_decay):
    n = sizes({"B": 2, "T": 5, "H": 3, "K": 4, "V": 6}, axis)
    B, T, H, K, V = n.values()
    q, k, v = (torch.randn(B, T, H, d, dtype=torch.bfloat16) for d in (K, K, V))
    log_alpha = -torch.rand(B, T, H, 1 if head_decay else K)
    S0 = torch.randn(B, H, K, V) if with_state else None
    q, k, v, log_alpha, S0 = leaves(q, k, v, log_alpha, S0)
    o, S = ops.gla(q, k, v, log_alpha, initial_state=S0, backend=backend)
    assert o.shape == (B, T, H, V) and o.dtype == torch.bfloat16
    assert (o == 0).all()  # empty, or (K = 0) a sum of no terms
    assert S.shape == (B, H, K, V) and S.dtype == torch.float32
    torch.testing.assert_close(S, S0.detach() if with_state else torch.zeros(B, H, K, V))
    backward_runs([o, S], [q, k, v, log_alpha, S0])
    if axis == "K":
        assert (v.grad == 0).all()
    assert ops.gla(q, k, v, log_alpha, initial_state=S0, output_final_state=False, backend=backend)[1] is None


@pytest.mark.parametrize("axis", ["B", "H", "K", "V"])
def test_gla_step_empty(axis):
    n = sizes({"B": 2, "H": 3, "K": 4, "V": 6}, axis)
    B, H, K, V = n.values()
    xs = leaves(torch.randn(B, H, K), torch.randn(B, H, K), torch.randn(B, H, V), -torch.rand(B, H, K),
                torch.randn(B, H, K, V))
    o_t, S = ops.gla_step(*xs)
    assert o_t.shape == (B, H, V) and S.shape == (B, H, K, V)
    assert (o_t == 0).all() if axis == "K" else True
    backward_runs([o_t, S], xs)


# --------------------------------------------------------------------------- convolutions


CONVS = [
    ("causal_conv1d", "auto"), ("causal_conv1d", "reference"), ("causal_conv1d", "conv"),
    ("long_conv", "auto"), ("long_conv", "reference"), ("long_conv", "fft"),
]


@pytest.mark.parametrize(("op", "backend"), CONVS)
@pytest.mark.parametrize("axis", ["B", "T", "D"])
@pytest.mark.parametrize("with_state", [False, True])
def test_convolutions_empty(no_backend, op, backend, axis, with_state):
    n = sizes({"B": 2, "T": 5, "D": 3}, axis)
    B, T, D = n.values()
    W = 4
    x, weight, extra, state = leaves(torch.randn(B, T, D, dtype=torch.bfloat16), torch.randn(D, W),
                                     torch.randn(D), torch.randn(B, W - 1, D) if with_state else None)
    if op == "causal_conv1d":
        y, new_state = ops.causal_conv1d(x, weight, extra, state, activation="silu", backend=backend)
    else:
        y, new_state = ops.long_conv(x, weight, extra, state, backend=backend)
    assert y.shape == (B, T, D) and y.dtype == torch.bfloat16
    assert new_state.shape == (B, W - 1, D)
    if T == 0:  # the last W-1 inputs are the ones given before
        torch.testing.assert_close(new_state, state.detach().bfloat16() if with_state else torch.zeros(B, W - 1, D).bfloat16())
    backward_runs([y, new_state], [x, weight, extra, state])


@pytest.mark.parametrize("op", ["causal_conv1d_step", "long_conv_step"])
@pytest.mark.parametrize("axis", ["B", "D"])
def test_convolution_steps_empty(op, axis):
    n = sizes({"B": 2, "D": 3}, axis)
    xs = leaves(torch.randn(n["B"], n["D"]), torch.randn(n["B"], 3, n["D"]), torch.randn(n["D"], 4), torch.randn(n["D"]))
    y_t, state = getattr(ops, op)(*xs)
    assert y_t.shape == (n["B"], n["D"]) and state.shape == (n["B"], 3, n["D"])
    backward_runs([y_t, state], xs)


# --------------------------------------------------------------------------- attention


@pytest.mark.parametrize("backend", ["auto", "reference", "sdpa"])
@pytest.mark.parametrize("axis", ["B", "T", "H", "Dh"])
@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("with_cache", [False, True])
def test_attention_empty(no_backend, backend, axis, window, with_cache):
    n = sizes({"B": 2, "T": 5, "H": 4, "Dh": 8}, axis)
    B, T, H, Dh = n.values()
    H_kv = H // 2
    q, k, v = leaves(torch.randn(B, T, H, Dh), torch.randn(B, T, H_kv, Dh), torch.randn(B, T, H_kv, Dh))
    cache = None
    if with_cache:  # six earlier tokens
        with torch.no_grad():
            cache = ops.KVCache(window).append(torch.randn(B, 6, H_kv, Dh), torch.randn(B, 6, H_kv, Dh)).trimmed()
    o, new_cache = ops.attention(q, k, v, window=window, cache=cache, backend=backend)
    assert o.shape == (B, T, H, Dh) and o.dtype == v.dtype
    offset = cache.offset if cache is not None else 0
    assert new_cache.offset == offset + T and new_cache.window == window
    if T == 0 and cache is not None:
        assert new_cache is cache
    backward_runs([o], [q, k, v])


@pytest.mark.parametrize("axis", ["B", "H", "Dh"])
def test_attention_step_empty(no_backend, axis):
    n = sizes({"B": 2, "H": 2, "Dh": 8}, axis)
    xs = leaves(*(torch.randn(n["B"], n["H"], n["Dh"]) for _ in range(3)))
    o_t, cache = ops.attention_step(*xs, ops.KVCache(), backend="sdpa")
    assert o_t.shape == (n["B"], n["H"], n["Dh"]) and cache.offset == 1
    backward_runs([o_t], xs)


def test_attention_zero_kv_heads_need_zero_query_heads():
    with pytest.raises(ValueError, match="k must have a number of heads H_kv dividing q's H = 2, got H_kv = 0"):
        ops.attention(torch.randn(1, 3, 2, 4), torch.randn(1, 3, 0, 4), torch.randn(1, 3, 0, 4))


# --------------------------------------------------------------------------- the compiled kernel itself


KERNEL_SCRIPT = textwrap.dedent("""
    import torch
    from recurlab import ops
    from recurlab.ops import _cpu_ext
    assert _cpu_ext.available(), _cpu_ext.status()
    fwd, bwd = torch.ops.recurlab.diag_scan_fwd, torch.ops.recurlab.diag_scan_bwd
    for B, T, D in [(2, 16, 0), (0, 16, 4), (2, 0, 4), (0, 0, 0)]:
        log_a, b, h0 = torch.zeros(B, T, D), torch.zeros(B, T, D), torch.randn(B, D)
        h, h_last = fwd(log_a, b, None)
        assert h.shape == (B, T, D) and h_last.shape == (B, D) and not h_last.any()
        h, h_last = fwd(log_a, b, h0)
        assert torch.equal(h_last, h0)  # the state passes through
        assert h0.numel() == 0 or h_last.data_ptr() != h0.data_ptr()  # as a copy
        grad_last = torch.randn(B, D)
        g_la, g_b, g_h0 = bwd(torch.zeros(B, T, D), grad_last, log_a, h, h0)
        assert g_la.shape == g_b.shape == (B, T, D) and torch.equal(g_h0, grad_last)
        g_la, g_b, g_h0 = bwd(None, None, log_a, h, None)
        assert g_h0.shape == (B, D) and not g_h0.any()
    h, h_last = ops.diag_scan(torch.zeros(2, 16, 0), torch.zeros(2, 16, 0), backend="cpu")  # the call of issue 13
    assert h.shape == (2, 16, 0) and h_last.shape == (2, 0)
    print("kernel ok")
""")


def test_compiled_kernel_survives_empty_inputs():
    """The kernel on D = 0 divided by zero (SIGFPE, the process died): run it in a subprocess."""
    if not _cpu_ext.available():
        pytest.skip("the compiled CPU kernel is unavailable here")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", KERNEL_SCRIPT], cwd=root, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "kernel ok" in proc.stdout
