"""``forward(x, state, prefix_states=True)``: the state after every prefix, from the parallel form, for every
mixer with the ``prefix_states`` capability (recurlab/layers/base.py); a clear refusal from every other one."""

import pytest
import torch

from recurlab.state import PrefixStates, tensor_leaves
from tests.layers.common import D, TOKEN_MIXERS, make_mixer

KEEPS = [name for name in TOKEN_MIXERS if make_mixer(name).prefix_states]


def test_the_diagonal_scans_and_gated_linear_attention_keep_prefix_states():
    assert KEEPS == sorted(["gla", "liger_gla", "mingru", "minlstm"])


def assert_same_state(a, b):
    pairs = list(zip(tensor_leaves(a), tensor_leaves(b), strict=True))
    assert pairs
    for p, q in pairs:
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", KEEPS)
def test_the_state_after_every_prefix_equals_running_the_prefix(name):
    mixer = make_mixer(name)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, D, dtype=torch.float64, generator=g)
    with torch.no_grad():
        _, start = mixer(torch.randn(2, 4, D, dtype=torch.float64, generator=g))
        y, along = mixer(x, start, prefix_states=True)
        y_plain, end = mixer(x, start)
        assert isinstance(along, PrefixStates) and along.length == 6
        torch.testing.assert_close(y, y_plain, rtol=0, atol=0)  # the same output
        for m in range(7):
            assert_same_state(along.at(m), mixer(x[:, :m], start)[1])
        assert_same_state(along.at(6), end)
        assert along.at(0) is start
        # rows of the prefix states are the rows of the batch
        assert_same_state(along.select([1]).at(3), mixer(x[1:, :3], start.select([1]))[1])


@pytest.mark.parametrize("name", KEEPS)
def test_empty_inputs_give_prefix_states_of_the_given_state(name):
    mixer = make_mixer(name)
    start = mixer.init_state(2, dtype=torch.float64)
    _, along = mixer(torch.zeros(2, 0, D, dtype=torch.float64), start, prefix_states=True)
    assert along.length == 0 and along.at(0) is start
    _, along = mixer(torch.zeros(0, 3, D, dtype=torch.float64), prefix_states=True)
    assert along.length == 3 and all(t.shape[0] == 0 for t in tensor_leaves(along.at(2)))
    with pytest.raises(ValueError, match=r"m must be an int in \[0, 3\]"):
        along.at(4)


@pytest.mark.parametrize("name", [n for n in TOKEN_MIXERS if n not in KEEPS])
def test_other_mixers_refuse_prefix_states_by_name(name):
    mixer = make_mixer(name)
    with pytest.raises(ValueError, match=f"{name} takes no prefix_states="):
        mixer(torch.zeros(1, 2, D, dtype=torch.float64), prefix_states=True)


def test_prefix_states_is_for_the_parallel_form_and_a_bool():
    mixer = make_mixer("gla")
    with pytest.raises(ValueError, match="not step"):
        mixer.step(torch.zeros(1, D, dtype=torch.float64), prefix_states=True)
    with pytest.raises(ValueError, match="True or False"):
        mixer(torch.zeros(1, 2, D, dtype=torch.float64), prefix_states="yes")
