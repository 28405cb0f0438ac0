"""Tests of the MixER recipe: RK4, K-means (L1), the gate update, top-1 routing's gradient, the data, a tiny run."""

import math

import pytest
import torch

from recurlab.recipes import mixer_dsr as m


def test_rk4_matches_the_harmonic_oscillator_to_fourth_order():
    # x'' = -x, x(0) = 1, v(0) = 0: x = cos t, v = -sin t
    f = lambda x: torch.stack([x[:, 1], -x[:, 0]], 1)  # noqa: E731
    x0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    errors = []
    for dt in (0.2, 0.1):
        n = round(2 * math.pi / dt)
        traj = m.integrate(f, x0, dt, n)
        t = torch.arange(n + 1, dtype=torch.float64) * dt
        exact = torch.stack([torch.cos(t), -torch.sin(t)], 1)
        assert traj.shape == (1, n + 1, 2)
        errors.append((traj[0] - exact).abs().max().item())
    assert errors[0] < 1e-4
    assert 12 < errors[0] / errors[1] < 20  # halving dt divides the global error by ~2^4
    # one step by hand: k1 = (0,-1), k2 = (-h/2, -1), k3 = (-h/2, -1 + h^2/4), k4 = (-h + h^3/4, -1 + h^2/2)
    h = 0.5
    step = m.rk4_step(f, x0, h)[0]
    assert step[0].item() == pytest.approx(1 - h ** 2 / 2 + h ** 4 / 24, abs=1e-12)
    assert step[1].item() == pytest.approx(-h + h ** 3 / 6, abs=1e-12)
    # substeps: 2 sub-steps of h/2 equal 2 plain steps of h/2
    assert torch.allclose(m.integrate(f, x0, h, 1, substeps=2)[:, 1], m.integrate(f, x0, h / 2, 2)[:, 2])
    with pytest.raises(ValueError, match="x0 must be"):
        m.integrate(f, x0[0], 0.1, 3)


def test_kmeans_l1_uses_the_mean_absolute_distance():
    # p = (0.5, 4.5) is nearer A = (0, 0) in L1 (5 vs 6) but nearer B = (3, 1) in L2 (20.5 vs 18.5)
    points = torch.tensor([[0.0, 0.0], [3.0, 1.0], [0.5, 4.5]], dtype=torch.float64)
    assign, centroids, status = m.kmeans_l1(points, points[:2].clone(), max_iter=1)
    assert assign.tolist() == [0, 1, 0] and status == "not_converged"
    assert torch.allclose(centroids, torch.tensor([[0.25, 2.25], [3.0, 1.0]], dtype=torch.float64))
    # two well-separated groups converge to their means
    pts = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0], [10.0, 11.0]], dtype=torch.float64)
    assign, centroids, status = m.kmeans_l1(pts, torch.tensor([[1.0, 1.0], [9.0, 9.0]], dtype=torch.float64))
    assert status == "converged" and assign.tolist() == [0, 0, 1, 1]
    assert torch.allclose(centroids, torch.tensor([[0.0, 0.5], [10.0, 10.5]], dtype=torch.float64))
    # a centroid that attracts no point: the official update stops ("empty")
    _, _, status = m.kmeans_l1(pts, torch.tensor([[5.0, 5.0], [100.0, 100.0]], dtype=torch.float64))
    assert status == "empty"


def test_match_clusters_is_greedy_in_cluster_order():
    assert m.match_clusters(torch.tensor([[1.0, 0.1], [2.0, 3.0]])) == [1, 0]
    # both clusters prefer expert 0: the first cluster gets it, the second its next best
    assert m.match_clusters(torch.tensor([[0.1, 0.5, 0.9], [0.0, 0.7, 0.2], [0.0, 0.1, 0.2]])) == [0, 2, 1]


def test_gate_update_routes_each_cluster_to_its_matched_expert():
    ctx = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    # cluster A (envs 0, 1) is fitted best by expert 1, cluster B (envs 2, 3) by expert 0
    losses = torch.tensor([[1.0, 0.1], [0.8, 0.2], [0.05, 2.0], [0.1, 3.0]])
    g = torch.Generator().manual_seed(0)
    upd = m.gate_update(ctx, losses, torch.tensor([[0.0, 0.0], [4.0, 4.0]]), g)
    assert upd.status == "updated" and upd.assignments.tolist() == [0, 0, 1, 1] and upd.experts == [1, 0]
    assert upd.weight.shape == (3, 2)
    logits = torch.cat([ctx.double(), torch.ones(4, 1, dtype=torch.float64)], 1) @ upd.weight
    assert logits.argmax(1).tolist() == [1, 1, 0, 0]
    # lstsq reproduces the one-hot targets closely on separated clusters
    assert torch.allclose(logits, torch.tensor([[0, 1], [0, 1], [1, 0], [1, 0]], dtype=torch.float64), atol=0.05)
    # the model's gate routes the same way once W is set
    model = m.MixtureODE(4, 2, 2, 8, 1, 0.1, 3, "lstsq")
    with torch.no_grad():
        model.contexts.copy_(ctx)
        model.gate_weight.copy_(upd.weight.float())
    assert model.routing().tolist() == [1, 1, 0, 0]
    # all contexts equal (the zero initialisation): a cluster is empty and the update is skipped
    skipped = m.gate_update(torch.zeros(4, 2), losses, None, g)
    assert skipped.status == "empty" and skipped.weight is None and skipped.centroids is None
    with pytest.raises(ValueError, match="expert_losses"):
        m.gate_update(ctx, losses[:3], None, g)


@pytest.mark.parametrize("gate", ["lstsq", "gradient"])
def test_top1_routing_uses_only_the_chosen_experts_gradient(gate):
    torch.manual_seed(0)
    model = m.MixtureODE(n_envs=2, n_experts=3, context_size=6, width=8, depth=1, dt=0.1, n_steps=4, gate=gate)
    with torch.no_grad():
        model.contexts.normal_()
        w = torch.zeros(7, 3)
        w[6] = torch.tensor([0.0, 5.0, 0.0])  # the bias row sends every environment to expert 1
        model.gate_weight.copy_(w)
    assert model.routing().tolist() == [1, 1]
    x0 = torch.randn(3, 2)
    out = model(torch.tensor([0, 0, 1]), x0)
    # the forward value is exactly expert 1's rollout
    assert torch.allclose(out, model.rollout_expert(1, torch.tensor([0, 0, 1]), x0))
    out.pow(2).sum().backward()
    for k in (0, 2):
        assert all(p.grad is None or torch.all(p.grad == 0) for p in model.experts[k].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.experts[1].parameters())
    # the contexts get gradient in expert 1's piece; through the gate only with the gradient gate
    g = model.contexts.grad
    assert g[:, 2:4].abs().sum() > 0
    if gate == "lstsq":
        assert torch.all(g[:, :2] == 0) and torch.all(g[:, 4:] == 0)
    else:
        assert model.gate_weight.grad is not None and model.gate_weight.grad.abs().sum() > 0


def test_mixture_data_and_purity():
    d1 = m.ode_mixture("hierarchical", envs_per_family=2, n_train=2, n_test=1, n_steps=5, dt=0.2, seed=1)
    d2 = m.ode_mixture("hierarchical", envs_per_family=2, n_train=2, n_test=1, n_steps=5, dt=0.2, seed=1)
    assert torch.equal(d1["train"], d2["train"]) and d1["train"].shape == (6, 2, 6, 2)
    assert d1["family"].tolist() == [0, 0, 1, 1, 2, 2] and d1["test"].shape == (6, 1, 6, 2)
    # a damped-oscillator environment follows its own vector field (one coarse RK4 step, loose tolerance)
    e = 4
    x = d1["train"][e, 0].double()
    p = torch.as_tensor(d1["params"][e]).expand(1, 2)
    assert torch.allclose(m.rk4_step(lambda s: m._damped_oscillator(s, p), x[:1], 0.2), x[1:2], atol=1e-3)
    rel = m.ode_mixture("related", envs_per_family=2, n_train=1, n_test=1, n_steps=3, dt=0.2, seed=0,
                        related_spread=0.05)
    assert rel["families"] == ["lotka_volterra"] and rel["train"].shape[0] == 6
    assert (abs(rel["params"] - 1.0) <= 0.05 + 1e-12).all()
    assert m.gate_purity(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 0, 1, 1, 2, 2])) == 1.0
    assert m.gate_purity(torch.tensor([0, 0, 0, 0, 0, 0]), torch.tensor([0, 0, 1, 1, 2, 2])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="kind"):
        m.ode_mixture("flat", envs_per_family=1, n_train=1, n_test=1, n_steps=2, dt=0.1, seed=0)
    with pytest.raises(ValueError, match="context_size"):
        m.Config(context_size=5, n_experts=3)


def test_training_is_deterministic():
    d = m.ode_mixture("hierarchical", envs_per_family=1, n_train=2, n_test=1, n_steps=2, dt=0.3, seed=0)
    cfg = m.Config(envs_per_family=1, n_train=2, n_test=1, n_steps=2, dt=0.3, width=8, outer_steps=2, inner_steps=2,
                   gate_every=1)
    for method in m.METHODS:
        (a, ha), (b, hb) = m.train_model(method, d, cfg, 3), m.train_model(method, d, cfg, 3)
        assert ha["loss"] == hb["loss"], method
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())), method


def test_tiny_run_learns(tmp_path):
    cfg = m.Config(envs_per_family=2, n_train=3, n_test=2, n_steps=4, dt=0.3, width=16, outer_steps=1,
                   inner_steps=60, gate_every=10, lr=1e-2)
    r = m.run(out_dir=tmp_path, seed=0, progress=False, config=cfg)
    for kind in ("hierarchical", "related"):
        d = m.ode_mixture(kind, envs_per_family=2, n_train=3, n_test=2, n_steps=4, dt=0.3,
                          seed=0 if kind == "hierarchical" else 1)
        # trivial baseline: predict that the state stays at its initial value
        still = (d["test"] - d["test"][:, :, :1]).pow(2).mean().item()
        for method in m.METHODS:
            assert r.details["results"][kind][method]["mse"] < 0.6 * still, (kind, method)
    assert len(r.rows) == 21 and all(math.isfinite(row.ours) for row in r.rows)
    assert (tmp_path / "mixer_dsr.png").stat().st_size > 0
    assert r.files == [str(tmp_path / "mixer_dsr.png")]
