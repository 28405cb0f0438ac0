"""Verify k draft tokens, accept j: the state equals the state after running the j tokens directly, for every
registered token mixer in every depth module (and SambaY's layout), with the tiny models of the depth contract."""

import pytest
import torch

from recurlab.decoding import verify
from tests.models.test_depth_contract import CASES, route_about_half, tiny_model

K = 3


# depth modules whose state is one KV cache per block application (BlockStates): attention rewinds
KV_DEPTHS = ("stack", "recursive", "relaxed", "rmoe")


def prefix_capable(depth: str, mixer: str) -> bool:
    from recurlab import layers

    return depth == "stack" and mixer in layers.names("token") and layers.info(mixer).cls.prefix_states


@pytest.mark.parametrize("rewind", [True, False], ids=["auto", "rerun"])
@pytest.mark.parametrize("depth,mixer", CASES)
def test_verify_k_accept_j_equals_running_j_tokens(depth, mixer, rewind):
    """auto: rewind KV caches and read kept prefix states where the model allows; rerun: always re-run."""
    model = tiny_model(depth, mixer)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 16, (1, 3 + K), generator=g)
    context, drafts = ids[:, :3], ids[:, 3:]
    route_about_half(model, torch.randint(0, 16, (2, 9), generator=g))
    probe = torch.tensor([5])
    with torch.no_grad():
        _, state = model(context)
        before, _ = model.step(probe, state)
        v = verify(model, state, drafts, rewind=rewind, prefix_states=rewind)
        full, _ = model(ids)
        torch.testing.assert_close(v.logits, full[:, 3:], rtol=1e-9, atol=1e-9)
        for j in range(K + 1):
            _, direct = model(ids[:, :3 + j])
            expected, _ = model.step(probe, direct)
            kept = v.state_after(j)
            got, _ = model.step(probe, kept)
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
            # a second continuation of the same (rewound) state: the first must not have written into it
            got2, _ = model.step(probe, model.step(torch.tensor([7]), kept)[1])
            expected2, _ = model.step(probe, model.step(torch.tensor([7]), direct)[1])
            torch.testing.assert_close(got2, expected2, rtol=1e-9, atol=1e-9)
        after, _ = model.step(probe, state)
        end_again, _ = model.step(probe, v.end_state)
    torch.testing.assert_close(after, before, rtol=0, atol=0)  # the kept state was not written into
    torch.testing.assert_close(end_again, model.step(probe, model(ids)[1])[0], rtol=1e-9, atol=1e-9)  # nor the end state
    if rewind and prefix_capable(depth, mixer):
        assert (v.rerun_tokens, v.reruns, v.rewound, v.from_prefix) == (0, 0, 0, K - 1)  # j = 1 .. K-1 read
    elif rewind and depth in KV_DEPTHS and mixer == "attention":
        assert (v.rerun_tokens, v.reruns, v.rewound) == (0, 0, K - 1)  # j = 1 .. K-1 dropped from the end state
    elif rewind and depth in KV_DEPTHS and mixer == "sliced_attention":
        assert v.reruns + v.rewound == K - 1  # its cache holds one group: a rewind past the group's start re-runs
    else:
        assert v.rerun_tokens == sum(range(1, K)) and v.reruns == K - 1 and v.rewound == v.from_prefix == 0  # re-run


def test_a_stack_of_attention_and_scans_reads_prefix_states_and_rewinds_its_caches():
    """A hybrid plain stack: gla and mingru blocks keep their prefix states, the attention block's cache is rewound
    inside the same read; swa's window cache cannot be, so a stack with it re-runs."""
    from recurlab.models import CausalLM, ModelConfig

    for mixers, prefix in ((["attention", "gla", "mingru"], True), (["swa", "gla"], False)):
        torch.manual_seed(0)
        window = {"mixer_kwargs": {"swa": {"window": 2}}} if "swa" in mixers else {}
        model = CausalLM(ModelConfig(vocab_size=16, d_model=16, n_layers=len(mixers), mixer=mixers,
                                     **window)).double().eval()
        ids = torch.randint(0, 16, (1, 7), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            _, state = model(ids[:, :3])
            v = verify(model, state, ids[:, 3:])
            for j in range(5):
                expected, _ = model.step(torch.tensor([5]), model(ids[:, :3 + j])[1])
                got, _ = model.step(torch.tensor([5]), v.state_after(j))
                torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
        assert (v.from_prefix, v.reruns) == ((3, 0) if prefix else (0, 3)), mixers


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_paths_share_the_state_and_each_row_continues_it(mixer):
    model = tiny_model("stack", mixer)
    paths = torch.tensor([[3, 1, 4], [3, 1, 5], [3, 2, 2]])
    with torch.no_grad():
        _, state = model(torch.tensor([[7, 7]]))
        v = verify(model, state, paths)
        for r in range(3):
            full, _ = model(torch.cat([torch.tensor([[7, 7]]), paths[r:r + 1]], 1))
            torch.testing.assert_close(v.logits[r], full[0, 2:], rtol=1e-9, atol=1e-9)
            for m in (2, 3):
                _, direct = model(torch.cat([torch.tensor([[7, 7]]), paths[r:r + 1, :m]], 1))
                got, _ = model.step(torch.tensor([0]), v.state_after(m, row=r))
                expected, _ = model.step(torch.tensor([0]), direct)
                torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_bad_arguments_are_refused():
    model = tiny_model("stack", "gla")
    with torch.no_grad():
        _, state = model(torch.tensor([[1, 2], [3, 4]]))
        with pytest.raises(ValueError, match="batch 1"):
            verify(model, state, torch.tensor([[1]]))
        v = verify(model, state.select([0]), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match=r"m must lie in \[0, 2\]"):
        v.state_after(3)
