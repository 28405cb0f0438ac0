"""Tests of the global-workspace recipe: routing with hand-set gates, the gate and the controller, the pair
split, the learned modules' convolution, parameter counts, and a tiny run."""

import pytest
import torch
import torch.nn.functional as F

from recurlab.recipes import global_workspace as g

ALL = torch.tensor([(a, b) for a in range(10) for b in range(10)])


def test_hand_set_routing_computes_every_sum_exactly():
    mods = g.HandModules(20)
    a, b = ALL[:, 0], ALL[:, 1]
    gates = g.policy_gates(b)
    assert gates.shape == (100, g.N_STEPS, 3)
    assert torch.equal(gates[ALL.tolist().index([3, 2])].argmax(-1), torch.tensor([0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]))
    r, ws = g.route(mods, a, gates)
    assert torch.equal(r, F.one_hot(a + b, 20).float())  # exactly one-hot at a + b, for all 100 pairs
    assert ws.shape == (100, g.N_STEPS + 1, 20) and torch.all(ws[:, 0] == 0)
    assert torch.equal(ws[:, 1], F.one_hot(a, 20).float())  # Input wrote one_hot(a)
    assert g.routing_correct(gates, b).all()
    # one Increment too few or too many: every answer off by one
    r_short, _ = g.route(mods, a, g.policy_gates((b - 1).clamp(min=0)))
    assert torch.equal(r_short.argmax(-1)[b > 0], (a + b - 1)[b > 0])
    r_long, _ = g.route(mods, a, g.policy_gates(b + 1, steps=12))
    assert torch.equal(r_long.argmax(-1), a + b + 1)


def test_routing_correct_agrees_with_the_hand_modules_on_random_gate_sequences():
    gen = torch.Generator().manual_seed(0)
    choice = torch.randint(3, (400, g.N_STEPS), generator=gen)
    choice[:, 0] = torch.where(torch.rand(400, generator=gen) < 0.8, 0, choice[:, 0])
    gates = F.one_hot(choice, 3).float()
    pairs = ALL[torch.randint(100, (400,), generator=gen)]
    a, b = pairs[:, 0], pairs[:, 1]
    r, _ = g.route(g.HandModules(30), a, gates)
    exact = (r.max(-1).values == 1) & (r.argmax(-1) == a + b)
    assert torch.equal(g.routing_correct(gates, b), exact)
    assert 10 < int(exact.sum()) < 390  # both outcomes occur


def test_hard_gate_writes_only_the_chosen_module_and_soft_gate_mixes():
    mods = g.HandModules(6)
    w = torch.tensor([[0.0, 0.5, 0.5, 0, 0, 0]])
    u_in = F.one_hot(torch.tensor([4]), 6).float()
    r = torch.full((1, 6), 1 / 6)
    expected = {0: (u_in, r), 1: (torch.tensor([[0.0, 0, 0.5, 0.5, 0, 0]]), r), 2: (w, w)}
    for k, (w_exp, r_exp) in expected.items():
        gate = g.make_gate(torch.tensor([[-1.0, 0.0, 1.0]]) + 10 * F.one_hot(torch.tensor([k]), 3), "hard")
        assert torch.equal(gate, F.one_hot(torch.tensor([k]), 3).float())
        w_new, r_new = g.workspace_step(w, r, gate, u_in, mods)
        assert torch.equal(w_new, w_exp) and torch.equal(r_new, r_exp)
    soft = g.make_gate(torch.zeros(1, 3), "soft")
    w_new, r_new = g.workspace_step(w, r, soft, u_in, mods)
    assert torch.allclose(w_new, (u_in + mods.increment(w) + w) / 3)
    assert torch.allclose(r_new, r + (w - r) / 3)
    with pytest.raises(ValueError, match="gate must be"):
        g.workspace_step(w, r, torch.ones(1, 4), u_in, mods)
    with pytest.raises(ValueError, match="gate mode"):
        g.make_gate(torch.zeros(1, 3), "sharp")


def test_controller_and_model_shapes_and_eval_gates_are_hard():
    torch.manual_seed(0)
    model = g.GlobalWorkspace(g.HandModules(20), hidden=8)
    logits, (h, c) = model.controller(torch.zeros(5, 20), torch.zeros(5, 20), torch.zeros(5, 3), None)
    assert logits.shape == (5, 3) and h.shape == c.shape == (5, 8)
    a, b = ALL[:7, 0], ALL[:7, 1]
    p = model(a, b)
    # r starts uniform; soft Output calls before the first Input read out part of the empty workspace: mass <= 1
    assert p.shape == (7, 20) and torch.all(p >= 0) and torch.all(p.sum(-1) <= 1 + 1e-6)
    assert model.last_gates.shape == (7, g.N_STEPS, 3)
    assert not torch.all(model.last_gates.max(-1).values == 1)  # training: soft gates
    model.eval()
    model(a, b)
    assert torch.all(model.last_gates.max(-1).values == 1) and torch.all(model.last_gates.sum(-1) == 1)
    blind = g.GlobalWorkspace(g.HandModules(20), hidden=8, reads_workspace=False)
    assert blind.controller.cell.input_size == 20 + 3 and model.controller.cell.input_size == 43
    with pytest.raises(ValueError, match="digits must be"):
        model(torch.tensor([10]), torch.tensor([1]))


def test_slot_conv_offsets_and_learned_modules():
    w = F.one_hot(torch.tensor([3]), 8).float()
    up = torch.tensor([0.0, 0, 0, 1, 0])  # taps at offsets -2..2: +1
    assert torch.equal(g.slot_conv(w, up), F.one_hot(torch.tensor([4]), 8).float())
    assert torch.equal(g.slot_conv(w, up.flip(0)), F.one_hot(torch.tensor([2]), 8).float())
    assert torch.equal(g.slot_conv(F.one_hot(torch.tensor([7]), 8).float(), up), torch.zeros(1, 8))  # falls off
    assert torch.equal(g.shift_up(w), g.slot_conv(w, up))
    mods = g.LearnedModules(20, hidden=16)
    x = torch.rand(4, 64)
    assert torch.allclose(mods.read_input(x).sum(-1), torch.ones(4))
    assert mods.increment(mods.read_input(x)).shape == (4, 20)
    with pytest.raises(ValueError, match="images must be"):
        mods.read_input(torch.rand(4, 63))


def test_split_pairs_regimes():
    s = g.split_pairs(9, 10, seed=0)
    assert len(s["train"]) == 45 and len(s["interpolation"]) == 10 and len(s["extrapolation"]) == 45
    assert not set(s["train"]) & set(s["interpolation"])
    assert all(a + b <= 9 for a, b in s["train"] + s["interpolation"]) and all(a + b >= 10 for a, b in s["extrapolation"])
    for i in (0, 1):
        assert {p[i] for p in s["train"]} == set(range(10))
    assert {a + b for a, b in s["train"]} == set(range(10))
    assert s == g.split_pairs(9, 10, seed=0) and s != g.split_pairs(9, 10, seed=1)
    with pytest.raises(ValueError, match="n_holdout"):
        g.split_pairs(9, 40, seed=0)
    with pytest.raises(ValueError, match="size must be"):
        g.Config(size=18)


@pytest.mark.parametrize("version", [1, 2])
def test_baselines_have_more_parameters_than_the_workspace_model(version):
    cfg = g.Config()
    mods = g.HandModules(cfg.size) if version == 1 else g.LearnedModules(cfg.size, cfg.encoder_hidden)
    counts = {name: g.n_params(g.build_model(name, version, cfg, mods)) for name in g.MODELS}
    for baseline in (g.LSTM, g.TRANSFORMER):
        assert counts[baseline] > counts[g.GW] > counts[g.GW_BLIND]
    assert counts[g.GW] == g.n_params(g.Controller(cfg.size, cfg.hidden)) + g.n_params(mods)


def test_tiny_run_learns_and_is_deterministic(tmp_path):
    cfg = g.Config(hidden=16, steps=100, batch_size=32, eval_every=50, encoder_epochs=5, module_epochs=8,
                   lstm_hidden=16, d_model=16, n_layers=1, n_heads=2, n_eval=200, per_pair_eval=2)
    r1 = g.run(out_dir=tmp_path, seed=0, progress=False, config=cfg)
    assert len(r1.rows) == 16
    again = g.run_version(1, cfg, seed=0, progress=False)["metrics"]  # determinism, on the cheaper version
    for name in g.MODELS:
        for key in ("train", "interpolation", "extrapolation", "accuracy_by_sum"):
            assert again[name][key] == r1.details["v1"]["metrics"][name][key], (name, key)
    v1 = r1.details["v1"]["metrics"]
    # chance is 1/20; the hand-module controller must have learned to route the training pairs
    assert v1[g.GW]["train"] > 0.5 and v1[g.GW]["routing_correct"]["train"] > 0.5
    assert r1.details["v2"]["pretrain_train_accuracy"]["encoder"] > 0.8
    assert r1.details["v2"]["metrics"][g.GW]["train"] > 0.2
    assert (tmp_path / "global_workspace_accuracy_by_sum.png").stat().st_size > 0
    assert r1.files == [str(tmp_path / "global_workspace_accuracy_by_sum.png")]
