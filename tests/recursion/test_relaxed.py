"""Relaxed (layer-wise LoRA on a looped stack): equals Recursive at init, step = forward, conversion from a
trained Stack (full rank is exact), confidence-based early exit, learning, bad arguments."""

import copy

import pytest
import torch

from recurlab.models import BlockStates, CausalLM, Stack, make_block
from recurlab.recursion import relax
from recurlab.recursion.recursive import Recursive
from recurlab.recursion.relaxed import LoopLoRALinear, Relaxed, early_exit_forward, early_exit_step
from tests.conftest import assert_rel_close
from tests.recursion.common import D, causal_lm, check_step_equals_forward, config, make_blocks, train_lag_copy, widen


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


@pytest.mark.parametrize("mixer", ["sliced_attention", "gla"])
def test_step_equals_forward(mixer):
    kwargs = {"group_sizes": [4, 8], "group_offsets": [0, 2]} if mixer == "sliced_attention" else {}
    relaxed = Relaxed(make_blocks(mixer, 2), 2, rank=3, loop_scales=True, loop_norms=True, **kwargs).eval()
    randomise_lora(relaxed)
    with torch.no_grad():
        relaxed.loop_norms[0][1][0].weight.uniform_(0.5, 1.5)
    check_step_equals_forward(relaxed, torch.randn(2, 9, D, dtype=torch.float64))


def test_hyena_decodes_each_loop_with_its_own_lora_filter_without_gradients():
    """Every Linear of hyena's implicit filter gets a per-loop LoRA, so the long filter differs per loop. The
    no-grad step once took it from a cache keyed on the parameters only: every loop decoded with loop 0's filter
    (step vs forward 1.6e-3 relative; exact with gradients on)."""
    torch.manual_seed(0)
    model = causal_lm("relaxed", {"n_loops": 2, "rank": 2}, n_layers=2, mixer="hyena",
                      mixer_kwargs={"hyena": {"l_max": 40, "filter_order": 8}}).double().eval()
    with torch.no_grad():
        for p in model.parameters():  # LoRA B starts at 0: make every loop's delta matter
            p.add_(0.05 * torch.randn_like(p))
    ids = torch.randint(0, 16, (2, 9))
    with torch.no_grad():
        logits, _ = model(ids)
        state, steps = None, []
        for t in range(ids.shape[1]):
            logits_t, state = model.step(ids[:, t], state)
            steps.append(logits_t)
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-9, atol=1e-9)


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


@pytest.mark.parametrize("scheme", ["stepwise", "average"])
def test_relax_converts_a_stack_language_model(scheme):
    torch.manual_seed(1)
    model = causal_lm("stack", n_layers=4).double().eval()
    widen(model.depth.blocks)  # a "trained" stack: distinct weights and norm gains per layer
    ids = torch.randint(0, 16, (2, 7))
    logits, _ = model(ids)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    full = relax(model, n_loops=2, rank=10_000, scheme=scheme, loop_norms=True).eval()
    assert isinstance(full, CausalLM) and isinstance(full.depth, Relaxed)
    assert full.config.depth == "relaxed" and full.config.n_layers == 2 and full.depth.n_applications == 4
    assert full.config.depth_kwargs == {"n_loops": 2, "rank": 10_000, "loop_norms": True}
    assert full.embedding.weight.dtype == torch.float64
    assert_rel_close(full(ids)[0], logits, 1e-10, f"full-rank relax ({scheme})")
    check_step_equals_forward(full.depth, torch.randn(2, 6, D, dtype=torch.float64))
    rebuilt = CausalLM(full.config).double()  # the config describes the converted model (save/load)
    rebuilt.load_state_dict(full.state_dict())
    assert_rel_close(rebuilt.eval()(ids)[0], logits, 1e-10, "rebuilt from its config")
    low = relax(model, 2, rank=1, scheme=scheme).eval()
    assert (low(ids)[0] - logits).abs().max() > 1e-4
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the stack is not modified


def test_relax_refuses_what_it_cannot_convert():
    with pytest.raises(ValueError, match="'stack' depth module"):
        relax(causal_lm("recursive", {"n_loops": 2}), 2, rank=2)
    with pytest.raises(ValueError, match="'stack' depth module"):
        relax(stack_of("attention", 2), 1, rank=2)
    with pytest.raises(ValueError, match="n_loops"):
        relax(causal_lm("stack", n_layers=4), 3, rank=2)
    with pytest.raises(ValueError, match="one mixer for every loop"):
        relax(causal_lm("stack", n_layers=2, mixer=["attention", "gla"]), 2, rank=2)


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


def exit_model(depth="relaxed", n_loops=3, vocab=4):
    """A CausalLM of one widened attention block looped n_loops times (depth "relaxed" or "recursive")."""
    torch.manual_seed(3)
    model = causal_lm(depth, {"n_loops": n_loops, **({"rank": 2} if depth == "relaxed" else {})}, vocab_size=vocab)
    model = model.double().eval()
    widen(model.depth.blocks)
    if depth == "relaxed":
        randomise_lora(model.depth)
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
    states = list(model.init_state(2, dtype=torch.float64).blocks)
    h = model.depth.run_loop(0, model.embed(ids), states, step=False)
    assert_rel_close(logits, model.readout(h), 1e-12, "threshold 0: everyone exits after loop 1")


@pytest.mark.parametrize("depth", ["relaxed", "recursive"])
def test_early_exit_step_equals_forward_and_freezes_exited_tokens(depth):
    model = exit_model(depth)
    ids = torch.randint(0, 4, (3, 10), generator=torch.Generator().manual_seed(0))
    depth = model.depth
    with torch.no_grad():
        h1 = depth.run_loop(0, model.embed(ids), list(model.init_state(3).blocks), step=False)
        confidence = torch.softmax(model.readout(h1), -1).amax(-1)
    # about half the tokens leave after loop 1; the threshold sits halfway between two confidences, never at
    # one (the median itself is a token's confidence, and step and forward may round it 1 ulp apart)
    ordered = confidence.flatten().sort().values
    threshold = float(ordered[ordered.numel() // 2 - 1] + ordered[ordered.numel() // 2]) / 2
    logits, exits, _ = early_exit_forward(model, ids, threshold)
    assert (exits == 1).any() and (exits > 1).any()
    early = exits == 1
    with torch.no_grad():
        loop1_logits = model.readout(h1)
    assert_rel_close(logits[early], loop1_logits[early], 1e-12, "exited tokens keep loop-1 logits")
    state, step_logits, step_exits = None, [], []
    for t in range(10):
        l_t, e_t, state = early_exit_step(model, ids[:, t], threshold, state)
        step_logits.append(l_t)
        step_exits.append(e_t)
    assert torch.equal(torch.stack(step_exits, 1), exits)
    assert_rel_close(torch.stack(step_logits, 1), logits, 1e-10, "early-exit steps vs forward")
    _, _, prefix = early_exit_forward(model, ids[:, :4], threshold)
    assert isinstance(prefix, BlockStates) and len(prefix.blocks) == depth.n_applications
    state = prefix
    for t in range(4, 10):
        l_t, e_t, state = early_exit_step(model, ids[:, t], threshold, state)
        assert torch.equal(e_t, exits[:, t])
        assert_rel_close(l_t, logits[:, t], 1e-10, f"prefix then early-exit step {t}")
    l_t, e_t, _ = early_exit_step(model, ids[:, 4], threshold, prefix)  # the prefix state was kept unchanged
    assert torch.equal(e_t, exits[:, 4])
    assert_rel_close(l_t, logits[:, 4], 1e-10, "early-exit step from the kept prefix state")


def test_learns_a_lag_copy_task():
    first, last = train_lag_copy(config("relaxed", {"n_loops": 2, "rank": 2}))
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
    with pytest.raises(ValueError, match="depth is recursive"):
        early_exit_forward(causal_lm("stack", vocab_size=4), ids, 0.5)
    with pytest.raises(ValueError, match="CausalLM"):
        early_exit_forward(stack, ids, 0.5)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        early_exit_step(exit_model(), ids, 0.5)


def test_relax_keeps_per_layer_arguments_and_refuses_tied_layers_that_differ():
    from recurlab.models import ModelConfig

    tied = ModelConfig(vocab_size=16, d_model=D, n_layers=4, mixer="baseconv", channel_mixer=None,
                       layer_kwargs=[{"kernel_size": 3}, {"kernel_size": 4}] * 2)
    relaxed = relax(CausalLM(tied), 2, rank=2)
    assert relaxed.config.layer_kwargs == [{"kernel_size": 3}, {"kernel_size": 4}]
    differ = ModelConfig(vocab_size=16, d_model=D, n_layers=4, mixer="baseconv", channel_mixer=None,
                         layer_kwargs=[{"kernel_size": 3}, {"kernel_size": 4}, {"kernel_size": 4}, {"kernel_size": 4}])
    with pytest.raises(ValueError, match="same layer_kwargs for every loop"):
        relax(CausalLM(differ), 2, rank=2)
