import pytest
import torch

from recurlab.ops import causal_conv1d, causal_conv1d_step, long_conv, long_conv_step
from tests.conftest import assert_rel_close


def conv_inputs(B=2, T=30, D=5, W=4, dtype=torch.float64):
    return (torch.randn(B, T, D, dtype=dtype), torch.randn(D, W, dtype=dtype), torch.randn(D, dtype=dtype),
            torch.randn(B, W - 1, D, dtype=dtype))


def naive_causal_conv(x, weight, bias, state):
    """Straight from the definition: y_t = sum_i w[:, i] x_{t-W+1+i}, earlier inputs from state."""
    full = torch.cat([state, x], 1)
    W = weight.shape[1]
    y = torch.zeros_like(x)
    for t in range(x.shape[1]):
        for i in range(W):
            y[:, t] += weight[:, i] * full[:, t + i]
    return y + bias


@pytest.mark.parametrize("backend", ["reference", "conv"])
@pytest.mark.parametrize("W", [1, 2, 4])
def test_causal_conv1d_matches_definition(backend, W):
    x, w, b, s = conv_inputs(W=W)
    y, new_state = causal_conv1d(x, w, b, s, backend=backend)
    torch.testing.assert_close(y, naive_causal_conv(x, w, b, s))
    full = torch.cat([s, x], 1)
    torch.testing.assert_close(new_state, full[:, full.shape[1] - (W - 1) :])  # the last W-1 inputs


def test_causal_conv1d_gradcheck_and_silu():
    x, w, b, s = [t.requires_grad_(True) for t in conv_inputs(1, 6, 2, 3)]
    assert torch.autograd.gradcheck(lambda *a: causal_conv1d(*a, activation="silu", backend="conv")[0], (x, w, b, s))
    y, _ = causal_conv1d(x, w, b, s, activation="silu")
    torch.testing.assert_close(y, torch.nn.functional.silu(naive_causal_conv(x, w, b, s)))


@pytest.mark.parametrize("backend", ["reference", "conv"])
def test_causal_conv1d_streaming_and_step(backend):
    x, w, b, _ = conv_inputs(T=25)
    y, state = causal_conv1d(x, w, b, backend=backend)
    y1, s1 = causal_conv1d(x[:, :1], w, b, backend=backend)  # T shorter than the kernel
    y2, s2 = causal_conv1d(x[:, 1:11], w, b, s1, backend=backend)
    y3, s3 = causal_conv1d(x[:, 11:], w, b, s2, backend=backend)
    torch.testing.assert_close(torch.cat([y1, y2, y3], 1), y)
    torch.testing.assert_close(s3, state)
    s = torch.zeros(2, 3, 5, dtype=torch.float64)
    for t in range(25):
        y_t, s = causal_conv1d_step(x[:, t], s, w, b)
        torch.testing.assert_close(y_t, y[:, t])
    torch.testing.assert_close(s, state)


def test_causal_conv1d_bad_inputs():
    x, w, b, s = conv_inputs()
    with pytest.raises(ValueError, match=r"weight must have shape \(D, W\) with D = 5 channels of x"):
        causal_conv1d(x, w[:3])
    with pytest.raises(ValueError, match=r"state must have shape \(B, W-1, D\) = \(2, 3, 5\)"):
        causal_conv1d(x, w, b, s[:, :2])
    with pytest.raises(ValueError, match=r"bias must have shape \(D,\) = \(5,\)"):
        causal_conv1d(x, w, b[:2])
    with pytest.raises(ValueError, match="activation must be one of"):
        causal_conv1d(x, w, activation="relu")
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, D\)"):
        causal_conv1d(x[0], w)
    with pytest.raises(ValueError, match="state must be given for a step"):
        causal_conv1d_step(x[:, 0], None, w)


def naive_long_conv(x, kernel, skip, state):
    full = torch.cat([state, x], 1)
    P, L = state.shape[1], kernel.shape[1]
    y = torch.zeros_like(x)
    for t in range(x.shape[1]):
        for s in range(L):
            if P + t - s >= 0:
                y[:, t] += kernel[:, s] * full[:, P + t - s]
    return y + skip * x


@pytest.mark.parametrize("backend", ["reference", "fft"])
@pytest.mark.parametrize("T,L", [(1, 1), (17, 17), (40, 9), (9, 40), (64, 64)])
def test_long_conv_matches_definition(backend, T, L):
    x = torch.randn(2, T, 3, dtype=torch.float64)
    kernel, skip = torch.randn(3, L, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    state = torch.randn(2, L - 1, 3, dtype=torch.float64)
    y, new_state = long_conv(x, kernel, skip, state, backend=backend)
    torch.testing.assert_close(y, naive_long_conv(x, kernel, skip, state))
    torch.testing.assert_close(new_state, torch.cat([state, x], 1)[:, T:])


def test_long_conv_fft_float32_long_sequence_and_grad():
    x = torch.randn(2, 1000, 8, dtype=torch.float64)
    kernel = torch.randn(8, 1000, dtype=torch.float64) * torch.exp(-torch.arange(1000) / 200.0)
    y_ref, _ = long_conv(x, kernel, backend="reference")
    y, _ = long_conv(x.float(), kernel.float(), backend="fft")
    assert_rel_close(y, y_ref, 1e-5, "fft float32")
    x_small = x[:1, :20, :2].clone().requires_grad_(True)
    k_small = kernel[:2, :20].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, k: long_conv(a, k, backend="fft")[0], (x_small, k_small))


def test_long_conv_streaming_and_step():
    x = torch.randn(2, 30, 4, dtype=torch.float64)
    kernel, skip = torch.randn(4, 30, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    y, state = long_conv(x, kernel, skip)
    y1, s1 = long_conv(x[:, :13], kernel, skip)
    y2, s2 = long_conv(x[:, 13:], kernel, skip, s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    torch.testing.assert_close(s2, state)
    s = torch.zeros(2, 29, 4, dtype=torch.float64)
    for t in range(30):
        y_t, s = long_conv_step(x[:, t], s, kernel, skip)
        torch.testing.assert_close(y_t, y[:, t])


def test_long_conv_half_precision_computes_in_float32():
    x = torch.randn(1, 50, 4).bfloat16()
    kernel = torch.randn(4, 50).bfloat16()
    y, _ = long_conv(x, kernel)
    assert y.dtype == torch.bfloat16
    y_ref, _ = long_conv(x.double(), kernel.double(), backend="reference")
    assert_rel_close(y, y_ref, torch.finfo(torch.bfloat16).eps, "bf16")


def test_long_conv_bad_inputs():
    x = torch.randn(2, 10, 3)
    with pytest.raises(ValueError, match=r"kernel must have shape \(D, L\) with D = 3"):
        long_conv(x, torch.randn(4, 10))
    with pytest.raises(ValueError, match=r"skip must have shape \(D,\)"):
        long_conv(x, torch.randn(3, 10), torch.randn(2))
    with pytest.raises(ValueError, match="backend must be one of"):
        long_conv(x, torch.randn(3, 10), backend="cpu")
