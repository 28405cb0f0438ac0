import pytest
import torch

from recurlab.layers.moe import load_balancing_loss, top_k_routing
from recurlab.models import BlockStates, CausalLM, make_block
from recurlab.recursion.rmoe import LayerwiseRecurrentRouter, PlainRouter, RMoEStack
from recurlab.tasks import IGNORE, SequenceTask
from recurlab.train import TrainConfig, Trainer, evaluate
from tests.recursion.common import config


def tiny_stack(d_model=16, n_layers=3, mixer="attention", n_experts=4, top_k=2, expert_hidden=8, router_dim=8,
               **kw) -> RMoEStack:
    """RMoEStack on n_layers blocks whose channel mixer is a router-less MoE."""
    moe = {"n_experts": n_experts, "top_k": top_k, "hidden_size": expert_hidden, "router": False}
    blocks = [make_block(mixer, d_model, "moe", None, moe) for _ in range(n_layers)]
    return RMoEStack(blocks, router_dim=router_dim, **kw)


def tiny_lm(vocab=11, d_model=16, n_layers=3, mixer="attention", expert_hidden=8, router="recurrent") -> CausalLM:
    """The same as a CausalLM built from a ModelConfig (depth "rmoe")."""
    moe = {"n_experts": 4, "top_k": 2, "hidden_size": expert_hidden}
    return CausalLM(config("rmoe", {"router": router, "router_dim": 8}, vocab_size=vocab, d_model=d_model,
                           n_layers=n_layers, mixer=mixer, mixer_kwargs={}, channel_mixer="moe", channel_kwargs=moe))


def test_router_equations():
    router = LayerwiseRecurrentRouter(6, n_layers=3, n_experts=4, router_dim=5).double()
    h = torch.randn(2, 3, 6, dtype=torch.float64)
    r = None
    for layer in range(3):
        logits, r_new = router(h, layer, r)
        x_in = h @ router.w1[layer].weight.t()
        r_ref = router.gru(x_in.reshape(-1, 5), None if r is None else r.reshape(-1, 5)).reshape(2, 3, 5)
        torch.testing.assert_close(r_new, r_ref)
        torch.testing.assert_close(logits, r_new @ router.w2[layer].weight.t())
        r = r_new
    assert sum(isinstance(m, torch.nn.GRUCell) for m in router.modules()) == 1  # one cell shared by all layers
    with pytest.raises(ValueError, match=r"layer must be an int in \[0, n_layers=3\)"):
        router(h, 3)
    with pytest.raises(ValueError, match=r"r_prev must have shape \(2, 3, 5\)"):
        router(h, 1, torch.zeros(2, 5, dtype=torch.float64))


def run_router(router, hs):
    r, out = None, []
    for layer, h in enumerate(hs):
        logits, r = router(h, layer, r)
        out.append(logits)
    return out


def test_recurrent_router_carries_layer_0_to_layer_2_and_the_plain_one_does_not():
    torch.manual_seed(1)
    recurrent = LayerwiseRecurrentRouter(6, n_layers=3, n_experts=4, router_dim=5).double()
    plain = PlainRouter(6, n_layers=3, n_experts=4).double()
    with torch.no_grad():
        recurrent.w1[2].weight.zero_()  # layer 2 sees nothing of its own input: only r_1 can inform it
    hs = [torch.randn(4, 6, dtype=torch.float64) for _ in range(3)]
    changed = [hs[0] + torch.randn_like(hs[0]), hs[1], hs[2]]  # only layer 0's routing input differs
    a, b = run_router(recurrent, hs), run_router(recurrent, changed)
    assert (a[2] - b[2]).abs().min() > 1e-6  # every token's layer-2 logits moved
    a, b = run_router(plain, hs), run_router(plain, changed)
    torch.testing.assert_close(a[2], b[2], rtol=0, atol=0)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)


def test_router_state_stays_within_a_token():
    """The recurrence runs over depth, not time: token t's routing ignores every other token's."""
    router = LayerwiseRecurrentRouter(6, n_layers=2, n_experts=4, router_dim=5).double()
    hs = [torch.randn(1, 5, 6, dtype=torch.float64) for _ in range(2)]
    changed = [h.clone() for h in hs]
    changed[0][:, 0] += 1.0
    a, b = run_router(router, hs), run_router(router, changed)
    torch.testing.assert_close(a[1][:, 1:], b[1][:, 1:], rtol=0, atol=0)


@pytest.mark.parametrize("router", ["recurrent", "plain"])
def test_stack_equations_and_aux_loss(router):
    stack = tiny_stack(router=router, aux_coef=0.5).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    y, state = stack(x)
    # the same computation written out: pre-norm mixer, pre-norm MoE routed by the carried router state
    h_x, r, balance = x, None, []
    for l in range(3):
        block = stack.blocks[l]
        h_x = h_x + block.mixer(block.mixer_norm(h_x))[0]
        h = block.channel_norm(h_x)
        logits, r = stack.router(h, l, r)
        torch.testing.assert_close(stack.router_logits[l], logits)
        gates, chosen, probs = top_k_routing(logits.reshape(-1, 4), 2)
        balance.append(load_balancing_loss(probs, chosen, 4))
        h_x = h_x + block.channel_mixer(h, router_logits=logits)
    torch.testing.assert_close(y, h_x)
    torch.testing.assert_close(stack.aux_loss, 0.5 * sum(balance))
    assert isinstance(state, BlockStates) and len(state.blocks) == 3


@pytest.mark.parametrize("mixer", ["attention", "gla"])
@pytest.mark.parametrize("router", ["recurrent", "plain"])
def test_step_equals_forward(mixer, router):
    model = tiny_lm(mixer=mixer, router=router).double()
    ids = torch.randint(0, 11, (2, 7))
    logits, _ = model(ids)
    forward_logits = model.depth.router_logits
    state, steps = None, []
    for t in range(7):
        out, state = model.step(ids[:, t], state)
        steps.append(out)
        for l in range(3):  # the same experts are chosen token by token
            torch.testing.assert_close(model.depth.router_logits[l], forward_logits[l][:, t])
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-9, atol=1e-9)
    # chunked: the first 4 tokens, then the rest with the carried state
    first, state = model(ids[:, :4])
    rest, _ = model(ids[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, rest], 1), logits, rtol=1e-9, atol=1e-9)


def test_gradients_reach_every_router_parameter_and_the_aux_loss_counts():
    model = tiny_lm()
    ids = torch.randint(0, 11, (2, 6))
    logits, _ = model(ids)
    (logits.square().mean() + model.aux_loss).backward()
    router = model.depth.router
    for name, p in router.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_arguments():
    with pytest.raises(ValueError, match="router must be one of recurrent, plain"):
        tiny_stack(router="gru")
    with pytest.raises(ValueError, match="aux_coef must be a number >= 0"):
        tiny_stack(aux_coef=-1)
    with pytest.raises(ValueError, match=r"top_k must be an int in \[1, n_experts=4\]"):
        tiny_stack(top_k=5)
    stack = tiny_stack()
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_model=16\)"):
        stack(torch.randn(2, 16))
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, d_model=16\)"):
        stack.step(torch.randn(2, 3, 16))
    with pytest.raises(ValueError, match="state must be a BlockStates"):
        stack(torch.randn(1, 2, 16), state=[None])
    with pytest.raises(ValueError, match="RMoEStack state must hold 3 block states, got 1"):
        stack(torch.randn(1, 2, 16), state=BlockStates(stack.init_state(1).blocks[:1]))
    with pytest.raises(ValueError, match="router=False"):  # an MoE with its own router
        RMoEStack([make_block("attention", 16, "moe", None, {"n_experts": 4})])
    with pytest.raises(ValueError, match="router=False"):
        RMoEStack([make_block("attention", 16)])
    with pytest.raises(ValueError, match="same number of experts"):
        RMoEStack([make_block("attention", 16, "moe", None, {"n_experts": n, "router": False}) for n in (4, 8)])
    with pytest.raises(ValueError, match="blocks must be a non-empty list"):
        RMoEStack([])
    with pytest.raises(ValueError, match="channel_mixer='moe'"):
        CausalLM(config("rmoe"))


def previous_token_task(n: int, seq_len: int, vocab: int, seed: int) -> SequenceTask:
    """Predict the token one position back: needs the token mixer, not just the MoE."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, vocab, (n, seq_len), generator=g)
    labels = torch.full_like(inputs, IGNORE)
    labels[:, 1:] = inputs[:, :-1]
    return SequenceTask(inputs, labels, vocab)


@pytest.mark.parametrize("router", ["recurrent", "plain"])
def test_tiny_model_learns(router):
    torch.manual_seed(0)
    model = tiny_lm(vocab=8, d_model=32, n_layers=2, router=router, expert_hidden=32)
    train, test = previous_token_task(512, 8, 8, 0), previous_token_task(128, 8, 8, 1)
    before = evaluate(model, test)["accuracy"]
    train_config = TrainConfig(steps=120, batch_size=32, lr=1e-2, warmup_steps=10, eval_every=1000, progress=False,
                               precision="fp32")
    Trainer(model, train, None, train_config).fit()
    after = evaluate(model, test)["accuracy"]
    assert before < 0.3 and after > 0.9, (before, after)
