"""Token trees scored by attention in one call (layers/tree.py) and RSD's use of it (decoding/rsd.py)."""

import pytest
import torch

from recurlab import ops
from recurlab.decoding import rsd_c_generate, rsd_s_generate
from recurlab.decoding.rewind import keep_path
from recurlab.decoding.rsd import scores_trees
from recurlab.layers.tree import TokenTree
from recurlab.models import CausalLM, ModelConfig

TREE = [-1, 0, 0, 1, 1, 2, 3]  # root, two children, grandchildren, one great-grandchild


def model(mixer="attention", **config):
    torch.manual_seed(0)
    kwargs = {"attention": {"n_heads": 2, "n_kv_heads": 1}} if mixer == "attention" else {}
    return CausalLM(ModelConfig(vocab_size=16, d_model=16, n_layers=2, mixer=mixer, mixer_kwargs=kwargs, **config)
                    ).double().eval()


def test_token_tree_depths_visibility_and_paths():
    tree = TokenTree(torch.tensor(TREE))
    assert tree.depths().tolist() == [0, 1, 1, 2, 2, 2, 3]
    assert tree.path(6) == [0, 1, 3, 6] and tree.path(5) == [0, 2, 5]
    seen = tree.visible()
    assert seen[6].nonzero().flatten().tolist() == [0, 1, 3, 6] and seen[2].nonzero().flatten().tolist() == [0, 2]
    with pytest.raises(ValueError, match="earlier token"):
        TokenTree(torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match="1-D int64"):
        TokenTree(torch.tensor([-1.0, 0.0]))


def test_tree_logits_equal_each_path_run_alone_and_the_kept_path_state_too():
    lm = model()
    tokens = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
    tree = TokenTree(torch.tensor(TREE))
    with torch.no_grad():
        _, state = lm(torch.tensor([[1, 2, 3]]))
        logits, end = lm(tokens, state, tree=tree)
        for node in range(len(TREE)):
            path = tree.path(node)
            alone, direct = lm(tokens[:, path], state)
            torch.testing.assert_close(logits[0, node], alone[0, -1], rtol=1e-12, atol=1e-12)
            kept = keep_path(state, end, path)
            torch.testing.assert_close(lm.step(torch.tensor([4]), kept)[0], lm.step(torch.tensor([4]), direct)[0],
                                       rtol=1e-12, atol=1e-12)
        again, _ = lm(tokens, state, tree=tree)
    torch.testing.assert_close(again, logits, rtol=0, atol=0)  # the kept state was not written into


def test_only_full_attention_scores_a_tree():
    tokens, tree = torch.tensor([[5, 6, 7]]), TokenTree(torch.tensor([-1, 0, 0]))
    assert scores_trees(model()) and not scores_trees(model("gla"))
    with pytest.raises(ValueError, match="gla cannot score a token tree"):
        model("gla")(tokens, tree=tree)
    swa = CausalLM(ModelConfig(vocab_size=16, d_model=16, n_layers=1, mixer="swa",
                               mixer_kwargs={"swa": {"n_heads": 2, "window": 4}}))
    assert not scores_trees(swa)
    with pytest.raises(ValueError, match="swa cannot score a token tree"):
        swa(tokens, tree=tree)
    with pytest.raises(ValueError, match="one parent per token"):
        model()(tokens, tree=TokenTree(torch.tensor([-1, 0])))


def test_attention_op_checks_an_explicit_mask():
    q = torch.randn(1, 3, 2, 4)
    with pytest.raises(ValueError, match=r"bool \(T, n_past \+ T\) = \(3, 3\)"):
        ops.attention(q, q, q, mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="no window"):
        ops.attention(q, q, q, window=2, mask=torch.ones(3, 3, dtype=torch.bool))
    causal = torch.ones(3, 3, dtype=torch.bool).tril()
    torch.testing.assert_close(ops.attention(q, q, q, mask=causal)[0], ops.attention(q, q, q)[0])


@pytest.mark.parametrize("method", ["rsd-c", "rsd-s"])
def test_rsd_with_tree_attention_draws_what_path_scoring_draws(method):
    """The target's distributions agree to ~1e-15, so with the same random draws both scorings take the
    same decisions: the tokens (and the exactness the chi-square tests show for path scoring) carry over."""
    target = model()
    torch.manual_seed(1)
    draft = CausalLM(ModelConfig(vocab_size=16, d_model=16, n_layers=1, mixer="mingru")).double().eval()
    run = {"rsd-c": lambda **k: rsd_c_generate(target, draft, torch.tensor([[1, 2]]), 20, branching=(2, 2, 1), **k),
           "rsd-s": lambda **k: rsd_s_generate(target, draft, torch.tensor([[1, 2]]), 20, beam_width=3, depth=3, **k)}
    for seed in range(4):
        tree_ids, tree_stats = run[method](generator=torch.Generator().manual_seed(seed), tree_attention=True)
        path_ids, path_stats = run[method](generator=torch.Generator().manual_seed(seed), tree_attention=False)
        assert torch.equal(tree_ids, path_ids) and tree_stats.accepted == path_stats.accepted
        assert tree_stats.target_positions < path_stats.target_positions
        assert tree_stats.target_reruns == 0
    with pytest.raises(ValueError, match="tree_attention=True needs"):
        rsd_c_generate(draft, draft, torch.tensor([[1, 2]]), 4, tree_attention=True)
