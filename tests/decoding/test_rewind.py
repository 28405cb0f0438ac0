"""Dropping tokens from the end of a state without the model (recurlab/decoding/rewind.py, KVCache.without_last)."""

import pytest
import torch

from recurlab.decoding.rewind import rewind
from recurlab.layers.states import HiddenState
from recurlab.models.depth import BlockStates
from recurlab.ops import KVCache


def cache_of(n, window=None):
    k = torch.arange(n, dtype=torch.float64).view(1, n, 1, 1).expand(1, n, 1, 2).contiguous()
    return KVCache(window).append(k, -k)


def test_without_last_is_the_shorter_cache_and_leaves_the_longer_one_alone():
    full = cache_of(5)
    short = full.without_last(2)
    assert (short.offset, short.length) == (3, 3)
    assert torch.equal(short.keys, full.keys[:, :3]) and torch.equal(short.values, full.values[:, :3])
    grown = short.append(torch.full((1, 1, 1, 2), 9.0, dtype=torch.float64), torch.zeros(1, 1, 1, 2, dtype=torch.float64))
    assert grown.keys[0, 3, 0, 0] == 9 and full.keys[0, 3, 0, 0] == 3  # the longer cache was not overwritten
    assert full.without_last(0).length == 5


def test_without_last_refuses_windows_and_too_many_tokens():
    with pytest.raises(ValueError, match="without a window"):
        cache_of(5, window=3).without_last(1)
    with pytest.raises(ValueError, match=r"count must lie in \[0, 5\]"):
        cache_of(5).without_last(6)


def test_rewind_walks_block_states_and_gives_up_on_recurrent_parts():
    blocks = BlockStates((cache_of(4), cache_of(4)))
    back = rewind(blocks, 1)
    assert [b.length for b in back.blocks] == [3, 3] and [b.length for b in blocks.blocks] == [4, 4]
    assert rewind(blocks, 0) is blocks
    assert rewind(BlockStates((cache_of(4), HiddenState(torch.zeros(1, 2)))), 1) is None  # a hybrid
    assert rewind(HiddenState(torch.zeros(1, 2)), 1) is None
    assert rewind(cache_of(4, window=3), 1) is None
    assert rewind(cache_of(2), 3) is None  # fewer tokens held than asked to drop
    with pytest.raises(ValueError, match="count must be >= 0"):
        rewind(blocks, -1)
