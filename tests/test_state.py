"""recurlab.state: the base every decoding state shares."""

from dataclasses import FrozenInstanceError, dataclass

import pytest
import torch

from recurlab import ops
from recurlab.state import NoState, State, check_state, tensor_leaves


@dataclass(frozen=True)
class Inner(State):
    h: torch.Tensor
    steps: torch.Tensor


@dataclass(frozen=True)
class Outer(State):
    inner: Inner
    layers: tuple
    position: int = 0
    optional: torch.Tensor | None = None


def example(B=3):
    return Outer(Inner(torch.arange(B * 2.0).view(B, 2), torch.arange(B)),
                 (torch.ones(B, 4, dtype=torch.float64), None), position=7)


def test_select_takes_rows_of_every_leaf_and_keeps_plain_fields():
    state = example()
    picked = state.select([2, 0, 2])
    assert picked.inner.h.tolist() == [[4.0, 5.0], [0.0, 1.0], [4.0, 5.0]]
    assert picked.inner.steps.tolist() == [2, 0, 2] and picked.layers[1] is None and picked.position == 7
    assert picked.batch_size == 3 and state.select(torch.tensor([1])).batch_size == 1
    with pytest.raises(ValueError, match=r"indices must lie in \[0, batch_size=3\)"):
        state.select([3])
    with pytest.raises(ValueError, match="indices must be a 1-D"):
        state.select([[0]])
    with pytest.raises(ValueError, match="indices must be a 1-D"):
        state.select([0.5])


def test_to_converts_floating_leaves_only_and_detach_cuts_the_graph():
    state = example()
    half = state.to(dtype=torch.float16)
    assert half.inner.h.dtype == torch.float16 and half.layers[0].dtype == torch.float16
    assert half.inner.steps.dtype == torch.int64
    x = torch.ones(3, 2, requires_grad=True)
    grad_state = Inner(x * 2, torch.zeros(3))
    assert grad_state.h.requires_grad and not grad_state.detach().h.requires_grad


def test_states_are_frozen_values_and_replace_makes_a_new_one():
    state = example()
    with pytest.raises(FrozenInstanceError):
        state.position = 8
    moved = state.replace(position=8)
    assert moved.position == 8 and state.position == 7 and moved.inner is state.inner


def test_nbytes_leaves_and_the_empty_state():
    state = example()
    assert state.nbytes() == 3 * 2 * 4 + 3 * 8 + 3 * 4 * 8
    assert len(tensor_leaves(state)) == 3
    assert NoState().batch_size is None and NoState().select([0, 1]) == NoState() and NoState().nbytes() == 0
    cache = ops.KVCache().append(torch.zeros(1, 3, 2, 4), torch.zeros(1, 3, 2, 4))
    assert Outer(Inner(torch.zeros(1, 1), torch.zeros(1)), (cache,)).nbytes() == 4 + 4 + cache.nbytes()


def test_check_state_names_the_expected_type():
    assert check_state(None, Inner, "x") is None
    with pytest.raises(ValueError, match=r"state must be a Inner \(as returned by gla's forward"):
        check_state((1, 2), Inner, "gla")
