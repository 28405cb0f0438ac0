"""SortedNet's training module: the grid, the draws, the accumulated loss, and exact resume under the Trainer."""

import pytest
import torch

from recurlab.compress.sorted import SortedTraining, nested_grid
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import language_modelling_task
from recurlab.train.config import TrainConfig
from recurlab.train.trainer import Trainer, labelled_loss


def tiny(seed=0):
    torch.manual_seed(seed)
    return CausalLM(ModelConfig(vocab_size=30, d_model=16, n_layers=3, mixer="gla", channel_mixer="swiglu"))


def test_nested_grid_is_every_pair_in_order_and_checked():
    model = tiny()
    assert nested_grid(model, [1, 3], [8, 48]) == [(1, 8), (1, 48), (3, 8), (3, 48)]
    assert nested_grid(model) == [(3, 48)]
    with pytest.raises(ValueError, match=r"depth must be an int in \[1, 3\]"):
        nested_grid(model, [4], [8])
    with pytest.raises(ValueError, match="must not repeat"):
        nested_grid(model, [1, 1], [8])
    with pytest.raises(ValueError, match="at least one value"):
        nested_grid(model, [], [8])


def test_draws_are_a_function_of_seed_and_batch_index():
    grid = nested_grid(tiny(), [1, 2, 3], [8, 48])
    a, b = SortedTraining(tiny(), grid, samples=4, seed=1), SortedTraining(tiny(), grid, samples=4, seed=1)
    assert [a.draw(i) for i in range(5)] == [b.draw(i) for i in range(5)]
    assert len(a.draw(0)) == 4 and all(key in grid for key in a.draw(0))
    assert len({tuple(a.draw(i)) for i in range(20)}) > 1
    assert SortedTraining(tiny(), grid).samples == len(grid)
    with pytest.raises(ValueError, match="samples must be an int >= 1"):
        SortedTraining(tiny(), grid, samples=0)


def test_the_loss_is_the_mean_of_the_drawn_submodels_and_so_is_the_gradient():
    model = tiny()
    sorted_model = SortedTraining(model, nested_grid(model, [1, 3], [8, 48]), samples=3, seed=2)
    ids = torch.randint(0, 30, (2, 9))
    inputs, labels = ids[:, :-1], ids[:, 1:]
    picks = sorted_model.draw(0)
    loss, count = sorted_model.labelled_loss(inputs, labels)
    assert int(sorted_model.draws) == 1 and int(count) == labels.numel()
    loss.backward()
    together = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected = 0.0
    for depth, width in picks:  # gradient accumulation, one sub-model at a time
        one, _ = labelled_loss(model.submodel(depth, width), inputs, labels)
        (one / len(picks)).backward()
        expected += one.item() / len(picks)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    for g, p in zip(together, model.parameters()):
        torch.testing.assert_close(g, p.grad if p.grad is not None else torch.zeros_like(g), rtol=1e-5, atol=1e-7)


def test_evaluation_sees_the_full_model():
    model = tiny()
    sorted_model = SortedTraining(model, nested_grid(model, [1], [8])).eval()
    ids = torch.randint(0, 30, (2, 9))
    assert sorted_model.labelled_loss(ids[:, :-1], ids[:, 1:])[0].item() == pytest.approx(
        labelled_loss(model, ids[:, :-1], ids[:, 1:])[0].item())
    assert int(sorted_model.draws) == 0


def _fit(folder, resume=False):
    model = tiny()
    sorted_model = SortedTraining(model, nested_grid(model, [1, 2, 3], [8, 48]), samples=2, seed=5)
    ids = torch.randint(0, 30, (600,), generator=torch.Generator().manual_seed(0))
    task = language_modelling_task(ids, 8, 30)
    config = TrainConfig(steps=4, batch_size=4, lr=1e-2, warmup_steps=1, eval_every=2, eval_batch_size=8,
                         progress=False)
    trainer = Trainer(sorted_model, task, task.subset(slice(0, 8)), config, out_dir=folder)
    try:
        trainer.fit(resume=resume)
    finally:
        trainer.close()
    return sorted_model


def test_an_interrupted_sorted_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    straight = _fit(tmp_path / "a")
    real_save = Trainer.save_checkpoint

    def killed_after_the_first_checkpoint(self):
        real_save(self)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", killed_after_the_first_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            _fit(tmp_path / "b")
    resumed = _fit(tmp_path / "b", resume=True)
    assert int(resumed.draws) == int(straight.draws) == 4
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
