"""The speculative decoders by name (recurlab/decoding/methods.py): parsing, tree sizes, dispatch."""

import pytest
import torch

from recurlab.decoding import rsd_c_generate, rsd_s_generate, speculative_generate
from recurlab.decoding.methods import Method, generate_with, method_spec, parse_method, tree_size
from recurlab.models import CausalLM, ModelConfig


def test_parse_method_reads_name_and_shape():
    assert parse_method("chain:4") == Method("chain", (4,))
    assert parse_method("rsd-c:2x2x1x1") == Method("rsd-c", (2, 2, 1, 1))
    assert parse_method("rsd-s:3x4").spec == "rsd-s:3x4"
    assert [parse_method(s).depth for s in ("chain:4", "rsd-c:2x2x1", "rsd-s:3x5")] == [4, 3, 5]


@pytest.mark.parametrize("spec, message", [("beam:2", "unknown decoding method 'beam'"), ("chain:two", "integers"),
                                           ("chain:2x2", "one number"), ("rsd-s:3", "beam width x depth"),
                                           ("rsd-c:2x0", ">= 1"), ("chain", "integers")])
def test_parse_method_names_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_method(spec)


def test_tree_size_counts_nodes_leaves_and_positions():
    assert tree_size(parse_method("chain:4")) == {"nodes": 4, "leaves": 1, "positions": 5}
    assert tree_size(parse_method("rsd-c:2x2x1x1")) == {"nodes": 2 + 4 + 4 + 4, "leaves": 4, "positions": 20}
    assert tree_size(parse_method("rsd-c:3")) == {"nodes": 3, "leaves": 3, "positions": 6}
    assert tree_size(parse_method("rsd-s:3x4")) == {"nodes": 12, "leaves": 3, "positions": 15}


def test_method_spec_is_the_cli_reading_of_draft_len_and_branching():
    assert method_spec("chain", 4, 2) == "chain:4"
    assert method_spec("rsd-c", 3, 2) == "rsd-c:2x2x2"
    assert method_spec("rsd-s", 4, 3) == "rsd-s:3x4"
    with pytest.raises(ValueError, match="--draft-len"):
        method_spec("chain", 0, 2)
    with pytest.raises(ValueError, match="unknown decoding method"):
        method_spec("lud", 4, 2)


def test_generate_with_runs_the_named_method_with_the_same_draws():
    torch.manual_seed(0)
    target = CausalLM(ModelConfig(vocab_size=8, d_model=16, n_layers=1, mixer="gla")).double().eval()
    draft = CausalLM(ModelConfig(vocab_size=8, d_model=16, n_layers=1, mixer="mingru")).double().eval()
    prompt = torch.tensor([[1, 2, 3]])
    direct = {"chain:3": lambda g: speculative_generate(target, draft, prompt, 10, draft_len=3, generator=g),
              "rsd-c:2x1": lambda g: rsd_c_generate(target, draft, prompt, 10, branching=(2, 1), generator=g),
              "rsd-s:2x3": lambda g: rsd_s_generate(target, draft, prompt, 10, beam_width=2, depth=3, generator=g)}
    for spec, run in direct.items():
        ids, stats = generate_with(spec, target, draft, prompt, 10, generator=torch.Generator().manual_seed(5))
        expected, expected_stats = run(torch.Generator().manual_seed(5))
        assert torch.equal(ids, expected) and stats == expected_stats, spec
        assert stats.target_reruns <= stats.target_calls


def test_an_attention_target_rewinds_its_kv_cache_instead_of_re_running():
    torch.manual_seed(0)
    target = CausalLM(ModelConfig(vocab_size=8, d_model=16, n_layers=2, mixer="attention")).double().eval()
    draft = CausalLM(ModelConfig(vocab_size=8, d_model=16, n_layers=1, mixer="mingru")).double().eval()
    prompt = torch.tensor([[1, 2, 3]])
    for spec in ("chain:3", "rsd-c:2x2", "rsd-s:2x3"):
        ids, stats = generate_with(spec, target, draft, prompt, 24, temperature=0)
        assert torch.equal(ids, target.generate(prompt, 24, temperature=0)), spec  # rolled-back states are right
        partial = sum(1 for a in stats.accepted if a < parse_method(spec).depth)
        assert partial > 0, spec  # random models: some rounds accept part of the draft
        assert (stats.target_reruns, stats.target_rerun_tokens) == (0, 0), spec
        if spec.startswith("chain"):
            assert 0 < stats.target_rewinds <= partial
        else:  # trees are scored with tree attention and the accepted path kept (rewind.keep_path)
            assert stats.target_rewinds == 0
