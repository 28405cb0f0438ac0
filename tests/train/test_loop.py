"""The shared supervised loop (recurlab.train.loop): it learns, keeps and restores the best weights, stops on
patience, applies the schedule and the clipping, repeats itself bit for bit, and runs under Opacus."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recurlab.train import loop
from recurlab.train.loop import TensorBatches, train_epochs, train_steps
from recurlab.train.schedule import warmup_times_cosine


def _regression(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.01 * torch.randn(n, 1, generator=g)
    return x, y


class _Scripted:
    """validate() returning scripted values of "m" and remembering the weights it saw."""

    def __init__(self, model, values):
        self.model, self.values, self.seen = model, list(values), []

    def __call__(self):
        self.seen.append({k: v.clone() for k, v in self.model.state_dict().items()})
        return {"m": self.values[len(self.seen) - 1]}


def test_tensor_batches_cover_every_example_once_per_pass_in_a_new_order():
    x = torch.arange(10)
    batches = TensorBatches((x, 2 * x), 4, torch.Generator().manual_seed(0))
    assert len(batches) == 3
    first = list(batches)
    assert [len(b[0]) for b in first] == [4, 4, 2]
    assert all(torch.equal(b[1], 2 * b[0]) for b in first)
    order1 = torch.cat([b[0] for b in first])
    order2 = torch.cat([b[0] for b in batches])
    assert sorted(order1.tolist()) == sorted(order2.tolist()) == list(range(10))
    assert not torch.equal(order1, order2)
    with pytest.raises(ValueError, match="dim 0"):
        TensorBatches((x, x[:5]), 4, torch.Generator())


def test_train_epochs_lowers_the_loss_and_counts_steps():
    torch.manual_seed(0)
    x, y = _regression()
    model = nn.Linear(4, 1)
    initial = F.mse_loss(model(x), y).item()
    h = train_epochs(model, torch.optim.Adam(model.parameters(), lr=0.05), F.mse_loss,
                     TensorBatches((x, y), 16, torch.Generator().manual_seed(0)), epochs=20)
    assert F.mse_loss(model(x), y).item() < 0.01 * initial
    assert len(h.step_loss) == len(h.step_size) == len(h.lr) == 20 * 6 and h.window_end[-1] == 120
    assert len(h.window_loss) == 20 and h.window_loss[-1] < 0.05 * h.window_loss[0]
    assert h.lr == [0.05] * 120 and h.val == [] and h.best_window == -1


def test_window_loss_is_the_example_weighted_mean_of_its_steps():
    x, y = _regression(n=40)
    model = nn.Linear(4, 1)
    h = train_epochs(model, torch.optim.SGD(model.parameters(), lr=0.01), F.mse_loss,
                     TensorBatches((x, y), 16, torch.Generator().manual_seed(0)), epochs=1)
    assert h.step_size == [16, 16, 8]
    assert h.window_loss[0] == pytest.approx(sum(l * n for l, n in zip(h.step_loss, h.step_size)) / 40)


@pytest.mark.parametrize("maximize, values, best", [(False, [3.0, 1.0, 2.0, 5.0], 1), (True, [3.0, 1.0, 7.0, 5.0], 2)])
def test_best_weights_are_restored(maximize, values, best):
    torch.manual_seed(0)
    x, y = _regression()
    model = nn.Linear(4, 1)
    validate = _Scripted(model, values)
    h = train_epochs(model, torch.optim.Adam(model.parameters(), lr=0.05), F.mse_loss,
                     TensorBatches((x, y), 16, torch.Generator().manual_seed(0)), epochs=4, validate=validate,
                     select="m", maximize=maximize)
    assert h.best_window == best and h.best_value == values[best] and [v["m"] for v in h.val] == values
    for k, v in model.state_dict().items():
        assert torch.equal(v, validate.seen[best][k])
        assert not torch.equal(v, validate.seen[3][k])  # the final weights were trained further


def test_without_select_the_final_weights_stay():
    x, y = _regression()
    model = nn.Linear(4, 1)
    validate = _Scripted(model, [1.0, 2.0, 3.0])
    train_epochs(model, torch.optim.Adam(model.parameters(), lr=0.05), F.mse_loss,
                 TensorBatches((x, y), 16, torch.Generator().manual_seed(0)), epochs=3, validate=validate)
    assert all(torch.equal(v, validate.seen[2][k]) for k, v in model.state_dict().items())


def test_patience_stops_after_that_many_windows_without_improvement():
    x, y = _regression()
    model = nn.Linear(4, 1)
    validate = _Scripted(model, [3.0, 1.0, 2.0, 1.0, 0.5, 0.1])
    h = train_epochs(model, torch.optim.Adam(model.parameters(), lr=0.05), F.mse_loss,
                     TensorBatches((x, y), 16, torch.Generator().manual_seed(0)), epochs=6, validate=validate,
                     select="m", patience=2)
    assert h.stopped_early and len(h.val) == 4 and h.best_window == 1  # 1.0 again is not better
    assert len(h.window_loss) == 4 and h.window_end[-1] == 4 * 6


def test_schedule_sets_the_learning_rate_of_every_step():
    """SGD on loss = w (gradient 1): w after step s is -sum of the learning rates of steps 0..s-1."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    factor = partial(warmup_times_cosine, total=10, warmup=3, min_ratio=0.1)
    ones = torch.ones(1, 1)
    h = train_steps(model, torch.optim.SGD(model.parameters(), lr=0.5), lambda out, target: out.sum(),
                    lambda s: (ones, ones), steps=10, eval_every=4, lr_factor=factor)
    expected = [0.5 * factor(s) for s in range(10)]
    assert h.lr == expected
    assert h.step_loss == pytest.approx([-sum(expected[:s]) for s in range(10)], abs=1e-6)
    assert model.weight.item() == pytest.approx(-sum(expected), abs=1e-6)


def test_a_schedule_continued_over_several_calls_keeps_its_peak():
    """One epoch per call with a global-step schedule (as the vision trainer runs it): the second call scales the
    original peak, not the rate the first call left (which compounded the decay epoch after epoch)."""
    model = nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    factor = partial(warmup_times_cosine, total=8, warmup=2, min_ratio=0.1)
    ones = torch.ones(1, 1)
    rates = []
    for epoch in range(2):
        h = train_steps(model, optimizer, lambda out, target: out.sum(), lambda s: (ones, ones), steps=4,
                        eval_every=4, lr_factor=lambda s, first=4 * epoch: factor(first + s))
        rates += h.lr
    assert rates == [0.5 * factor(s) for s in range(8)]
    assert optimizer.param_groups[0]["initial_lr"] == 0.5


def test_train_steps_calls_batch_fn_in_order_and_validates_every_window():
    x, y = _regression(n=8)
    model = nn.Linear(4, 1)
    calls = []

    def batch_fn(step):
        calls.append(step)
        return x, y

    validate = _Scripted(model, [0.0] * 3)
    h = train_steps(model, torch.optim.SGD(model.parameters(), lr=0.01), F.mse_loss, batch_fn, steps=10,
                    eval_every=4, validate=validate)
    assert calls == list(range(10)) and h.window_end == [4, 8, 10] and len(h.val) == 3


def test_every_step_runs_in_training_mode_even_after_validate_switched_to_eval():
    modes = []

    class Recorder(nn.Linear):
        def forward(self, x):
            modes.append(self.training)
            return super().forward(x)

    x, y = _regression(n=32)
    model = Recorder(4, 1)
    train_epochs(model, torch.optim.SGD(model.parameters(), lr=0.01), F.mse_loss,
                 TensorBatches((x, y), 16, torch.Generator().manual_seed(0)), epochs=3,
                 validate=lambda: {"val": F.mse_loss(model.eval()(x), y).item()})
    assert modes == [True, True, False] * 3  # two training steps, then validate's forward, per epoch


def test_gradient_norm_is_clipped():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ones = torch.ones(1, 1)
    train_steps(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda out, target: 100 * out.sum(),
                lambda s: (ones, ones), steps=1, eval_every=1, grad_clip=1.0)
    assert model.weight.item() == pytest.approx(-0.1)  # the gradient 100 was clipped to norm 1


def test_empty_batches_take_no_step():
    x, y = _regression(n=8)
    model = nn.Linear(4, 1)
    batches = [(x[:0], y[:0]), (x, y), (x[:0], y[:0])]
    h = train_epochs(model, torch.optim.SGD(model.parameters(), lr=0.01), F.mse_loss, batches, epochs=2)
    assert h.step_size == [8, 8] and h.window_end == [1, 2]


def test_same_seeds_give_identical_runs():
    def one_run():
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 1))
        x, y = _regression()
        val = lambda: {"val": F.mse_loss(model.eval()(x), y).item()}  # noqa: E731
        h = train_epochs(model, torch.optim.Adam(model.parameters(), lr=0.01), F.mse_loss,
                         TensorBatches((x, y), 16, torch.Generator().manual_seed(3)), epochs=5, validate=val,
                         select="val", grad_clip=1.0)
        return h, model.state_dict()

    (h1, w1), (h2, w2) = one_run(), one_run()
    assert h1 == h2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_argument_errors():
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="need validate"):
        train_epochs(model, opt, F.mse_loss, [], epochs=1, select="m")
    with pytest.raises(ValueError, match="patience"):
        train_epochs(model, opt, F.mse_loss, [], epochs=1, validate=dict, patience=2)
    with pytest.raises(ValueError, match="epochs"):
        train_epochs(model, opt, F.mse_loss, [], epochs=0)
    with pytest.raises(ValueError, match="eval_every"):
        train_steps(model, opt, F.mse_loss, lambda s: None, steps=5, eval_every=0)


def test_progress_bar_advances_every_step_with_the_loss(monkeypatch):
    events = []

    class Bar:
        def __init__(self, total=None, desc="", disable=False, **kwargs):
            events.append(("open", total, desc))
            self.disable = disable

        def update(self, n):
            events.append(("update", n))

        def set_postfix(self, refresh=True, **kwargs):
            events.append(("postfix", sorted(kwargs)))

        def close(self):
            events.append(("close",))

    monkeypatch.setattr(loop, "tqdm", Bar)
    x, y = _regression(n=48)
    model = nn.Linear(4, 1)
    train_epochs(model, torch.optim.SGD(model.parameters(), lr=0.01), F.mse_loss,
                 TensorBatches((x, y), 16, torch.Generator().manual_seed(0)), epochs=2, progress=True, desc="demo",
                 validate=lambda: {"val": 1.0})
    assert events[0] == ("open", 6, "demo") and events[-1] == ("close",)
    updates = [i for i, e in enumerate(events) if e[0] == "update"]
    assert len(updates) == 6
    # every step is followed by a postfix with the running loss; after the first window it also shows "val"
    assert all(events[i + 1][0] == "postfix" and "loss" in events[i + 1][1] for i in updates)
    assert events[updates[3] + 1] == ("postfix", ["loss", "val"])


# ------------------------------------------------------------------------------------------------ Opacus

def _private_run(seed, **options):
    pytest.importorskip("opacus")
    import warnings

    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _regression(n=256)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    data = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")  # fine for a test
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # the inputs need no gradient
        engine = PrivacyEngine(accountant="rdp")
        model, opt, data = engine.make_private(module=model, optimizer=opt, data_loader=data, noise_multiplier=0.3,
                                               max_grad_norm=1.0)
        # evaluate without gradients: Opacus records the activations of every forward that could backpropagate
        with torch.no_grad():
            initial = F.mse_loss(model(x), y).item()
        val = torch.no_grad()(lambda: {"val": F.mse_loss(model(x), y).item()})
        h = train_epochs(model, opt, F.mse_loss, data, epochs=8, validate=val, select="val", **options)
    return h, model, engine, initial


def test_opacus_model_optimizer_and_poisson_loader_train_through_the_loop():
    h, model, engine, initial = _private_run(0)
    assert type(model).__name__ == "GradSampleModule" and type(engine.accountant).__name__ == "RDPAccountant"
    # the accountant saw one noised step per step of the loop, and the model learned despite the noise
    assert sum(steps for _, _, steps in engine.accountant.history) == len(h.step_loss)
    assert 0 < engine.get_epsilon(1e-5) < float("inf")
    assert h.best_value < 0.5 * initial
    x, y = _regression(n=256)
    with torch.no_grad():
        assert F.mse_loss(model(x), y).item() == h.best_value  # the best weights were restored
    # Poisson sampling: batch sizes vary around 32
    assert len(set(h.step_size)) > 1
    h2, model2, _, _ = _private_run(0)
    assert h2 == h and all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))


def test_opacus_optimizer_refuses_grad_clip():
    with pytest.raises(ValueError, match="max_grad_norm"):
        _private_run(0, grad_clip=1.0)
