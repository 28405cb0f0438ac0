"""A tour of recurlab.ops: every op, its state, its step form and its backends.

Run: ./run python examples/ops_quickstart.py
"""

import torch
import torch.nn.functional as F

from recurlab import ops

torch.manual_seed(0)
B, T, D = 2, 300, 64

# --- diag_scan: h_t = exp(log_a_t) * h_{t-1} + b_t (minGRU, HGRN, PGN, ...) ---------------
log_a = F.logsigmoid(torch.randn(B, T, D))  # gates in log space, <= 0
b = torch.randn(B, T, D)
h, h_last = ops.diag_scan(log_a, b)  # backend="auto": the compiled kernel on CPU
h_ref, _ = ops.diag_scan(log_a, b, backend="reference")
print(f"diag_scan   backends here: {ops.available_backends('diag_scan')}, max |auto - reference| = {(h - h_ref).abs().max():.2e}")

# streaming: the state carries over, so chunks give the same result as the whole sequence
h1, s = ops.diag_scan(log_a[:, :100], b[:, :100])
h2, s = ops.diag_scan(log_a[:, 100:], b[:, 100:], s)
assert torch.allclose(torch.cat([h1, h2], 1), h, atol=1e-6)
# decoding: one token at a time
h_t, state = ops.diag_step(log_a[:, 0], b[:, 0])

# --- gla: matrix state S_t = diag(alpha_t) S_{t-1} + k_t v_t^T, o_t = S_t^T q_t * scale ---------
H, K, V = 4, 16, 16
q, k = torch.randn(B, T, H, K), torch.randn(B, T, H, K)
v = torch.randn(B, T, H, V)
log_alpha = F.logsigmoid(torch.randn(B, T, H, K)) / 16  # GLA's gate parametrisation
o, S = ops.gla(q, k, v, log_alpha)  # chunkwise form
o_ref, _ = ops.gla(q, k, v, log_alpha, backend="reference")
print(f"gla         state {tuple(S.shape)} {S.dtype}, max |chunk - reference| = {(o - o_ref).abs().max():.2e}")
o_t, S_next = ops.gla_step(q[:, 0], k[:, 0], v[:, 0], log_alpha[:, 0])  # decoding

# --- convolutions: short depthwise (rolling state) and long FFT (Hyena) ---------------------
x = torch.randn(B, T, D)
y, conv_state = ops.causal_conv1d(x, torch.randn(D, 4), activation="silu")
y_t, conv_state = ops.causal_conv1d_step(torch.randn(B, D), conv_state, torch.randn(D, 4))
y_long, _ = ops.long_conv(x, torch.randn(D, T) * torch.exp(-torch.arange(T) / 50.0))
print(f"convolution short state {tuple(conv_state.shape)}, long conv output {tuple(y_long.shape)}")

# --- attention: the baseline, with a KV cache that grows (or a sliding window that does not) -----
qa, ka, va = (torch.randn(B, T, H, K) for _ in range(3))
out, cache = ops.attention(qa, ka, va, window=64)
print(f"attention   sliding-window cache keeps {cache.length} keys after {cache.offset} tokens")
with torch.no_grad():  # decoding writes the cache in place
    out_t, cache = ops.attention_step(qa[:, 0], ka[:, 0], va[:, 0], ops.KVCache())
