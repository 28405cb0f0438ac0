"""Each mixer computes its paper's equations: checked against direct, naive implementations."""

import math

import pytest
import torch
import torch.nn.functional as F

from recurlab import layers
from recurlab.layers.liger import LigerAttention
from recurlab.layers.rwkv import lif_step
from recurlab.models import CausalLM, ModelConfig
from recurlab.ops import KVCache
from tests.layers.common import D, make_mixer


# ---------------------------------------------------------------------------------------------------
# Direct implementations of the papers' equations, written here from the layers' weights alone (no
# recurlab.ops, no layer helpers), compared in float64 with the parallel form and with the step loop.
# ---------------------------------------------------------------------------------------------------

TOL = {"rtol": 1e-10, "atol": 1e-10}


def stepped(m, x, **inputs):
    """The mixer's step form, token by token from the empty state: (B, T, d_model)."""
    state, ys = None, []
    for t in range(x.shape[1]):
        y_t, state = m.step(x[:, t], state, **inputs)
        ys.append(y_t)
    return torch.stack(ys, 1)


def linear(x, layer):
    """x W^T (+ b), written out from an nn.Linear's parameters."""
    y = x @ layer.weight.t()
    return y if layer.bias is None else y + layer.bias


def swish(z):
    return z * torch.sigmoid(z)


def test_mingru_is_the_papers_recurrence():
    m = make_mixer("mingru")
    x = torch.randn(2, 9, D, dtype=torch.float64)
    k, cand = m.to_gate_and_candidate(x).chunk(2, -1)
    z = torch.sigmoid(k)
    h, expected = torch.zeros(2, D, dtype=torch.float64), []
    for t in range(9):
        h = (1 - z[:, t]) * h + z[:, t] * cand[:, t]
        expected.append(h)
    torch.testing.assert_close(m(x)[0], torch.stack(expected, 1), **TOL)
    torch.testing.assert_close(stepped(m, x), torch.stack(expected, 1), **TOL)


def test_minlstm_is_the_papers_recurrence():
    m = make_mixer("minlstm")
    x = torch.randn(2, 9, D, dtype=torch.float64)
    kf, ki, cand = m.to_gates_and_candidate(x).chunk(3, -1)
    f, i = torch.sigmoid(kf), torch.sigmoid(ki)
    f, i = f / (f + i), i / (f + i)
    h, expected = torch.zeros(2, D, dtype=torch.float64), []
    for t in range(9):
        h = f[:, t] * h + i[:, t] * cand[:, t]
        expected.append(h)
    torch.testing.assert_close(m(x)[0], torch.stack(expected, 1), **TOL)
    torch.testing.assert_close(stepped(m, x), torch.stack(expected, 1), **TOL)


def test_mingru_expand_adds_an_output_projection():
    m = layers.build("mingru", 8, expand=2)
    assert m.hidden_size == 16 and m.out.weight.shape == (8, 16)
    assert m(torch.randn(1, 4, 8))[1].h.shape == (1, 16)


def test_rwkv_wkv_matches_the_formula_and_survives_large_keys():
    """RWKV-4 time mixing (Peng et al. 2023, eqs. 11-16): token shift k_t = W_k (μ_k x_t + (1 - μ_k) x_{t-1})
    (x_{-1} = 0; v, r likewise), the WKV sums with decay w = exp(time_decay) and bonus u, y = W_o (σ(r) ⊙ wkv)."""
    m = make_mixer("rwkv")
    x = torch.randn(2, 11, D, dtype=torch.float64)
    x_prev = torch.cat([torch.zeros(2, 1, D, dtype=torch.float64), x[:, :-1]], 1)
    k, v, r = ((x * mu + x_prev * (1 - mu)) @ layer.weight.t()
               for mu, layer in ((m.mix_k, m.key), (m.mix_v, m.value), (m.mix_r, m.receptance)))
    w, u = torch.exp(m.time_decay), m.time_first
    wkv = torch.zeros_like(k)
    for t in range(11):
        num = sum(torch.exp(-(t - 1 - i) * w + k[:, i]) * v[:, i] for i in range(t)) + torch.exp(u + k[:, t]) * v[:, t]
        den = sum(torch.exp(-(t - 1 - i) * w + k[:, i]) for i in range(t)) + torch.exp(u + k[:, t])
        wkv[:, t] = num / den
    expected = (torch.sigmoid(r) * wkv) @ m.output.weight.t()
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)
    # keys far beyond exp's range (up to e^3000, spread over thousands) stay finite in both forms
    with torch.no_grad():
        m.key.weight.mul_(0).add_(torch.eye(D, dtype=torch.float64) * 600)
    big = x.abs() + 0.5
    y, _ = m(big)
    assert torch.isfinite(y).all()
    y_steps, state = [], None
    for t in range(11):
        y_t, state = m.step(big[:, t], state)
        y_steps.append(y_t)
    torch.testing.assert_close(torch.stack(y_steps, 1), y)


@pytest.mark.parametrize("gap", [800.0, 1e4])
@pytest.mark.parametrize("T", [64, 200])
def test_rwkv_parallel_form_stays_exact_when_one_key_dwarfs_the_later_ones(gap, T):
    """A first key `gap` above every later key: the sums are dominated by it for as long as its decay
    keeps it ahead, then by the later keys; scaling by an undecayed running maximum underflowed to 0/0
    from a gap of about 745 (the official kernel's running maximum decays by w every step)."""
    m = make_mixer("rwkv")
    with torch.no_grad():
        m.mix_k.fill_(1.0)  # k_t = W_k x_t: no token shift into the keys
        m.key.weight.copy_(torch.eye(D, dtype=torch.float64))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, T, D, generator=g, dtype=torch.float64)
    x[:, 0] += gap
    with torch.no_grad():
        y, _ = m(x)
        y_steps, state = [], None
        for t in range(T):
            y_t, state = m.step(x[:, t], state)
            y_steps.append(y_t)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, torch.stack(y_steps, 1), rtol=1e-7, atol=1e-7)


def test_rwkv_spiking_emits_binary_spikes_with_surrogate_gradients():
    m = make_mixer("rwkv", dtype=torch.float32, spiking=True)
    with torch.no_grad():
        m.output.weight.mul_(10)  # drive the neuron over its threshold
    x = torch.randn(2, 30, D, requires_grad=True)
    y, state = m(x)
    assert set(y.unique().tolist()) <= {0.0, 1.0} and 0 < y.mean() < 1
    assert state.membrane is not None and state.membrane.shape == (2, D)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_rwkv_spiking_is_a_lif_neuron_on_the_mixer_output():
    """SpikeGPT (Zhu et al. 2023, sec. 3; ridgerchu/SpikeGPT src/model.py): a leaky integrate-and-fire neuron
    along tokens on the time-mixing output y_t: V_t = V_{t-1} + (y_t - V_{t-1}) / 2, s_t = [V_t >= 1], then a hard
    reset V_t = 0 where it spiked (V_{-1} = 0)."""
    plain = make_mixer("rwkv")
    spiking = make_mixer("rwkv", spiking=True)
    spiking.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for m in (plain, spiking):
            m.output.weight.mul_(10)  # drive the neuron over its threshold
    x = torch.randn(2, 12, D, dtype=torch.float64)
    y, _ = plain(x)
    V, expected = torch.zeros(2, D, dtype=torch.float64), []
    for t in range(12):
        V = V + (y[:, t] - V) / 2
        s = (V >= 1).double()
        V = V * (1 - s)
        expected.append(s)
    expected = torch.stack(expected, 1)
    assert 0 < expected.mean() < 1
    torch.testing.assert_close(spiking(x)[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(stepped(spiking, x), expected, rtol=0, atol=0)


def test_lif_neuron_integrates_fires_and_resets():
    membrane = torch.zeros(1)
    spikes = []
    for _ in range(4):
        s, membrane = lif_step(torch.tensor([1.5]), membrane)
        spikes.append(s.item())
    # V: 0.75 -> 1.125 (spike, reset 0) -> 0.75 -> 1.125 (spike)
    assert spikes == [0.0, 1.0, 0.0, 1.0]


def test_gam_sees_only_its_convolution_window():
    # one layer: output t depends on tokens t-2..t only
    m = make_mixer("gam")
    x = torch.randn(1, 20, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 10] += 1.0
    y, y2 = m(x)[0], m(x2)[0]
    changed = (y - y2).abs().amax(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == [10, 11, 12]


def test_a_stack_of_six_gam_layers_sees_twelve_tokens_back():
    torch.manual_seed(0)
    model = CausalLM(ModelConfig(vocab_size=10, d_model=16, n_layers=6, mixer="gam", mixer_kwargs={"gam": {"num_slots": 8}}))
    ids = torch.randint(0, 10, (1, 30))
    logits = model(ids)[0]
    for back, should_change in ((13, False), (14, False), (12, True)):
        other = ids.clone()
        other[0, 25 - back] = (other[0, 25 - back] + 1) % 10
        diff = (model(other)[0][0, 25] - logits[0, 25]).abs().max().item()
        assert (diff > 0) == should_change, f"token t-{back}"


def test_sliding_window_attention_forgets_beyond_its_window():
    m = make_mixer("swa")  # window 4: sees t-3..t
    x = torch.randn(1, 12, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 2] += 1.0
    changed = (m(x)[0] - m(x2)[0]).abs().amax(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == [2, 3, 4, 5]


def test_attention_is_translation_invariant_through_rope():
    m = make_mixer("attention")
    x = torch.randn(1, 6, D, dtype=torch.float64)
    y0, _ = m(x)
    cache = m.init_state(1).replace(offset=100)  # same tokens at positions 100..105: rotary makes scores depend on offsets only
    y100, _ = m(x, cache)
    torch.testing.assert_close(y100, y0)


def test_gmu_gates_the_memory():
    m = make_mixer("gmu")
    x = torch.randn(2, 5, D, dtype=torch.float64)
    mem = torch.randn(2, 5, 12, dtype=torch.float64)
    torch.testing.assert_close(m(x, memory=mem)[0], m.out_proj(F.silu(m.in_proj(x)) * mem), **TOL)
    with pytest.raises(ValueError, match="gmu needs memory="):
        m(x)
    with pytest.raises(ValueError, match=r"memory must have shape \(2, 5, 12\)"):
        m(x, memory=mem[..., :4])
    normed = make_mixer("gmu", norm_groups=3)
    assert normed(x, memory=mem)[0].shape == x.shape


def test_pgn_reads_the_strictly_past_window():
    m = make_mixer("pgn")  # window 5
    x = torch.randn(2, 12, D, dtype=torch.float64)
    padded = torch.cat([torch.zeros(2, 5, D, dtype=torch.float64), x], 1)
    windows = torch.stack([torch.einsum("bwd,dw->bd", padded[:, t : t + 5], m.lag_filter) for t in range(12)], 1)
    h = m.hie_mix(windows)
    g, c = m.gate(torch.cat([x, h], -1)).chunk(2, -1)
    expected = torch.sigmoid(g) * h + (1 - torch.sigmoid(g)) * torch.tanh(c)
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)


@pytest.mark.parametrize("kwargs", [{}, {"use_act": True}, {"kernel_size": -1, "l_max": 6}])
def test_baseconv_is_projection_times_convolution_plus_input(kwargs):
    """BaseConv (Arora et al. 2023, eq. 2; zoology/mixers/base_conv.py): y = (x W + b) ⊙ (h ∗ x) + x, or
    SiLU(h ∗ x) ⊙ SiLU(x W + b) + x with use_act; h ∗ x is the short causal conv Σ_j w[:, j] x_{t-2+j} + c or
    the explicit long filter Σ_{n<l_max} h[:, n] x_{t-n} (no bias, zoology's LongConvolution)."""
    m = make_mixer("baseconv", **kwargs)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1:  # the short filter's bias starts at zero
                p.normal_()
    B, T = 2, 8
    x = torch.randn(B, T, D, dtype=torch.float64)
    w = m.filter
    if kwargs.get("kernel_size") == -1:
        assert w.shape == (D, 6)
        conv = torch.stack([sum(w[:, n] * x[:, t - n] for n in range(min(t, 5) + 1)) for t in range(T)], 1)
    else:
        conv = torch.stack([m.filter_bias + sum(w[:, j] * x[:, t - 2 + j] for j in range(3) if t - 2 + j >= 0)
                            for t in range(T)], 1)
    proj = linear(x, m.projection)
    expected = (swish(conv) * swish(proj) if kwargs.get("use_act") else conv * proj) + x
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)


def test_short_conv_is_lfm2s_gated_short_convolution():
    """LFM2's gated short convolution (transformers' Lfm2ShortConv): [b, c, h] = x W_in (in that order), u = b ⊙ h,
    v_t = Σ_{i<3} w[:, i] u_{t-2+i} (causal, no bias), y = W_out(c ⊙ v); nothing more than 2 tokens back."""
    m = make_mixer("short_conv")
    assert m.filter.shape == (D, 3) and m.in_proj.bias is None and m.out_proj.bias is None
    B, T = 2, 8
    x = torch.randn(B, T, D, dtype=torch.float64)
    b, c, h = linear(x, m.in_proj).split(D, -1)
    u = b * h
    v = torch.stack([sum(m.filter[:, i] * u[:, t - 2 + i] for i in range(3) if t - 2 + i >= 0) for t in range(T)], 1)
    expected = linear(c * v, m.out_proj)
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)
    changed = x.clone()
    changed[:, 2] += 1.0  # reaches outputs 2, 3, 4 and no later one
    diff = (m(changed)[0] - m(x)[0]).abs().amax((0, 2))
    assert (diff[2:5] > 0).all() and (diff[5:] == 0).all() and (diff[:2] == 0).all()


def test_hyena_filter_is_windowed_and_as_long_as_l_max():
    m = make_mixer("hyena")
    h = m.long_filter()
    assert h.shape == (D, 40)
    # the exponential window shrinks every channel's envelope along the lags
    window = m.long_filter.window()  # (l_max, d)
    assert (window[-1] < window[0]).all() and window[-1].max() < 0.05


@pytest.mark.parametrize("option", [{"head_dim": 4}, {"qkv_bias": True}, {"out_bias": True}, {"n_kv_heads": 1},
                                    {"rope_scaling": {"type": "linear", "factor": 2.0}}])
def test_liger_carries_the_attention_options(option):
    """from_attention keeps head_dim, biases, grouped key/value heads and RoPE scaling: with mix = 1 the layer is
    the source attention restricted to its window (float64, to rounding)."""
    attn = make_mixer("attention", **option).double()
    liger = LigerAttention.from_attention(attn, window=4)
    assert sum(p.numel() for p in liger.parameters()) == sum(p.numel() for p in attn.parameters())
    liger.mix_weight = 1.0
    swa = make_mixer("swa", **option).double()
    swa.load_state_dict(attn.state_dict())
    x = torch.randn(1, 10, D, dtype=torch.float64)
    torch.testing.assert_close(liger(x)[0], swa(x)[0], rtol=0, atol=1e-12)


def test_liger_is_built_from_attention_weights():
    attn = make_mixer("attention")
    liger = LigerAttention.from_attention(attn, window=4)
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        torch.testing.assert_close(getattr(liger, name).weight, getattr(attn, name).weight)
    assert sum(p.numel() for p in liger.parameters()) == sum(p.numel() for p in attn.parameters())
    x = torch.randn(1, 10, D, dtype=torch.float64)
    # mix = 1: only the sliding-window branch, which is the source layer's attention with a window
    liger.mix_weight = 1.0
    swa = make_mixer("swa")
    swa.load_state_dict(attn.state_dict())
    torch.testing.assert_close(liger(x)[0], swa(x)[0])
    # mix = 0: only the gated linear branch (softmax feature maps, gate from k, scale 1)
    liger.mix_weight = 0.0
    q, k, v, g = liger._linear_inputs(x)
    from recurlab.ops import gla

    o, _ = gla(q, k, v, g, scale=1.0, backend="reference")
    torch.testing.assert_close(liger(x)[0], liger.o_proj(o.flatten(-2)))


def test_liger_refuses_a_token_tree():
    """Liger Attention inherits attention's projections but not tree scoring (its window and GLA state see one path):
    a tree is refused by name, not passed on to a mix that cannot take it."""
    from recurlab.layers.tree import TokenTree

    with pytest.raises(ValueError, match="takes no tree="):
        make_mixer("liger")(torch.randn(1, 3, D, dtype=torch.float64), tree=TokenTree(torch.tensor([-1, 0, 0])))


def test_liger_gla_is_the_linear_branch_of_liger():
    """liger_gla (Lan et al. 2025; the GLA branch of the authors' LigerGatedLinearAttention): o = GLA(softmax q,
    softmax k, v, logsigmoid(k)/16, scale 1) per query head, key/value/gate heads repeated (head h reads
    h // (H/H_kv)), then W_o: checked against the definition, written out here, with grouped heads and biases."""
    from recurlab.layers.liger import LigerGLA
    from recurlab.ops import gla

    attn = make_mixer("attention", n_heads=4, n_kv_heads=2, qkv_bias=True)
    layer = LigerGLA.from_attention(attn)
    assert sum(p.numel() for p in layer.parameters()) == sum(p.numel() for p in attn.parameters())
    x = torch.randn(2, 9, D, dtype=torch.float64)
    B, T, H, Dh = 2, 9, 4, D // 4
    q = attn.q_proj(x).view(B, T, H, Dh).softmax(-1)
    k_raw = attn.k_proj(x).view(B, T, 2, Dh)[:, :, [0, 0, 1, 1]]
    v = attn.v_proj(x).view(B, T, 2, Dh)[:, :, [0, 0, 1, 1]]
    log_alpha = F.logsigmoid(k_raw) / 16
    o, _ = gla(q, k_raw.softmax(-1), v, log_alpha, scale=1.0, backend="reference")
    torch.testing.assert_close(layer(x)[0], attn.o_proj(o.flatten(-2)), rtol=0, atol=1e-12)
    # the plain-GLA baseline's gate is a new low-rank projection; everything else is the same layer
    baseline = LigerGLA.from_attention(attn, gate_rank=3)
    assert sum(p.numel() for p in baseline.parameters()) - sum(p.numel() for p in attn.parameters()) \
        == D * 3 + 3 * 2 * Dh + 2 * Dh
    g = baseline.gate_up(baseline.gate_down(x)).view(B, T, 2, Dh)[:, :, [0, 0, 1, 1]]
    o, _ = gla(q, k_raw.softmax(-1), v, F.logsigmoid(g) / 16, scale=1.0, backend="reference")
    torch.testing.assert_close(baseline(x)[0], attn.o_proj(o.flatten(-2)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,act", [("swiglu", F.silu), ("geglu", F.gelu), ("glu", torch.sigmoid)])
def test_glu_family(name, act):
    m = layers.build(name, 12).double()
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    gate, value = m.gate_and_value(x).chunk(2, -1)
    torch.testing.assert_close(m(x), m.down(act(gate) * value), **TOL)
    assert m.down.in_features == 32  # 8/3 * 12


def test_mlp_and_cglu():
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    mlp = layers.build("mlp", 12).double()
    torch.testing.assert_close(mlp(x), mlp.down(F.gelu(mlp.up(x))), **TOL)
    relu = layers.build("mlp", 12, activation="relu").double()
    torch.testing.assert_close(relu(x), relu.down(relu.up(x).clamp(min=0)), **TOL)
    relu2 = layers.build("mlp", 12, activation="relu2").double()
    torch.testing.assert_close(relu2(x), relu2.down(relu2.up(x).clamp(min=0) ** 2), **TOL)
    with pytest.raises(ValueError, match="activation must be one of gelu, relu, relu2"):
        layers.build("mlp", 12, activation="tanh")
    cglu = layers.build("cglu", 12).double()
    x1 = cglu.up(x)
    h = cglu.down(x1 * torch.sigmoid(cglu.slope * x1))
    g = torch.sigmoid(cglu.gate(x))
    torch.testing.assert_close(cglu(x), g * h + (1 - g) * x, **TOL)
    with torch.no_grad():  # a closed gate passes the input through unchanged
        cglu.gate.bias.fill_(-1e4)
    torch.testing.assert_close(cglu(x), x)


@pytest.mark.parametrize("name", layers.names("channel"))  # every registered channel mixer
def test_channel_mixers_check_input(name):
    m = layers.build(name, 12)
    assert m(torch.randn(2, 3, 12)).shape == (2, 3, 12) and m(torch.randn(2, 12)).shape == (2, 12)
    with pytest.raises(ValueError, match="x must have last dimension d_model=12"):
        m(torch.randn(2, 3, 11))


def test_hidden_math():
    assert math.isclose(layers.mlp.gated_hidden_size(256), 688)


def test_hyena_decoding_filter_cache_follows_parameter_updates():
    m = make_mixer("hyena")
    x = torch.randn(2, 3, D, dtype=torch.float64)
    with torch.no_grad():
        before, _ = m.step(x[:, 0])
        for p in m.long_filter.parameters():
            p.add_(0.1)  # an optimiser step changes the filter in place
        after, _ = m.step(x[:, 0])
        expected, _ = m(x[:, :1])
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected[:, 0])


def rope_angles(Dh, base, scaling=None):
    """θ_i = base^(-2i/Dh), i < Dh/2 (RoFormer eq. 34), rescaled as a pretrained checkpoint declares it:
    linear: θ_i / factor; llama3 (Llama 3.1): with wavelength λ = 2π/θ_i and context L, keep θ_i when
    λ < L / high_freq_factor, θ_i / factor when λ > L / low_freq_factor, otherwise
    (1 - s) θ_i / factor + s θ_i with s = (L / λ - low_freq_factor) / (high_freq_factor - low_freq_factor)."""
    thetas = []
    for i in range(Dh // 2):
        theta = base ** (-2.0 * i / Dh)
        if scaling is not None and scaling["type"] == "linear":
            theta = theta / scaling["factor"]
        elif scaling is not None:
            f, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
            L = scaling["original_max_position_embeddings"]
            wavelength = 2 * math.pi / theta
            if wavelength > L / lo:
                theta = theta / f
            elif wavelength >= L / hi:
                s = (L / wavelength - lo) / (hi - lo)
                theta = (1 - s) * theta / f + s * theta
        thetas.append(theta)
    return thetas


def rope(x, positions, base, scaling=None):
    """RoFormer (Su et al. 2021) eq. 34: rotate each pair of features by the angle position * θ_i
    (θ from rope_angles). The pairs are (i, i + Dh/2) (the half-split pairing of GPT-NeoX and Llama;
    RoFormer pairs (2i, 2i+1), which is the same up to a fixed permutation of W_q's and W_k's rows).
    x: (B, T, H, Dh); positions: T ints."""
    Dh = x.shape[-1]
    half = Dh // 2
    out = torch.empty_like(x)
    for i, theta in enumerate(rope_angles(Dh, base, scaling)):
        for j, p in enumerate(positions):
            c, s = math.cos(p * theta), math.sin(p * theta)
            a, b = x[:, j, :, i], x[:, j, :, i + half]
            out[:, j, :, i] = c * a - s * b
            out[:, j, :, i + half] = s * a + c * b
    return out


def direct_softmax_attention(m, x, sees, start=0):
    """Vaswani et al. 2017 eq. 1 with RoPE, token by token: for every head h and query t,
    o_t = Σ_{s : sees(t, s)} softmax_s(q_t · k_s / sqrt(Dh)) v_s, q_t = RoPE(x_t W_q), k_s = RoPE(x_s W_k),
    query head h reading key/value head h // (H / H_kv) (grouped-query); y_t = o_t W_o.
    Positions are start..start+T-1; sees(t, s) is the mask over those absolute positions. Biases, the
    head width Dh and the rotary scaling are the layer's (Llama / Qwen2 checkpoints' options)."""
    B, T, _ = x.shape
    H, H_kv, Dh = m.n_heads, m.n_kv_heads, m.head_dim
    positions = range(start, start + T)
    q = rope(linear(x, m.q_proj).view(B, T, H, Dh), positions, m.rope_base, m.rope_scaling)
    k = rope(linear(x, m.k_proj).view(B, T, H_kv, Dh), positions, m.rope_base, m.rope_scaling)
    v = linear(x, m.v_proj).view(B, T, H_kv, Dh)
    o = torch.zeros(B, T, H, Dh, dtype=x.dtype)
    for h in range(H):
        g = h // (H // H_kv)
        for t in range(T):
            keys = [s for s in range(T) if sees(start + t, start + s)]
            scores = torch.stack([(q[:, t, h] * k[:, s, g]).sum(-1) / math.sqrt(Dh) for s in keys], -1)  # (B, n)
            weights = torch.exp(scores - scores.amax(-1, keepdim=True))
            weights = weights / weights.sum(-1, keepdim=True)
            o[:, t, h] = sum(weights[:, j, None] * v[:, s, g] for j, s in enumerate(keys))
    return linear(o.flatten(2), m.o_proj)


def causal(t, s):
    return s <= t


def in_window(window):
    """The last `window` tokens, the current one included: Samba's flash-attention call
    window_size=(local_window - 1, 0) (microsoft/Samba lit_gpt/model.py:586)."""
    return lambda t, s: 0 <= t - s < window


@pytest.mark.parametrize("n_heads,n_kv_heads", [(2, None), (4, 2)])  # (4, 2): query heads 0, 1 read kv head 0
def test_attention_is_causal_softmax_attention_with_rope(n_heads, n_kv_heads):
    """Causal softmax attention (Vaswani et al. 2017, eq. 1) with RoPE at absolute positions: step by step,
    and a prefix then the rest against its cache, equal the direct formula."""
    m = make_mixer("attention", n_heads=n_heads, n_kv_heads=n_kv_heads)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    expected = direct_softmax_attention(m, x, causal)
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)
    y_a, state = m(x[:, :4])  # a prefix, then the rest against its cache: positions continue
    torch.testing.assert_close(torch.cat([y_a, m(x[:, 4:], state)[0]], 1), expected, **TOL)


def test_cross_attention_is_causal_attention_over_the_shared_cache():
    """YOCO's / SambaY's cross-decoder attention: q_t = RoPE(x_t W_q) at the token's absolute position, the keys
    (already rotated) and values of the cache, query t seeing the cache's keys at positions <= its own, grouped-
    query heads, y = o W_o: parallel form and step by step. The cache holds 3 earlier tokens, then x's 5."""
    m = make_mixer("cross_attention", n_heads=4, n_kv_heads=2)
    B, past, T, H, H_kv, Dh = 2, 3, 5, 4, 2, m.head_dim
    g = torch.Generator().manual_seed(3)
    k, v = (torch.randn(B, past + T, H_kv, Dh, generator=g, dtype=torch.float64) for _ in range(2))
    x = torch.randn(B, T, D, dtype=torch.float64)
    q = rope(linear(x, m.q_proj).view(B, T, H, Dh), range(past, past + T), m.rope_base)
    o = torch.zeros(B, T, H, Dh, dtype=torch.float64)
    for h in range(H):
        for t in range(T):
            keys = range(past + t + 1)  # positions 0 .. past + t
            scores = torch.stack([(q[:, t, h] * k[:, s, h // 2]).sum(-1) / math.sqrt(Dh) for s in keys], -1)
            weights = torch.softmax(scores, -1)
            o[:, t, h] = sum(weights[:, j, None] * v[:, s, h // 2] for j, s in enumerate(keys))
    expected = linear(o.flatten(2), m.o_proj)
    cache = KVCache().append(k, v)
    torch.testing.assert_close(m(x, kv=cache)[0], expected, **TOL)
    steps = [m.step(x[:, t], None, kv=cache.without_last(T - 1 - t))[0] for t in range(T)]
    torch.testing.assert_close(torch.stack(steps, 1), expected, **TOL)
    assert not hasattr(m, "k_proj") and not hasattr(m, "v_proj")  # it writes no keys of its own


LLAMA3_SCALING = {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 64}  # with base 10000 and Dh 8: all three frequency bands


@pytest.mark.parametrize("options", [
    {"head_dim": 6},                                  # Dh * H = 12 != d_model = 16: W_q (12, 16), W_o (16, 12)
    {"qkv_bias": True, "n_kv_heads": 2},              # Qwen2: biases on W_q, W_k, W_v only
    {"qkv_bias": True, "out_bias": True},             # Llama's attention_bias: on all four
    {"rope_scaling": {"type": "linear", "factor": 4.0}, "rope_base": 500.0},
    {"rope_scaling": LLAMA3_SCALING, "n_heads": 2},
], ids=["head_dim", "qkv_bias", "all_bias", "rope_linear", "rope_llama3"])
def test_attention_options_of_pretrained_checkpoints_follow_the_formula(options):
    """The options loading Llama-family checkpoints needs (head width, biases, rescaled RoPE frequencies), against
    the direct formula: parallel form, step by step, and a prefix then the rest."""
    m = make_mixer("attention", **{"n_heads": 4, **options})
    with torch.no_grad():  # biases start at zero: make them count
        for layer in (m.q_proj, m.k_proj, m.v_proj, m.o_proj):
            if layer.bias is not None:
                layer.bias.normal_(0, 0.5)
    assert m.q_proj.weight.shape[0] == m.n_heads * m.head_dim
    x = torch.randn(2, 20, D, dtype=torch.float64)
    expected = direct_softmax_attention(m, x, causal)
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)
    y_a, state = m(x[:, :7])
    torch.testing.assert_close(torch.cat([y_a, m(x[:, 7:], state)[0]], 1), expected, **TOL)


def test_llama3_rope_scaling_keeps_short_wavelengths_and_divides_long_ones():
    from recurlab.layers.rotary import rope_frequencies

    theta = rope_frequencies(8, 10000.0, None, torch.float64)  # 1, 0.1, 0.01, 0.001
    scaled = rope_frequencies(8, 10000.0, LLAMA3_SCALING, torch.float64)
    # wavelengths 2π/θ = 6.3, 63, 628, 6283 against the bands 64 / 4 = 16 and 64 / 1 = 64
    assert scaled[0] == theta[0]  # short: kept
    s = (64 / (2 * math.pi / 0.1) - 1) / (4 - 1)
    assert math.isclose(scaled[1], (1 - s) * 0.1 / 8 + s * 0.1, rel_tol=1e-12)  # in between: blended
    torch.testing.assert_close(scaled[2:], theta[2:] / 8.0, rtol=0, atol=0)  # long: divided by the factor


@pytest.mark.parametrize("bad,match", [
    ({"rope_scaling": {"type": "yarn", "factor": 2.0}}, "rope_scaling must be None or a dict with type"),
    ({"rope_scaling": {"type": "linear"}}, "takes exactly the keys factor"),
    ({"rope_scaling": {"type": "linear", "factor": 0}}, r"rope_scaling\['factor'\] must be a number > 0"),
    ({"head_dim": 3}, "head_dim must be an even number"),
    ({"n_heads": 3}, "must divide d_model"),
])
def test_attention_options_are_checked(bad, match):
    with pytest.raises(ValueError, match=match):
        layers.build("attention", D, **bad)


@pytest.mark.parametrize("window", [1, 2, 4])
def test_sliding_window_attention_sees_exactly_the_last_window_tokens(window):
    """Sliding-window attention (Beltagy et al. 2020; Samba): query t attends to keys t - window < s <= t.
    T = 11 > 2 * window runs the blockwise path, alone and after a cached prefix; T = 2 * window the dense mask."""
    m = make_mixer("swa", window=window)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    expected = direct_softmax_attention(m, x, in_window(window))
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(m(x[:, : 2 * window])[0], expected[:, : 2 * window], **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)
    y_a, state = m(x[:, :2])
    torch.testing.assert_close(torch.cat([y_a, m(x[:, 2:], state)[0]], 1), expected, **TOL)


def test_sliced_attention_is_softmax_attention_within_causal_groups():
    """SReT sliced group attention (Shen et al. 2022, sec. 3.2), causal: token t attends to s <= t in its
    own group [0, offset), [offset, offset + G), ... (tiny: G = 4, offset = 1)."""
    m = make_mixer("sliced_attention")
    size, offset = m.group_size, m.group_offset

    def group(t):
        return -1 if t < offset else (t - offset) // size

    x = torch.randn(2, 11, D, dtype=torch.float64)
    expected = direct_softmax_attention(m, x, lambda t, s: s <= t and group(s) == group(t))
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)


def direct_gla(q, k, v, alpha, scale):
    """Gated linear attention, per head (Yang et al. 2023, eqs. 9-10; fla's naive_recurrent_gla):
    S_t = diag(α_t) S_{t-1} + k_tᵀ v_t,  o_t = scale · q_t S_t.  q, k, alpha (B, T, H, K), v (B, T, H, V)."""
    B, T, H, K = q.shape
    S = torch.zeros(B, H, K, v.shape[-1], dtype=q.dtype)
    o = []
    for t in range(T):
        S = alpha[:, t, :, :, None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        o.append(scale * (q[:, t, :, :, None] * S).sum(-2))
    return torch.stack(o, 1)  # (B, T, H, V)


def test_gla_is_the_papers_gated_linear_attention():
    """GLA (Yang et al. 2023, sec. 4.4, eqs. 9-11, with fla's fla/layers/gla.py parametrisation):
    q = x W_q, k = x W_k, v = x W_v per head; α_t = σ(x W_α1 W_α2 + b_α)^(1/τ), τ = 16 (log α = logsigmoid/τ);
    S_t = diag(α_t) S_{t-1} + k_tᵀ v_t, o_t = q_t S_t / sqrt(d_k / H);
    y = W_o (RMSNorm_head(o_t; eps 1e-5, weight) ⊙ swish(x W_g)). The memory read-out is o."""
    m = make_mixer("gla")
    with torch.no_grad():  # leave the N(0, 0.02) start: far-from-one decays, a bias, a norm weight
        for layer in m.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(20)
        m.gate_up.bias.normal_(0, 1)
        m.head_norm.weight.normal_(1, 0.3)
    B, T, H = 2, 9, m.n_heads
    K, V = D // 2 // H, D // H  # d_k = d/2, d_v = d
    x = torch.randn(B, T, D, dtype=torch.float64)
    q = linear(x, m.q_proj).view(B, T, H, K)
    k = linear(x, m.k_proj).view(B, T, H, K)
    v = linear(x, m.v_proj).view(B, T, H, V)
    alpha = torch.sigmoid(linear(linear(x, m.gate_down), m.gate_up)).pow(1 / 16).view(B, T, H, K)
    o = direct_gla(q, k, v, alpha, K**-0.5)
    normed = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * m.head_norm.weight
    expected = linear(normed.flatten(2) * swish(linear(x, m.g_proj)), m.o_proj)
    y, _, memory = m.forward_with_memory(x)
    torch.testing.assert_close(y, expected, **TOL)
    torch.testing.assert_close(memory, o.flatten(2), **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)


def test_liger_is_half_sliding_window_attention_and_half_gated_linear_attention():
    """Liger Attention (Lan et al. 2025, sec. 3; OpenSparseLLMs/Linearization
    liger/models/liger_gla/modeling_liger_gla.py): with the attention layer's W_q, W_k, W_v, W_o,
    o = 0.5 SWA(RoPE q, RoPE k, v; window) + 0.5 GLA(softmax(q), softmax(k), v, α = σ(k)^(1/16)) with
    scale 1 (softmax over each head's features, gate = k itself, no RoPE on this branch); y = o W_o."""
    m = make_mixer("liger")  # window 4
    B, T, H, Dh = 2, 11, m.n_heads, m.head_dim
    x = torch.randn(B, T, D, dtype=torch.float64)
    q = linear(x, m.q_proj).view(B, T, H, Dh)
    k = linear(x, m.k_proj).view(B, T, H, Dh)
    v = linear(x, m.v_proj).view(B, T, H, Dh)
    o_gla = direct_gla(torch.softmax(q, -1), torch.softmax(k, -1), v, torch.sigmoid(k).pow(1 / 16), 1.0)
    swa_part = direct_softmax_attention(m, x, in_window(4))  # already through W_o, which is linear
    expected = 0.5 * swa_part + 0.5 * linear(o_gla.flatten(2), m.o_proj)
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)


def test_gam_is_gated_local_convolution_plus_memory_read():
    """GAM (2025; rishiraj/gam gam_model.py, GAMBlock.forward): local_t = Conv1d(x, kernel 3, padding 2,
    groups d)[:T]_t = Σ_j w[:, j] x_{t-2+j} + b (zero before the start; w[:, 2] weighs the current token);
    global_t = softmax(x_t Mᵀ) M; [a_t, b_t] = x_t W_g + b_g; y_t = σ(a_t) local_t + σ(b_t) global_t."""
    m = make_mixer("gam")
    with torch.no_grad():
        m.conv_bias.normal_()  # starts at zero
    B, T = 2, 9
    x = torch.randn(B, T, D, dtype=torch.float64)
    w, M = m.conv_weight, m.memory
    a, b = linear(x, m.gate).chunk(2, -1)
    expected = torch.empty_like(x)
    for t in range(T):
        local = m.conv_bias + sum(w[:, j] * x[:, t - 2 + j] for j in range(3) if t - 2 + j >= 0)
        scores = x[:, t] @ M.t()  # (B, slots)
        p = torch.exp(scores - scores.amax(-1, keepdim=True))
        read = (p / p.sum(-1, keepdim=True)) @ M
        expected[:, t] = torch.sigmoid(a[:, t]) * local + torch.sigmoid(b[:, t]) * read
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)


def hyena_filter(m):
    """Hyena's implicit filter (Poli et al. 2023, sec. 3.3; Zoology's zoology/mixers/hyena.py Filter):
    h[:, n] = FFN(PE(n)) ⊙ exp(-t̂_n |δ|) for lag n = 0..l_max-1, t̂_n = n / (l_max - 1),
    PE(n) = [t̂_n, Re, Im of exp(-i f ω_n)], ω_n = 2π n / l_max, f = 1e-4 (emb_dim 3: one band);
    FFN = Linear -> sin(a ⊙ ·) -> (Linear -> sin(a ⊙ ·)) x 2 -> Linear (no bias), read from the module;
    δ = linspace(ln(1e-2) / 1.5, ln(1e-2) / 0.3, d): the window reaches 1e-2 at 150% .. 30% of l_max."""
    L = m.l_max
    n = torch.arange(L, dtype=torch.float64)
    t = n / (L - 1)
    omega = 2 * math.pi * n / L
    z = torch.stack([t, torch.cos(1e-4 * omega), -torch.sin(1e-4 * omega)], -1)  # (L, 3)
    modules = list(m.long_filter.ffn)
    for linear_layer, sine in zip(modules[0:-1:2], modules[1:-1:2]):
        z = torch.sin(sine.freq * linear(z, linear_layer))
    h = linear(z, modules[-1])  # (L, d)
    delta = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, m.d_model, dtype=torch.float64)
    return (h * torch.exp(-t[:, None] * delta.abs())).t()  # (d, L)


@pytest.mark.parametrize("l_max,T", [(40, 9), (6, 13)])  # a filter longer than the input; an input longer than it
def test_hyena_is_gated_long_convolution_with_the_implicit_filter(l_max, T):
    """Order-2 Hyena (Poli et al. 2023, sec. 3; H(x1, x2) v = D_x2 T_h D_x1 v, as Zoology's Hyena.forward):
    [x1, x2, v] = DWConv_3(x W_in + b_in) (causal, with bias); g = x1 ⊙ v;
    z_t = Σ_{n=0}^{min(t, l_max-1)} h[:, n] ⊙ g_{t-n} + D ⊙ g_t (causal long convolution, skip D: fftconv's
    `y + u * D`); y = (x2 ⊙ z) W_out + b_out. A token sees exactly l_max - 1 lags back."""
    m = make_mixer("hyena", l_max=l_max)
    with torch.no_grad():  # sine frequencies away from their start at 1, a short-convolution bias
        for p in m.parameters():
            if p.dim() == 1:
                p.normal_(1, 0.5)
    B = 2
    x = torch.randn(B, T, D, dtype=torch.float64)
    u = linear(x, m.in_proj)
    w = m.short_filter
    short = torch.stack([m.short_bias + sum(w[:, j] * u[:, t - 2 + j] for j in range(3) if t - 2 + j >= 0)
                         for t in range(T)], 1)
    x1, x2, v = short[..., :D], short[..., D : 2 * D], short[..., 2 * D :]
    g = x1 * v
    h = hyena_filter(m)
    z = torch.stack([sum(h[:, n] * g[:, t - n] for n in range(min(t, l_max - 1) + 1)) + m.skip * g[:, t]
                     for t in range(T)], 1)
    expected = linear(x2 * z, m.out_proj)
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)
    y_a, state = m(x[:, :3])
    torch.testing.assert_close(torch.cat([y_a, m(x[:, 3:], state)[0]], 1), expected, **TOL)


def test_gru_is_the_papers_recurrence():
    """GRU (Cho et al. 2014, eqs. 5-8) in torch.nn.GRU's form: biases on both sides, and the reset gate
    multiplies U_n h + b_hn (Cho's eq. 8 resets h before U_n: tanh(W x + U (r ⊙ h))):
    r = σ(W_r x + b_ir + U_r h + b_hr), z = σ(W_z x + b_iz + U_z h + b_hz),
    n = tanh(W_n x + b_in + r ⊙ (U_n h + b_hn)), h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}."""
    m = make_mixer("gru")
    B, T = 2, 9
    x = torch.randn(B, T, D, dtype=torch.float64)
    W_r, W_z, W_n = m.rnn.weight_ih_l0.chunk(3, 0)
    U_r, U_z, U_n = m.rnn.weight_hh_l0.chunk(3, 0)
    b_ir, b_iz, b_in = m.rnn.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = m.rnn.bias_hh_l0.chunk(3)
    h, expected = torch.zeros(B, D, dtype=torch.float64), []
    for t in range(T):
        r = torch.sigmoid(x[:, t] @ W_r.t() + b_ir + h @ U_r.t() + b_hr)
        z = torch.sigmoid(x[:, t] @ W_z.t() + b_iz + h @ U_z.t() + b_hz)
        n = torch.tanh(x[:, t] @ W_n.t() + b_in + r * (h @ U_n.t() + b_hn))
        h = (1 - z) * n + z * h
        expected.append(h)
    expected = torch.stack(expected, 1)
    torch.testing.assert_close(m(x)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x), expected, **TOL)


def test_gmu_with_group_norm_is_sambays_normalised_gate():
    """SambaY GMU with a normalised gate (Ren et al. 2025, eq. 4; microsoft/ArchScale
    lit_gpt/gated_memory_unit.py, RMSNormGated(d_mem, eps=1e-5, norm_before_gate=False,
    group_size=d_mem // ngroups)): g = m ⊙ SiLU(x W_in); each group of d_mem / ngroups channels divided by
    its RMS (eps 1e-5), then times a per-channel weight (d_mem of them); y = g W_out."""
    m = make_mixer("gmu", norm_groups=3)  # memory_dim 12: groups of 4
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1:
                p.normal_(1, 0.3)
    x = torch.randn(2, 5, D, dtype=torch.float64)
    mem = torch.randn(2, 5, 12, dtype=torch.float64)
    g = mem * swish(x @ m.in_proj.weight.t())
    groups = g.view(2, 5, 3, 4)
    normed = (groups / torch.sqrt(groups.pow(2).mean(-1, keepdim=True) + 1e-5)).flatten(-2)
    assert m.norm.weight.shape == (12,), "one weight per memory channel"
    expected = (normed * m.norm.weight) @ m.out_proj.weight.t()
    torch.testing.assert_close(m(x, memory=mem)[0], expected, **TOL)
    torch.testing.assert_close(stepped(m, x[:, :1], memory=mem[:, 0]), expected[:, :1], **TOL)


def test_baseconv_implicit_long_filter_is_zoologys():
    """Zoology's ImplicitLongConvolution: an MLP 3 -> 16 ReLU -> d of fixed positional features gives
    the filter, and the convolution adds its input back (h * u + u) before the projection gates it."""
    m = make_mixer("baseconv", kernel_size=-1, l_max=12, implicit_long_conv=True)
    mlp = m.implicit_filter.mlp
    assert [type(layer) for layer in mlp] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert (mlp[0].in_features, mlp[0].out_features, mlp[2].out_features) == (3, 16, D)
    z = m.implicit_filter.features
    assert z.shape == (12, 3) and z[0, 0] == 0 and z[-1, 0] == 1
    h = m.implicit_filter()  # (D, l_max), h[:, s] multiplies x_{t-s}
    assert h.shape == (D, 12)
    x = torch.randn(2, 12, D, dtype=torch.float64)
    conv = torch.stack([sum(h[:, s] * x[:, t - s] for s in range(t + 1)) for t in range(12)], 1) + x
    torch.testing.assert_close(m(x)[0], m.projection(x) * conv + x)
    state, steps = None, []
    for t in range(12):
        y_t, state = m.step(x[:, t], state)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), m(x)[0])
    with pytest.raises(ValueError, match="implicit_long_conv=True needs kernel_size=-1"):
        make_mixer("baseconv", implicit_long_conv=True)


def test_identity_channel_mixer_adds_the_normed_input_as_zoologys_state_mixer():
    from recurlab.models import make_block

    block = make_block("baseconv", D, "identity", norm="layernorm").double()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    h = x + block.mixer(block.mixer_norm(x))[0]
    torch.testing.assert_close(block(x)[0], h + block.channel_norm(h))
    assert not list(block.channel_mixer.parameters())
