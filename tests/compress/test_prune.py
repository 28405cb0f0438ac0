"""Dead-neuron rate, masks, magnitude and AP pruning, and IMP + AP end to end (recurlab/compress/prune.py)."""

import pytest
import torch
from torch import nn

from recurlab import layers
from recurlab.compress import (DeadNeuronTracker, Masks, ap_prune, iterative_prune, magnitude_prune, prunable_weights,
                               sparsity)

# a 2-3-2 ReLU net with hand-picked weights; pre-activations and zeros worked out by hand below
W1 = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]
W2 = [[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]]
X = [[1.0, 2.0], [-1.0, 3.0], [-2.0, -1.0]]
# layer 1: (1, 2, -3), (-1, 3, -2), (-2, -1, 3)        -> zeros 1 + 2 + 2 = 5 of 9
# layer 2 on (1, 2, 0), (0, 3, 0), (0, 0, 3): (-1, 0), (-3, 0), (0, 3) -> zeros 2 + 2 + 1 = 5 of 6 (ReLU(0) = 0)


def hand_net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[2].weight.copy_(torch.tensor(W2))
    return net


def test_dead_neuron_rate_of_a_hand_made_net():
    net = hand_net()
    with DeadNeuronTracker(net) as dnr:
        net(torch.tensor(X))
    assert dnr.rates() == {"1": 5 / 9, "3": 5 / 6}
    assert dnr.rate() == 10 / 15  # pooled over outputs, not the mean of the layers' rates
    net(torch.tensor(X))  # closed: no more counting
    assert dnr.rate() == 10 / 15
    dnr.reset()
    assert dnr.total == {"1": 0, "3": 0}


@pytest.mark.parametrize("activation", ["relu", "relu2"])
def test_dead_neuron_rate_of_the_mlp_channel_mixer(activation):
    mlp = layers.build("mlp", 2, hidden_size=3, activation=activation)
    with torch.no_grad():
        mlp.up.weight.copy_(torch.tensor(W1))
    model = nn.Sequential(mlp)
    with DeadNeuronTracker(model) as dnr:
        model(torch.tensor(X).unsqueeze(0))  # (B=1, T=3, D=2): one neuron-sample per token and hidden unit
        model(torch.tensor(X[:1]).unsqueeze(0))
    assert dnr.rates() == {"0": (5 + 1) / 12}


def test_gelu_mixers_and_models_without_relu_are_refused():
    gelu = nn.Sequential(layers.build("mlp", 4, activation="gelu"))
    with pytest.raises(ValueError, match="no ReLU activations"):
        DeadNeuronTracker(gelu)
    with pytest.raises(ValueError, match="activation 'gelu'"):
        DeadNeuronTracker(gelu, {"0": gelu[0]})


def test_prunable_weights_are_linear_and_conv_weights_only():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    assert list(prunable_weights(net)) == ["0.weight", "4.weight"]
    assert list(prunable_weights(net, under="4")) == ["4.weight"]
    with pytest.raises(ValueError, match="under='9' matches no"):
        prunable_weights(net, under="9")


@pytest.mark.parametrize("make_optimizer", [lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
                                            lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1)])
def test_masks_keep_pruned_weights_at_exactly_zero_through_optimizer_steps(make_optimizer):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    masks = Masks.of(net)
    optimizer = make_optimizer(net.parameters())
    for _ in range(3):  # momentum / Adam state for every weight before pruning
        optimizer.zero_grad()
        net(torch.randn(16, 4)).square().sum().backward()
        optimizer.step()
    masks = magnitude_prune(masks, 20)
    before = {n: w.detach().clone() for n, w in masks.weights.items()}
    handle = masks.enforce(optimizer)
    for _ in range(5):
        optimizer.zero_grad()
        net(torch.randn(16, 4)).square().sum().backward()
        optimizer.step()
    pruned = torch.cat([(~m).reshape(-1) for m in masks.masks.values()])
    values = torch.cat([w.detach().reshape(-1) for w in masks.weights.values()])
    assert int(pruned.sum()) == 20 and torch.all(values[pruned] == 0)
    assert torch.all(values[~pruned] != torch.cat([b.reshape(-1) for b in before.values()])[~pruned])
    assert sparsity(net) == pytest.approx(20 / 48) and masks.sparsity() == pytest.approx(20 / 48)
    handle.remove()


def test_magnitude_pruning_removes_exactly_the_smallest_magnitudes_globally():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.5, -0.1], [0.3, -2.0]]))
        net[1].weight.copy_(torch.tensor([[0.05, -0.4], [1.0, -0.2], [0.7, 0.6]]))
    masks = Masks.of(net)
    # 40% of 10: the 4 smallest |w| over both layers (0.05, -0.1, -0.2, 0.3), whichever layer they sit in
    masks = magnitude_prune(masks, round(0.4 * masks.alive()))
    assert masks.masks["0.weight"].tolist() == [[True, False], [False, True]]
    assert masks.masks["1.weight"].tolist() == [[False, True], [True, False], [True, True]]
    masks.apply()
    masks = magnitude_prune(masks, 2)  # among the 6 alive: -0.4 and 0.5 (the pruned zeros are not counted again)
    assert masks.masks["0.weight"].tolist() == [[False, False], [False, True]]
    assert masks.masks["1.weight"].tolist() == [[False, False], [True, False], [True, True]]
    with pytest.raises(ValueError, match=r"count must be an integer in \[0, 4\]"):
        magnitude_prune(masks, 5)


def test_ap_picks_the_negative_survivors_that_moved_least():
    net = nn.Sequential(nn.Linear(3, 2, bias=False))
    end = torch.tensor([[-0.50, -0.20, 0.30], [-0.90, -0.05, -0.60]])
    start = torch.tensor([[-0.45, 0.40, 0.30], [-0.20, -0.06, -0.30]])
    # |end - start|: [[0.05, 0.60, 0.00], [0.70, 0.01, 0.30]]; 0.30 is positive (never a candidate);
    # -0.05 is alive with the smallest change but already pruned here, so it is not a candidate either
    with torch.no_grad():
        net[0].weight.copy_(end)
    alive = torch.tensor([[True, True, True], [True, False, True]])
    masks = Masks(prunable_weights(net), {"0.weight": alive})
    picked = ap_prune(masks, {"0.weight": start}, 2)
    assert picked.masks["0.weight"].tolist() == [[False, True, True], [True, False, False]]
    with pytest.raises(ValueError, match="alive weights below zero"):
        ap_prune(masks, {"0.weight": start}, 5)  # only 4 alive negative weights
    with pytest.raises(ValueError, match="start must name"):
        ap_prune(masks, {"x": start}, 1)


def test_bad_schedules_are_refused():
    net = hand_net()
    for kwargs, match in (({"rounds": -1}, "rounds must be"), ({"rate": 1.0}, r"rate must be in \(0, 1\)"),
                          ({"ap_rate": 0.3}, r"ap_rate must be in \[0, rate=0.2\]")):
        with pytest.raises(ValueError, match=match):
            iterative_prune(net, Masks.of(net), lambda m, k: None, lambda m: {}, **{"rounds": 1, **kwargs})


def test_imp_and_ap_on_digits_reach_the_target_sparsity():
    from recurlab.vision.data import load

    torch.set_num_threads(1)
    train, test = load("digits", "train"), load("digits", "test")
    x, y = train.images.flatten(1), train.labels
    results = {}
    for ap_rate in (0.0, 0.1):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        generator = torch.Generator().manual_seed(0)

        def fit(model, masks):
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            handle = masks.enforce(optimizer)
            for _ in range(8):
                for batch in torch.randperm(len(y), generator=generator).split(128):
                    optimizer.zero_grad()
                    nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                    optimizer.step()
            handle.remove()

        def score(model):
            with torch.no_grad():
                return {"accuracy": (model(test.images.flatten(1)).argmax(1) == test.labels).float().mean().item(),
                        "sparsity": sparsity(model)}

        results[ap_rate] = iterative_prune(net, Masks.of(net), fit, score, rounds=3, rate=0.5, ap_rate=ap_rate)
    alive = 64 * 64 + 64 * 10
    for _ in range(3):
        alive -= round(0.5 * alive)
    for ap_rate, history in results.items():
        assert [h.round for h in history] == [0, 1, 2, 3]
        assert history[-1].alive == alive and history[-1].metrics["sparsity"] == pytest.approx(1 - alive / 4736)
        assert history[0].metrics["accuracy"] > 0.9 and history[-1].metrics["accuracy"] > 0.7
        assert all(0 < h.dnr < 1 for h in history) and list(history[0].dnr_by_layer) == ["1"]
    assert [h.ap_removed for h in results[0.1]] == [0, 474, 237, 118] and results[0.0][-1].ap_removed == 0
