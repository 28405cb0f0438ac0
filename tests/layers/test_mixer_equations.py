"""Each mixer computes its paper's equations: checked against direct, naive implementations."""

import math

import pytest
import torch
import torch.nn.functional as F

from recurlab import layers
from recurlab.layers.liger import LigerAttention
from recurlab.layers.rwkv import lif_step
from recurlab.models import CausalLM, ModelConfig
from tests.layers.common import D, make_mixer


def test_mingru_is_the_papers_recurrence():
    m = make_mixer("mingru")
    x = torch.randn(2, 9, D, dtype=torch.float64)
    k, cand = m.to_gate_and_candidate(x).chunk(2, -1)
    z = torch.sigmoid(k)
    h, expected = torch.zeros(2, D, dtype=torch.float64), []
    for t in range(9):
        h = (1 - z[:, t]) * h + z[:, t] * cand[:, t]
        expected.append(h)
    torch.testing.assert_close(m(x)[0], torch.stack(expected, 1))


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
    torch.testing.assert_close(m(x)[0], torch.stack(expected, 1))


def test_mingru_expand_adds_an_output_projection():
    m = layers.build("mingru", 8, expand=2)
    assert m.hidden_size == 16 and m.out.weight.shape == (8, 16)
    assert m(torch.randn(1, 4, 8))[1].h.shape == (1, 16)


def test_rwkv_wkv_matches_the_formula_and_survives_large_keys():
    m = make_mixer("rwkv")
    x = torch.randn(2, 11, D, dtype=torch.float64)
    x_prev = torch.cat([torch.zeros(2, 1, D, dtype=torch.float64), x[:, :-1]], 1)
    k, v, r = m._mix(x, x_prev)
    w, u = torch.exp(m.time_decay), m.time_first
    wkv = torch.zeros_like(k)
    for t in range(11):
        num = sum(torch.exp(-(t - 1 - i) * w + k[:, i]) * v[:, i] for i in range(t)) + torch.exp(u + k[:, t]) * v[:, t]
        den = sum(torch.exp(-(t - 1 - i) * w + k[:, i]) for i in range(t)) + torch.exp(u + k[:, t])
        wkv[:, t] = num / den
    torch.testing.assert_close(m(x)[0], m.output(torch.sigmoid(r) * wkv))
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
    torch.testing.assert_close(m(x, memory=mem)[0], m.out_proj(F.silu(m.in_proj(x)) * mem))
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
    torch.testing.assert_close(m(x)[0], expected)


def test_baseconv_is_projection_times_convolution_plus_input():
    m = make_mixer("baseconv")
    x = torch.randn(2, 8, D, dtype=torch.float64)
    padded = torch.cat([torch.zeros(2, 2, D, dtype=torch.float64), x], 1)
    conv = torch.stack([(padded[:, t : t + 3] * m.filter.t()).sum(1) for t in range(8)], 1) + m.filter_bias
    torch.testing.assert_close(m(x)[0], m.projection(x) * conv + x)
    long = make_mixer("baseconv", kernel_size=-1, l_max=32)
    assert long.filter.shape == (D, 32) and long(x)[1].inputs.shape == (2, 31, D)


def test_hyena_filter_is_windowed_and_as_long_as_l_max():
    m = make_mixer("hyena")
    h = m.long_filter()
    assert h.shape == (D, 40)
    # the exponential window shrinks every channel's envelope along the lags
    window = torch.exp(-m.long_filter.t * m.long_filter.deltas.abs())
    assert (window[-1] < window[0]).all() and window[-1].max() < 0.05


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


@pytest.mark.parametrize("name,act", [("swiglu", F.silu), ("geglu", F.gelu), ("glu", torch.sigmoid)])
def test_glu_family(name, act):
    m = layers.build(name, 12).double()
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    gate, value = m.gate_and_value(x).chunk(2, -1)
    torch.testing.assert_close(m(x), m.down(act(gate) * value))
    assert m.down.in_features == 32  # 8/3 * 12


def test_mlp_and_cglu():
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    mlp = layers.build("mlp", 12).double()
    torch.testing.assert_close(mlp(x), mlp.down(F.gelu(mlp.up(x))))
    cglu = layers.build("cglu", 12).double()
    x1 = cglu.up(x)
    h = cglu.down(x1 * torch.sigmoid(cglu.slope * x1))
    g = torch.sigmoid(cglu.gate(x))
    torch.testing.assert_close(cglu(x), g * h + (1 - g) * x)
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
