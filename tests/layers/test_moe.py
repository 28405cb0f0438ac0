import pytest
import torch
import torch.nn.functional as F

from recurlab import layers
from recurlab.layers.moe import MixtureOfExperts, load_balancing_loss, top_k_routing


def dense_moe(moe: MixtureOfExperts, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Every expert on every token, mixed by the top-k gates scattered into a dense (N, E) matrix."""
    flat = x.reshape(-1, moe.d_model)
    probs = torch.softmax(logits.reshape(-1, moe.n_experts), -1)
    top_p, top_i = probs.topk(moe.top_k, -1)
    dense_gates = torch.zeros_like(probs).scatter(1, top_i, top_p / top_p.sum(-1, keepdim=True))
    all_out = torch.stack([e(flat) for e in moe.experts], 1)  # (N, E, d)
    return (dense_gates.unsqueeze(-1) * all_out).sum(1).reshape(x.shape)


@pytest.mark.parametrize("expert,top_k", [("swiglu", 2), ("mlp", 1), ("swiglu", 3)])
def test_sparse_dispatch_equals_dense_reference_in_value_and_gradient(expert, top_k):
    moe = layers.build("moe", 6, n_experts=5, top_k=top_k, hidden_size=8, expert=expert).double()
    x = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)
    y = moe(x)
    ref = dense_moe(moe, x, moe.router(x))
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    grads = torch.autograd.grad((y * g).sum(), [x, *moe.parameters()])
    grads_ref = torch.autograd.grad((ref * g).sum(), [x, *moe.parameters()], allow_unused=True)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b if b is not None else torch.zeros_like(a), rtol=1e-10, atol=1e-12)


def test_compute_scales_with_k_not_with_the_number_of_experts():
    moe = MixtureOfExperts(8, n_experts=6, top_k=2, hidden_size=4)
    rows = []
    for e in moe.experts:
        e.register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape[0]))
    x = torch.randn(2, 5, 8)
    moe(x)
    assert sum(rows) == 10 * 2  # N tokens x k slots expert evaluations, not N x E
    assert len(rows) <= 6


def test_external_router_logits_pick_the_experts():
    moe = MixtureOfExperts(4, n_experts=3, top_k=1, router=False).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    logits = torch.tensor([[0.0, 9.0, 0.0], [0.0, 0.0, 9.0]], dtype=torch.float64)
    y = moe(x, router_logits=logits)
    torch.testing.assert_close(y[0], moe.experts[1](x[:1])[0])  # top-1 gate renormalises to exactly 1
    torch.testing.assert_close(y[1], moe.experts[2](x[1:])[0])
    with pytest.raises(ValueError, match="built with router=False: pass router_logits"):
        moe(x)
    with pytest.raises(ValueError, match=r"router_logits must have shape \(2, 3\)"):
        moe(x, router_logits=torch.zeros(2, 4, dtype=torch.float64))


def test_balancing_loss_is_one_when_uniform_and_e_when_collapsed():
    E, N = 4, 8
    uniform = torch.full((N, E), 1 / E)
    spread = torch.arange(N).remainder(E).unsqueeze(1)  # every expert gets N/E tokens
    assert load_balancing_loss(uniform, spread, E).item() == pytest.approx(1.0)
    collapsed = F.one_hot(torch.zeros(N, dtype=torch.int64), E).float()
    assert load_balancing_loss(collapsed, torch.zeros(N, 1, dtype=torch.int64), E).item() == pytest.approx(E)
    # the gradient reaches the router through the mean probabilities
    logits = torch.randn(N, E, requires_grad=True)
    _, chosen, probs = top_k_routing(logits, 2)
    load_balancing_loss(probs, chosen, E).backward()
    assert logits.grad.abs().sum() > 0


def test_aux_loss_is_set_by_forward_and_matches_the_formula():
    moe = MixtureOfExperts(6, n_experts=4, top_k=2)
    x = torch.randn(2, 9, 6)
    moe(x)
    probs = torch.softmax(moe.router(x.reshape(-1, 6)), -1)
    chosen = probs.topk(2, -1).indices
    f = F.one_hot(chosen, 4).float().sum((0, 1)) / chosen.numel()
    torch.testing.assert_close(moe.aux_loss, 4 * (f * probs.mean(0)).sum())


def test_shapes_and_bad_arguments():
    moe = layers.build("moe", 12, n_experts=4)
    assert moe(torch.randn(2, 3, 12)).shape == (2, 3, 12) and moe(torch.randn(2, 12)).shape == (2, 12)
    with pytest.raises(ValueError, match="x must have last dimension d_model=12"):
        moe(torch.randn(2, 3, 11))
    with pytest.raises(ValueError, match=r"top_k must be an int in \[1, n_experts=4\]"):
        layers.build("moe", 12, n_experts=4, top_k=5)
    with pytest.raises(ValueError, match="expert must be one of swiglu, mlp"):
        layers.build("moe", 12, expert="relu")
    assert layers.info("moe").kind == "channel"
