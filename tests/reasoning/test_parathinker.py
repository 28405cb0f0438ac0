"""ParaThinker's layout, path embeddings and parallel decoding, on a hand-checked tiny example and on every kind
of state (attention KV cache, recurrent state, the SambaY hybrid)."""

import pytest
import torch

from recurlab.models import CausalLM, ModelConfig
from recurlab.reasoning import Markers, ParaThinker, layout, sft_examples, sft_loss, think
from recurlab.tasks.base import IGNORE

MARKS = Markers(path_start=10, path_end=11, summary_start=12, end=13)
KINDS = {
    "attention": dict(mixer="attention", mixer_kwargs={"attention": {"n_heads": 2}}),
    "gla": dict(mixer="gla", mixer_kwargs={"gla": {"n_heads": 2}}),
    "sambay": dict(n_layers=4, mixer=["gla", "attention", "gmu", "cross_attention"], memory_layer=0, kv_layer=1,
                   mixer_kwargs={"gla": {"n_heads": 2}, "attention": {"n_heads": 2},
                                 "cross_attention": {"n_heads": 2}}),
}


def tiny(kind: str, max_paths: int = 4) -> ParaThinker:
    torch.manual_seed(0)
    lm = CausalLM(ModelConfig(**{"vocab_size": 16, "d_model": 16, "n_layers": 2, **KINDS[kind]})).double().eval()
    model = ParaThinker(lm, max_paths).double().eval()
    with torch.no_grad():  # make the paths differ (the embeddings start at zero)
        model.path_embedding.weight[1:].normal_(0, 1.0)
    return model


def test_the_layout_of_a_hand_checked_example():
    ex = sft_examples([([1, 2], [[3], [4, 5]], [6])], MARKS, max_paths=4)
    # path 1: 1 2 S 3 E (segments 0 0 1 1 1), labels on 3 and E
    # path 2: 1 2 S 4 5 E (segments 0 0 2 2 2 2), labels on 4 5 E
    # summary: 1 2 S 3 E S 4 5 E U 6 end, labels on 6 and end
    S, E, U, END, X = 10, 11, 12, 13, IGNORE
    assert ex.inputs.tolist() == [[1, 2, S, 3, 0, 0, 0, 0, 0, 0, 0],
                                  [1, 2, S, 4, 5, 0, 0, 0, 0, 0, 0],
                                  [1, 2, S, 3, E, S, 4, 5, E, U, 6]]
    assert ex.segments.tolist() == [[0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0],
                                    [0, 0, 2, 2, 2, 0, 0, 0, 0, 0, 0],
                                    [0, 0, 1, 1, 1, 2, 2, 2, 2, 0, 0]]
    assert ex.labels.tolist() == [[X, X, 3, E, X, X, X, X, X, X, X],
                                  [X, X, 4, 5, E, X, X, X, X, X, X],
                                  [X, X, X, X, X, X, X, X, X, 6, END]]
    assert layout([1], [[3]], MARKS) == ([1, S, 3, E, U], [0, 1, 1, 1, 0])


def test_an_untrained_parathinker_is_the_language_model_it_wraps():
    torch.manual_seed(0)
    lm = CausalLM(ModelConfig(vocab_size=16, d_model=16, n_layers=2, mixer="gla", mixer_kwargs={"gla": {"n_heads": 2}}))
    model = ParaThinker(lm, 4)
    ids = torch.randint(0, 16, (2, 7))
    torch.testing.assert_close(model(ids, torch.randint(0, 5, (2, 7)))[0], lm(ids)[0])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_paths_decoded_as_one_batch_equal_each_path_decoded_alone(kind):
    model = tiny(kind)
    prompt = [1, 2, 3, 4, 5]
    thought = think(model, prompt, 3, MARKS, max_path_tokens=6, max_summary_tokens=4)
    assert len(thought.paths) == 3 and len({tuple(p) for p in thought.paths}) > 1  # the embeddings make them differ
    with torch.no_grad():
        for i, path in enumerate(thought.paths, start=1):  # greedy, alone: prompt (segment 0), then S with segment i
            _, state = model(torch.tensor([prompt]), 0)
            logits, state = model.step(torch.tensor([MARKS.path_start]), i, state)
            alone = []
            for _ in range(6):
                token = int(logits.argmax(-1))
                if token == MARKS.path_end:
                    break
                alone.append(token)
                logits, state = model.step(torch.tensor([token]), i, state)
            assert alone == path, f"path {i}"
        # the summary reads the paths in order through the state: one sequence prompt | S p1 E | ... | U
        tokens, segs = layout(prompt, thought.paths, MARKS)
        logits, _ = model(torch.tensor([tokens]), torch.tensor([segs]))
        assert int(logits[0, -1].argmax()) == (thought.summary + [MARKS.end])[0]
    assert set(thought.seconds) == {"prefill", "paths", "read_paths", "summary"}


def test_sft_learns_path_specific_continuations():
    """Two paths of the same prompt continue differently: only the path embedding can tell them apart."""
    torch.manual_seed(0)
    lm = CausalLM(ModelConfig(vocab_size=16, d_model=16, n_layers=1, mixer="gla", mixer_kwargs={"gla": {"n_heads": 2}}))
    model = ParaThinker(lm, 2)
    ex = sft_examples([([1, 2], [[3, 4], [5, 6]], [7])], MARKS, max_paths=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = sft_loss(model, ex.inputs, ex.segments, ex.labels)
        loss.backward()
        opt.step()
    thought = think(model, [1, 2], 2, MARKS, max_path_tokens=4, max_summary_tokens=3)
    assert thought.paths == [[3, 4], [5, 6]] and thought.summary == [7]
    assert model.path_embedding.weight[1:].abs().sum() > 0
    assert model.path_embedding.weight[0].abs().sum() == 0  # segment 0 stays the wrapped model


def test_bad_arguments_are_named():
    model = tiny("gla", max_paths=2)
    with pytest.raises(ValueError, match=r"n_paths must be an int in \[1, max_paths=2\]"):
        think(model, [1], 3, MARKS)
    with pytest.raises(ValueError, match="prompt must hold at least one token"):
        think(model, [], 1, MARKS)
    with pytest.raises(ValueError, match=r"segments must lie in \[0, max_paths=2\]"):
        model(torch.tensor([[1, 2]]), 3)
    with pytest.raises(ValueError, match="problem 0: needs a non-empty prompt and 1..max_paths=2 paths"):
        sft_examples([([1], [[2], [3], [4]], [5])], MARKS, max_paths=2)
    with pytest.raises(ValueError, match="lm must be a recurlab CausalLM"):
        ParaThinker(torch.nn.Linear(2, 2))
