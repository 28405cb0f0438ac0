import numpy as np
import pytest
import torch

from recurlab.tasks import IGNORE, MQARConfig, associative_recall, multi_query_associative_recall, selective_copying


def check_mqar_example(inputs, labels, config):
    n, V = config.num_kv_pairs, config.vocab_size
    keys, values = inputs[0 : 2 * n : 2], inputs[1 : 2 * n : 2]
    assert len(set(keys.tolist())) == n and len(set(values.tolist())) == n
    assert ((keys >= 1) & (keys < V // 2)).all() and ((values >= V // 2) & (values < V)).all()
    bound = dict(zip(keys.tolist(), values.tolist()))
    labelled = (labels != IGNORE).nonzero().flatten().tolist()
    assert len(labelled) == n  # exactly one loss position per key
    assert labels[: 2 * n].eq(IGNORE).all()  # nothing to predict inside the context
    queried = []
    for p in labelled:
        assert p >= 2 * n and (p - 2 * n) % 2 == 0  # query slots after the context, every other position
        assert labels[p].item() == bound[inputs[p].item()]  # the value bound earlier to this key
        queried.append(inputs[p].item())
    assert sorted(queried) == sorted(keys.tolist())  # every key queried once
    others = [p for p in range(2 * n, len(inputs)) if p not in labelled]
    assert (inputs[others] == 0).all()


@pytest.mark.parametrize("seq_len,kv", [(64, 4), (128, 8), (256, 16), (512, 64), (16, 4)])
def test_mqar_structure_on_many_seeds(seq_len, kv):
    config = MQARConfig(seq_len=seq_len, num_kv_pairs=kv)
    for seed in range(20):
        task = multi_query_associative_recall(50, config, seed=seed)
        assert task.inputs.shape == task.labels.shape == (50, seq_len) and task.inputs.dtype == torch.int64
        for i in range(0, 50, 7):
            check_mqar_example(task.inputs[i], task.labels[i], config)


def test_mqar_is_deterministic_and_seeds_differ():
    a = multi_query_associative_recall(100, seed=3)
    b = multi_query_associative_recall(100, seed=3)
    c = multi_query_associative_recall(100, seed=4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs)


def test_mqar_query_gaps_follow_the_power_law():
    config = MQARConfig(seq_len=256, num_kv_pairs=16)
    task = multi_query_associative_recall(2000, config, seed=0)
    positions = (task.labels != IGNORE).nonzero()[:, 1]
    slots = (positions - 32) // 2  # 0-based query slot
    # P(slot g) ∝ g^(a-1) with a = 0.01 puts most mass on early slots: median slot ~ 16 (offset ~32 tokens)
    median = slots.float().median().item()
    assert 8 <= median <= 30
    assert (slots < 16).float().mean() > 0.45 and (slots >= 64).float().mean() < 0.3
    # and the empirical frequencies of single-key draws match the law for the first slot
    one = multi_query_associative_recall(20000, MQARConfig(seq_len=256, num_kv_pairs=1), seed=1)
    first = ((one.labels != IGNORE).nonzero()[:, 1] - 2) // 2
    g = np.arange(1, 128)
    p = g ** (0.01 - 1)
    p /= p.sum()
    assert abs((first == 0).float().mean().item() - p[0]) < 0.02


def test_mqar_random_fillers_keep_labels():
    config = MQARConfig(seq_len=64, num_kv_pairs=4, random_non_queries=True)
    task = multi_query_associative_recall(10, config, seed=0)
    assert (task.inputs[:, 8:] != 0).float().mean() > 0.9
    assert (task.labels != IGNORE).sum() == 40


def test_mqar_bad_settings():
    with pytest.raises(ValueError, match="seq_len must be even"):
        multi_query_associative_recall(1, MQARConfig(seq_len=63))
    with pytest.raises(ValueError, match="num_kv_pairs must be in \\[1, seq_len / 4 = 16\\]"):
        multi_query_associative_recall(1, MQARConfig(seq_len=64, num_kv_pairs=17))


def test_associative_recall_structure():
    task = associative_recall(200, seq_len=20, vocab_size=64, seed=0)
    for x, y in zip(task.inputs, task.labels):
        keys, values = x[0:18:2].tolist(), x[1:18:2].tolist()
        assert len(set(keys)) == 9
        assert (y[:-1] == IGNORE).all()
        assert y[-1].item() == values[keys.index(x[-1].item())]


def test_selective_copying_structure():
    task = selective_copying(100, seq_len=32, num_tokens=6, vocab_size=10, seed=0)
    for x, y in zip(task.inputs, task.labels):
        region = x[:26]
        data = region[region >= 2]
        assert len(data) == 6 and (x[26:] == 1).all()
        assert torch.equal(y[25:31], data)
        assert (y[:25] == IGNORE).all() and y[31] == IGNORE
