"""Relaxed (layer-wise LoRA on a looped stack): equals Recursive at init, step = forward, conversion from a
trained Stack (full rank is exact), confidence-based early exit, learning, bad arguments."""

import copy

import pytest
import torch

from recurlab.recursion import DepthLM, Stack, make_block
from recurlab.recursion.recursive import Recursive
from recurlab.recursion.relaxed import LoopLoRALinear, Relaxed, early_exit_forward, early_exit_step
from tests.conftest import assert_rel_close
from tests.recursion.test_recursive import D, check_step_equals_forward, make_blocks, train_lag_copy


def randomise_lora(model: Relaxed, std=0.2):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_b" in name:
                p.normal_(0, std)


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_equals_recursive_at_init_and_stores_shared_weights_once(mixer):
    blocks = make_blocks(mixer, 2)
    recursive = Recursive(copy.deepcopy(blocks), 3)
    relaxed = Relaxed(blocks, 3, rank=2)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    assert_rel_close(relaxed(x)[0], recursive(x)[0], 1e-13, "B = 0 at init")
    lora = [m for m in relaxed.modules() if isinstance(m, LoopLoRALinear)]
    assert len(lora) == sum(isinstance(m, torch.nn.Linear) for b in recursive.blocks for m in b.modules())
    extra = sum(3 * m.rank * (m.base.in_features + m.base.out_features) for m in lora)
    n_shared = sum(p.numel() for p in recursive.parameters())
    assert sum(p.numel() for p in relaxed.parameters()) == n_shared + extra


def test_lora_linear_adds_the_current_loops_low_rank_delta():
    cursor = type("Cursor", (), {"loop": None})()
    base = torch.nn.Linear(6, 5, bias=True).double()
    lora = LoopLoRALinear(base, n_loops=3, rank=2, cursor=cursor)
    with torch.no_grad():
        lora.lora_b.normal_()
    x = torch.randn(4, 6, dtype=torch.float64)
    assert_rel_close(lora(x), base(x), 1e-15, "no loop: the shared Linear")
    for loop in range(3):
        cursor.loop = loop
        expected = x @ (base.weight + lora.lora_b[loop] @ lora.lora_a[loop]).t() + base.bias
        assert_rel_close(lora(x), expected, 1e-13, f"W' x + B_{loop} A_{loop} x")
    assert LoopLoRALinear(torch.nn.Linear(6, 3), 2, 99, cursor).rank == 3  # capped at min(d_in, d_out)


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_step_equals_forward(mixer):
    kwargs = {"group_sizes": [4, 8], "group_offsets": [0, 2]} if mixer == "attention" else {}
    relaxed = Relaxed(make_blocks(mixer, 2), 2, rank=3, loop_scales=True, loop_norms=True, **kwargs).eval()
    randomise_lora(relaxed)
    with torch.no_grad():
        relaxed.loop_norms[0][1][0].weight.uniform_(0.5, 1.5)
    check_step_equals_forward(relaxed, torch.randn(2, 9, D, dtype=torch.float64))


def stack_of(mixer, n, channel_mixer="swiglu"):
    torch.manual_seed(1)
    blocks = [make_block(mixer, D, channel_mixer, mixer_kwargs={"n_heads": 2}).double() for _ in range(n)]
    with torch.no_grad():  # a "trained" stack: distinct weights and norm gains per layer
        for name, p in Stack(blocks).named_parameters():
            p.normal_(0, 0.25) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    return Stack(blocks)


@pytest.mark.parametrize("scheme", ["stepwise", "average", "lower"])
@pytest.mark.parametrize("channel_mixer", ["swiglu", "mlp"])
def test_full_rank_conversion_rebuilds_the_stack_exactly(scheme, channel_mixer):
    stack = stack_of("attention", 6, channel_mixer)
    x = torch.randn(2, 7, D, dtype=torch.float64)
    y_stack, _ = stack(x)
    relaxed = Relaxed.from_stack(stack, n_loops=3, rank=10_000, scheme=scheme, loop_norms=True)
    assert relaxed.n_unique == 2 and relaxed.n_applications == 6
    assert_rel_close(relaxed(x)[0], y_stack, 1e-10, f"full-rank {scheme}")
    low = Relaxed.from_stack(stack, n_loops=3, rank=2, scheme=scheme, loop_norms=True)
    assert (low(x)[0] - y_stack).abs().max() > 1e-3  # a low rank does not recover it
    check_step_equals_forward(relaxed.eval(), x)


def test_schemes_pick_the_papers_layers():
    stack = stack_of("attention", 6)
    weight = lambda block: block.mixer.q_proj.weight if isinstance(block.mixer.q_proj, torch.nn.Linear) \
        else block.mixer.q_proj.base.weight  # noqa: E731
    originals = [weight(b) for b in stack.blocks]
    # stepwise: round(linspace(0, 5, 3)) = [0, 2, 5] (Python rounds 2.5 to 2, like the authors' code)
    stepwise = Relaxed.from_stack(stack, 2, rank=1, scheme="stepwise", svd_init=False)
    for i, src in enumerate([0, 2, 5]):
        torch.testing.assert_close(weight(stepwise.blocks[i]), originals[src])
    lower = Relaxed.from_stack(stack, 2, rank=1, scheme="lower", svd_init=False)
    for i in range(3):
        torch.testing.assert_close(weight(lower.blocks[i]), originals[i])
    average = Relaxed.from_stack(stack, 2, rank=1, scheme="average", svd_init=False)
    for i in range(3):  # block i stands for layers i and i + 3
        torch.testing.assert_close(weight(average.blocks[i]), (originals[i] + originals[i + 3]) / 2)
        torch.testing.assert_close(average.blocks[i].mixer_norm.weight,
                                   (stack.blocks[i].mixer_norm.weight + stack.blocks[i + 3].mixer_norm.weight) / 2)
    for m in average.modules():  # svd_init=False: B = 0, strict tying at the start
        if isinstance(m, LoopLoRALinear):
            assert m.lora_b.abs().max() == 0


def test_svd_lora_error_falls_with_rank_and_gla_converts():
    stack = stack_of("attention", 4)
    errors = []
    for rank in (1, 4, 16):
        relaxed = Relaxed.from_stack(stack, 2, rank=rank, scheme="average")
        lora = relaxed.lora_modules(0)["mixer.q_proj"]
        rebuilt = lora.base.weight + lora.lora_b[1] @ lora.lora_a[1]
        errors.append((rebuilt - stack.blocks[2].mixer.q_proj.weight).norm().item())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-10, errors
    gla = Relaxed.from_stack(stack_of("gla", 4), 2, rank=2, scheme="stepwise")
    check_step_equals_forward(gla.eval(), torch.randn(2, 6, D, dtype=torch.float64))


def exit_model(depth_cls=Relaxed, n_loops=3, vocab=4):
    torch.manual_seed(3)
    blocks = make_blocks("attention", 1)
    depth = depth_cls(blocks, n_loops, rank=2) if depth_cls is Relaxed else depth_cls(blocks, n_loops)
    if depth_cls is Relaxed:
        randomise_lora(depth)
    model = DepthLM(vocab, depth).double().eval()
    with torch.no_grad():
        model.embedding.weight.normal_(0, 0.2)
    return model


def test_early_exit_extremes():
    model = exit_model()
    ids = torch.randint(0, 4, (2, 8))
    logits, exits, _ = early_exit_forward(model, ids, threshold=1.0)
    assert (exits == 3).all()
    assert_rel_close(logits, model(ids)[0], 1e-12, "threshold 1: nobody exits")
    logits, exits, _ = early_exit_forward(model, ids, threshold=0.0)
    assert (exits == 1).all()
    h = model.depth.run_loop(0, model.embedding(ids), [None] * 3, step=False)
    assert_rel_close(logits, model.logits(model.final_norm(h)), 1e-12, "threshold 0: everyone exits after loop 1")


@pytest.mark.parametrize("depth_cls", [Relaxed, Recursive])
def test_early_exit_step_equals_forward_and_freezes_exited_tokens(depth_cls):
    model = exit_model(depth_cls)
    ids = torch.randint(0, 4, (3, 10), generator=torch.Generator().manual_seed(0))
    depth = model.depth
    with torch.no_grad():
        h1 = depth.run_loop(0, model.embedding(ids), [None] * depth.n_applications, step=False)
        confidence = torch.softmax(model.logits(model.final_norm(h1)), -1).amax(-1)
    threshold = float(confidence.median())  # about half the tokens leave after loop 1
    logits, exits, _ = early_exit_forward(model, ids, threshold)
    assert (exits == 1).any() and (exits > 1).any()
    early = exits == 1
    with torch.no_grad():
        loop1_logits = model.logits(model.final_norm(h1))
    assert_rel_close(logits[early], loop1_logits[early], 1e-12, "exited tokens keep loop-1 logits")
    state, step_logits, step_exits = None, [], []
    for t in range(10):
        l_t, e_t, state = early_exit_step(model, ids[:, t], threshold, state)
        step_logits.append(l_t)
        step_exits.append(e_t)
    assert torch.equal(torch.stack(step_exits, 1), exits)
    assert_rel_close(torch.stack(step_logits, 1), logits, 1e-10, "early-exit steps vs forward")
    _, _, state = early_exit_forward(model, ids[:, :4], threshold)
    for t in range(4, 10):
        l_t, e_t, state = early_exit_step(model, ids[:, t], threshold, state)
        assert torch.equal(e_t, exits[:, t])
        assert_rel_close(l_t, logits[:, t], 1e-10, f"prefix then early-exit step {t}")


def test_learns_a_lag_copy_task():
    torch.manual_seed(0)
    blocks = [make_block("attention", D, mixer_kwargs={"n_heads": 2})]
    first, last = train_lag_copy(Relaxed(blocks, 2, rank=2))
    assert first > 2.5 and last < 0.2 * first, (first, last)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="rank"):
        Relaxed(make_blocks("attention", 1), 2, rank=0)
    stack = stack_of("attention", 4)
    with pytest.raises(ValueError, match="n_loops"):
        Relaxed.from_stack(stack, 3, rank=2)
    with pytest.raises(ValueError, match="scheme"):
        Relaxed.from_stack(stack, 2, rank=2, scheme="upper")
    with pytest.raises(ValueError, match="Stack"):
        Relaxed.from_stack(list(stack.blocks), 2, rank=2)
    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="threshold"):
        early_exit_forward(exit_model(), ids, 1.5)
    with pytest.raises(ValueError, match="Recursive"):
        early_exit_forward(DepthLM(4, stack), ids, 0.5)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        early_exit_step(exit_model(), ids, 0.5)
