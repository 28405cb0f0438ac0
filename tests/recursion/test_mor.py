import math

import pytest
import torch
from torch import nn

from recurlab import ops
from recurlab.layers.attention import Attention
from recurlab.layers.rotary import rotary
from recurlab.models import CausalLM, make_block
from recurlab.recursion.mor import MixtureOfRecursions, MoRState
from recurlab.recursion.mor_cache import RecursionKVCache
from recurlab.state import tensor_leaves
from recurlab.tasks import IGNORE, SequenceTask
from recurlab.train import TrainConfig, Trainer, evaluate
from tests.conftest import assert_rel_close
from tests.recursion.common import config

D = 16
MIXER_KW = {"attention": {"n_heads": 2, "n_kv_heads": 1}, "gla": {"n_heads": 2}}
CASES = [("attention", False), ("attention", True), ("gla", False)]  # (shared mixer, kv_sharing)


def build(mixer="attention", router="expert", kv_sharing=False, shared=2, n_recursions=3, unique=1,
          router_std=1.0, **kw) -> MixtureOfRecursions:
    """A float64 MoR whose routers are initialised wide, so that routing decisions differ across tokens."""
    blocks = lambda n: [make_block(mixer, D, mixer_kwargs=MIXER_KW[mixer]) for _ in range(n)]  # noqa: E731
    model = MixtureOfRecursions(blocks(shared), n_recursions, router, first=blocks(unique), last=blocks(unique),
                                kv_sharing=kv_sharing, **kw).double()
    for r in model.routers:
        nn.init.normal_(r.weight, std=router_std)
    return model


def steps(model, x, state=None):
    ys = []
    for t in range(x.shape[1]):
        y_t, state = model.step(x[:, t], state)
        ys.append(y_t)
    return torch.stack(ys, 1), state


# -------------------------------------------------------------------- an independent reference (batch 1)


def reference_block(block, u, positions, shared_kv=None):
    """A shared block on the active tokens u (1, n, d) at their original positions, written directly."""
    mixer = block.mixer
    if not isinstance(mixer, Attention):  # recurrent mixer: the plain Block over the subsequence
        return block(u)[0], None
    n, H, Hkv, Dh = u.shape[1], mixer.n_heads, mixer.n_kv_heads, mixer.head_dim
    z = block.mixer_norm(u)
    q = rotary(mixer.q_proj(z).view(1, n, H, Dh), positions, mixer.rope_base)
    k = rotary(mixer.k_proj(z).view(1, n, Hkv, Dh), positions, mixer.rope_base)
    v = mixer.v_proj(z).view(1, n, Hkv, Dh)
    if shared_kv is None:
        o, _ = ops.attention(q, k, v, backend="reference")  # causal over the subsequence
    else:  # the first recursion's keys of every token up to the query's position
        k_all, v_all = (t.repeat_interleave(H // Hkv, 2) for t in shared_kv)
        scores = torch.einsum("bthd,bshd->bhts", q, k_all) * Dh**-0.5
        allowed = torch.arange(k_all.shape[1]).view(1, -1) <= positions.view(-1, 1)
        o = torch.einsum("bhts,bshd->bthd", scores.masked_fill(~allowed, -math.inf).softmax(-1), v_all)
    x = u + mixer.o_proj(o.reshape(1, n, H * Dh))
    return x + block.channel_mixer(block.channel_norm(x)), (k, v)


def reference(model, x):
    """MoR in eval mode on one sequence x (1, T, d): routing by threshold, recursion r on its active tokens."""
    h = x
    for block in model.first:
        h = block(h)[0]
    T, N = h.shape[1], model.n_recursions
    if model.router_kind == "token":
        probs = model.alpha * torch.softmax(model.routers[0](h / model.router_temperature)[0], -1)
        w, depth = probs.max(-1)
        active = torch.stack([depth >= r for r in range(N)], -1)
    h0, out, masks, first_kv = h, h.clone(), [], [None] * len(model.shared)
    candidates = torch.ones(T, dtype=torch.bool)
    for r in range(N):
        if model.router_kind == "expert":
            logit = model.routers[r](h / model.router_temperature)[0, :, 0]
            keep = torch.ones_like(candidates) if model.capacities[r] >= 1 else torch.sigmoid(logit) >= 0.5
            selected = candidates & keep
        else:
            selected = active[:, r]
        idx = selected.nonzero()[:, 0]
        u = h[:, idx]
        for k, block in enumerate(model.shared):
            u, kv = reference_block(block, u, idx, first_kv[k] if (model.kv_sharing and r > 0) else None)
            first_kv[k] = kv if r == 0 else first_kv[k]
        h = h.clone()
        if model.router_kind == "expert":
            h[0, idx] = h[0, idx] + model.alpha * torch.sigmoid(logit[idx]).unsqueeze(-1) * u[0]
        else:
            h[0, idx] = u[0]
            done = idx[depth[idx] == r]
            out[0, done] = h0[0, done] + w[done].unsqueeze(-1) * h[0, done]
        candidates = selected
        masks.append(selected)
    y = h if model.router_kind == "expert" else out
    for block in model.last:
        y = block(y)[0]
    return y, torch.stack(masks, -1)


@pytest.mark.parametrize("router", ["expert", "token"])
@pytest.mark.parametrize("mixer,kv_sharing", CASES)
def test_eval_forward_equals_the_reference_row_by_row(mixer, kv_sharing, router):
    model = build(mixer, router, kv_sharing).eval()
    x = torch.randn(3, 10, D, dtype=torch.float64)
    y, _ = model(x)
    depths = model.last_active.sum(-1)
    assert depths.min() < model.n_recursions and depths.max() > 1, "routing should differ across tokens here"
    for b in range(3):
        y_ref, active_ref = reference(model, x[b : b + 1])
        assert torch.equal(model.last_active[b], active_ref)
        assert_rel_close(y[b : b + 1], y_ref, 1e-12, f"row {b}")


@pytest.mark.parametrize("router", ["expert", "token"])
@pytest.mark.parametrize("mixer,kv_sharing", CASES)
def test_forward_equals_steps_and_chunks(mixer, kv_sharing, router):
    model = build(mixer, router, kv_sharing).eval()
    x = torch.randn(2, 9, D, dtype=torch.float64)
    y, _ = model(x)
    active = model.last_active
    assert 1 < model.last_active.sum(-1).float().mean() < model.n_recursions

    y_steps, _ = steps(model, x)
    assert_rel_close(y_steps, y, 1e-12, "token by token")
    y_prefix, state = model(x[:, :4])
    y_rest, _ = steps(model, x[:, 4:], state)
    assert_rel_close(torch.cat([y_prefix, y_rest], 1), y, 1e-12, "prefix forward, then steps")
    y_a, state = model(x[:, :5])
    y_b, _ = model(x[:, 5:], state)
    assert_rel_close(torch.cat([y_a, y_b], 1), y, 1e-12, "two chunks")
    assert torch.equal(model.last_active, active[:, 5:])


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_token_choice_is_causal_in_training_mode_too(mixer):
    model = build(mixer, "token").train()
    x = torch.randn(2, 7, D, dtype=torch.float64)
    y, _ = model(x)
    assert_rel_close(steps(model, x)[0], y, 1e-12, "training-mode token choice, token by token")


def test_training_routes_exactly_the_capacity_in_nested_sets():
    model = build("attention", "expert").train()
    x = torch.randn(4, 9, D, dtype=torch.float64)
    model(x)
    active = model.last_active  # (B, T, N_r)
    assert active.sum(1).tolist() == [[9, 6, 3]] * 4  # k_r = cap_r * L with cap_r = (3 - r) / 3
    assert (active[..., 1:] <= active[..., :-1]).all()  # only tokens kept at r - 1 are candidates at r
    assert model.mean_recursions == pytest.approx(2.0)
    assert model.applications_per_token() == pytest.approx(1 + 2 * 2.0 + 1)

    custom = build("gla", "expert", capacities=(1.0, 0.5, 0.25)).train()
    custom(torch.randn(2, 8, D, dtype=torch.float64))
    assert custom.last_active.sum(1).tolist() == [[8, 4, 2]] * 2
    assert (custom.last_active[..., 1:] <= custom.last_active[..., :-1]).all()


def test_top_k_keeps_the_highest_router_scores():
    model = build("gla", "expert", capacities=(0.5,), n_recursions=1).train()
    x = torch.randn(2, 8, D, dtype=torch.float64)
    with torch.no_grad():
        h = model.first[0](x)[0]
        scores = model.routers[0](h).squeeze(-1)
    model(x)
    expected = torch.zeros(2, 8, dtype=torch.bool).scatter(1, scores.topk(4, dim=1).indices, True)
    assert torch.equal(model.last_active[..., 0], expected)


@pytest.mark.parametrize("router", ["expert", "token"])
def test_aux_losses_are_finite_and_train_the_router(router):
    model = build("attention", router).train()
    x = torch.randn(2, 9, D, dtype=torch.float64)
    model(x)
    aux = model.aux_loss
    assert aux is not None and aux.dim() == 0 and torch.isfinite(aux) and aux > 0
    aux.backward()
    for r in model.routers:
        assert r.weight.grad is not None and r.weight.grad.abs().sum() > 0
    model.eval()
    model(x)
    assert model.aux_loss is None
    model.train()
    model.step(x[:, 0])
    assert model.aux_loss is None


def test_aux_loss_terms_follow_the_paper():
    model = build("gla", "token", n_recursions=2, unique=0, z_loss_coef=0.0).train()
    x = torch.randn(2, 6, D, dtype=torch.float64)
    model(x)
    probs = torch.softmax(model.routers[0](x), -1)
    depth = probs.argmax(-1)
    fraction = torch.stack([(depth == i).double().mean() for i in range(2)])
    expected = 0.1 * 2 * (fraction * probs.mean((0, 1))).sum()
    assert model.aux_loss.item() == pytest.approx(expected.item(), rel=1e-12)

    expert = build("gla", "expert", n_recursions=1, unique=0, capacities=(0.5,), z_loss_coef=0.0).train()
    expert(x)
    logits = expert.routers[0](x).squeeze(-1)
    targets = expert.last_active[..., 0].double()
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert expert.aux_loss.item() == pytest.approx(1e-3 * bce.item(), rel=1e-12)


def test_gradients_reach_every_part_in_training():
    model = build("gla", "expert").train()
    x = torch.randn(2, 9, D, dtype=torch.float64, requires_grad=True)
    y, _ = model(x)
    (y.square().sum() + model.aux_loss).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())


def test_inactive_tokens_leave_a_recursions_recurrent_state_unchanged():
    model = build("gla", "expert").eval()
    x = torch.randn(2, 8, D, dtype=torch.float64)
    state, seen_inactive, seen_active = model.init_state(2, dtype=torch.float64), 0, 0
    for t in range(8):
        before = state  # states are values: the step below returns a new one and leaves this one as it is
        kept = [leaf.clone() for leaf in tensor_leaves(before)]
        _, state = model.step(x[:, t], state)
        assert all(torch.equal(a, b) for a, b in zip(tensor_leaves(before), kept))
        active = model.last_active[:, 0]  # (B, N_r)
        for r in range(model.n_recursions):
            for k in range(len(model.shared)):
                old, new = tensor_leaves(before.recursions[r][k]), tensor_leaves(state.recursions[r][k])
                assert old and len(old) == len(new)
                for b in range(2):
                    if active[b, r]:
                        seen_active += 1
                        assert not all(torch.equal(o[b], n[b]) for o, n in zip(old, new))
                    else:
                        seen_inactive += 1
                        assert all(torch.equal(o[b], n[b]) for o, n in zip(old, new))
    assert seen_inactive and seen_active


def test_recursion_caches_hold_only_the_active_tokens_at_their_positions():
    model = build("attention", "expert").eval()
    x = torch.randn(1, 10, D, dtype=torch.float64)
    model(x)
    active = model.last_active[0]  # (T, N_r)
    _, state = steps(model, x)
    for r in range(model.n_recursions):
        for cache in state.recursions[r]:
            assert isinstance(cache, RecursionKVCache) and cache.valid.all()
            assert cache.positions[0].tolist() == active[:, r].nonzero()[:, 0].tolist()
    assert state.offset == 10


@pytest.mark.parametrize("kv_sharing", [False, True])
def test_decoding_without_gradients_grows_the_caches_in_place_and_keeps_old_states(kv_sharing):
    model = build("attention", "expert", kv_sharing).eval()
    x = torch.randn(2, 21, D, dtype=torch.float64)
    with torch.no_grad():
        y, _ = model(x)
        y_prefix, state = model(x[:, :3])
        ys, buffers, kept = [], set(), None
        for t in range(3, 21):  # past the initial capacity of 16 slots
            y_t, state = model.step(x[:, t], state)
            ys.append(y_t)
            buffers.add(id(state.recursions[0][0].buffers))
            if t == 9:
                kept = state
        kept_keys = kept.recursions[0][0].keys.clone()
        # from the state kept after token 9, a second continuation: it must not see the tokens written after it
        y_again, _ = model(x[:, 10:], kept)
    assert_rel_close(torch.cat([y_prefix, torch.stack(ys, 1)], 1), y, 1e-12, "no-grad decoding")
    assert_rel_close(y_again, y[:, 10:], 1e-12, "continuation from a kept state")
    cache = state.recursions[0][0]
    assert cache.length == 21 and cache.buffers.capacity >= 21
    assert len(buffers) <= 2  # appended in place, one regrowth from 16 slots (amortised O(1) per token)
    assert kept.recursions[0][0].length == 10 and torch.equal(kept.recursions[0][0].keys, kept_keys)


def test_kv_sharing_reads_the_first_recursions_cache():
    model = build("attention", "token", kv_sharing=True).eval()
    x = torch.randn(2, 6, D, dtype=torch.float64)
    _, state = model(x)
    assert all(c.length == 6 and c.valid.all() for c in state.recursions[0])
    assert all(c is None for rec in state.recursions[1:] for c in rec)


def test_a_tiny_mor_language_model_learns():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 16, (384, 12), generator=g)
    labels = torch.full_like(inputs, IGNORE)
    labels[:, 1:] = inputs[:, :-1]  # predict the previous token: needs the token mixer
    task = SequenceTask(inputs, labels, 16)
    model = CausalLM(config("mor", {"n_recursions": 2, "router": "expert", "first": 1, "last": 1}, d_model=32,
                            n_layers=3))
    before = evaluate(model, task.subset(slice(0, 128)))
    train_config = TrainConfig(steps=120, batch_size=32, lr=3e-3, warmup_steps=10, eval_every=120, precision="fp32",
                               progress=False)
    Trainer(model, task.subset(slice(128, None)), task.subset(slice(0, 128)), train_config).fit()
    after = evaluate(model, task.subset(slice(0, 128)))
    assert after["loss"] < 0.3 * before["loss"] and after["accuracy"] > 0.9, (before, after)


def test_from_config_splits_the_blocks_into_first_shared_and_last():
    model = CausalLM(config("mor", {"n_recursions": 3, "first": 1, "last": 2, "kv_sharing": True, "router": "token"},
                            n_layers=5))
    depth = model.depth
    assert isinstance(depth, MixtureOfRecursions)
    assert (len(depth.first), len(depth.shared), len(depth.last)) == (1, 2, 2)
    assert depth.router_kind == "token" and depth.kv_sharing and depth.n_recursions == 3
    state = model.init_state(3)
    assert isinstance(state, MoRState) and state.offset == 0 and len(state.recursions) == 3
    assert all(isinstance(c, RecursionKVCache) for c in state.recursions[0])
    assert all(c is None for rec in state.recursions[1:] for c in rec)
    with pytest.raises(ValueError, match="leave none"):
        CausalLM(config("mor", {"n_recursions": 2, "first": 1, "last": 1}, n_layers=2))
    with pytest.raises(ValueError, match="n_recursions"):
        config("mor", {"first": 1}, n_layers=3)


def test_bad_arguments_raise_value_errors():
    def blocks(mixer="attention", n=1):
        return [make_block(mixer, D, mixer_kwargs=MIXER_KW[mixer]) for _ in range(n)]

    with pytest.raises(ValueError, match="shared"):
        MixtureOfRecursions([], 2)
    with pytest.raises(ValueError, match="shared"):
        MixtureOfRecursions([nn.Linear(D, D)], 2)
    with pytest.raises(ValueError, match="n_recursions"):
        MixtureOfRecursions(blocks(), 0)
    with pytest.raises(ValueError, match="router"):
        MixtureOfRecursions(blocks(), 2, router="random")
    with pytest.raises(ValueError, match="capacities"):
        MixtureOfRecursions(blocks(), 2, capacities=(1.0,))
    with pytest.raises(ValueError, match="capacities"):
        MixtureOfRecursions(blocks(), 2, capacities=(0.5, 1.0))
    with pytest.raises(ValueError, match="capacities"):
        MixtureOfRecursions(blocks(), 2, capacities=(1.0, 0.0))
    with pytest.raises(ValueError, match="capacities"):
        MixtureOfRecursions(blocks(), 2, router="token", capacities=(1.0, 0.5))
    with pytest.raises(ValueError, match="kv_sharing"):
        MixtureOfRecursions(blocks("gla"), 2, kv_sharing=True)
    with pytest.raises(ValueError, match="capacities\\[0\\]"):
        MixtureOfRecursions(blocks(), 2, kv_sharing=True, capacities=(0.5, 0.5))
    with pytest.raises(ValueError, match="last\\[0\\] has d_model"):
        MixtureOfRecursions(blocks(), 2, last=[make_block("gla", 2 * D)])
    with pytest.raises(ValueError, match="'liger' in its shared blocks .*holds a KVCache, which has one length"):
        MixtureOfRecursions([make_block("liger", D)], 2)
    with pytest.raises(ValueError, match="'sliced_attention' in its shared blocks .*holds a KVCache"):
        MixtureOfRecursions([make_block("sliced_attention", D, mixer_kwargs={"n_heads": 2, "group_size": 4})], 2)
    for name, value in (("alpha", 0.0), ("router_temperature", -1.0), ("bce_coef", -1.0), ("threshold", 1.0)):
        with pytest.raises(ValueError, match=name):
            MixtureOfRecursions(blocks(), 2, **{name: value})
    model = MixtureOfRecursions(blocks(), 2)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(2, 5, D + 1))
    with pytest.raises(ValueError, match="x_t"):
        model.step(torch.randn(2, 1, D))
    with pytest.raises(ValueError, match="state must be a MoRState"):
        model(torch.randn(2, 5, D), state=[None, None])
    with pytest.raises(ValueError, match="state does not fit"):
        model(torch.randn(2, 5, D), state=MoRState((), ((None,),), (), 0))
    with pytest.raises(ValueError, match="after a forward"):
        model.applications_per_token()
