"""RecurlabForCausalLM: transformers' forward, cache, generate(), save_pretrained and Auto classes for every kind
of recurlab model (attention, recurrent mixers, SambaY's hybrid, depth recursion)."""

import pytest
import torch

pytest.importorskip("transformers", reason="the hf extra is part of the test extras")

from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from recurlab.hf import RecurlabCache, RecurlabConfig, RecurlabForCausalLM  # noqa: E402
from recurlab.models import CausalLM  # noqa: E402
from recurlab.train.loss import masked_cross_entropy  # noqa: E402
from tests.hf.common import KINDS, VOCAB, prompt, tiny_config, tiny_model  # noqa: E402


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_greedy_generate_equals_recurlabs_own_generate(kind):
    """transformers' generate() (its greedy loop, our RecurlabCache between calls) gives recurlab's tokens."""
    model = tiny_model(kind)
    ids = prompt()
    expected = model.generate(ids, 12, temperature=0)
    hf = RecurlabForCausalLM.from_recurlab(model)
    got = hf.generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(got, expected)
    assert len(set(expected[:, 5:].flatten().tolist())) > 2  # not a constant continuation: the test can fail


@pytest.mark.parametrize("kind", ["sambay", "recurrent_depth", "attention"])
def test_forward_continues_its_cache(kind):
    """A prompt in three calls (a prefix, one token, the rest) through the returned cache equals one call."""
    hf = RecurlabForCausalLM.from_recurlab(tiny_model(kind))
    ids = prompt(length=9)
    with torch.no_grad():
        whole = hf(ids).logits
        a = hf(ids[:, :4], use_cache=True)
        b = hf(ids[:, 4:5], cache=a.cache)
        c = hf(ids[:, 5:], cache=b.cache)
    assert isinstance(c.cache, RecurlabCache) and c.cache.get_seq_length() == 9
    torch.testing.assert_close(torch.cat([a.logits, b.logits, c.logits], 1), whole, rtol=1e-10, atol=1e-10)


def test_generate_continues_a_returned_cache():
    """generate(..., return_dict_in_generate=True) returns the cache; a second generate() from it continues the
    sequence (transformers feeds only the tokens past the cache's length) as one longer generate() would."""
    hf = RecurlabForCausalLM.from_recurlab(tiny_model("gla"))
    ids = prompt()
    once = hf.generate(ids, max_new_tokens=8, do_sample=False)
    first = hf.generate(ids, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    assert first.cache.get_seq_length() == 5 + 2  # the last generated token is not fed yet
    again = hf.generate(first.sequences, cache=first.cache, max_new_tokens=5, do_sample=False)
    assert torch.equal(again, once)


def test_beam_search_reorders_the_state():
    """Beam search reorders the cache every step (RecurlabCache.reorder_cache -> State.select): the score it reports
    for its best beam is that sequence's log-probability recomputed in one fresh forward (a wrong reorder would
    score tokens with another beam's state), and it is at least greedy decoding's."""
    hf = RecurlabForCausalLM.from_recurlab(tiny_model("mingru"))
    ids = prompt(batch=1)

    def log_prob(seq):
        with torch.no_grad():
            logp = torch.log_softmax(hf(seq).logits[:, 4:-1], -1)
        return logp.gather(-1, seq[:, 5:, None]).sum().item()

    greedy = hf.generate(ids, max_new_tokens=6, do_sample=False)
    beams = hf.generate(ids, max_new_tokens=6, do_sample=False, num_beams=4, length_penalty=0.0,
                        return_dict_in_generate=True, output_scores=True)
    assert not torch.equal(beams.sequences, greedy)  # the beams found another sequence: reordering mattered
    assert beams.sequences_scores.item() == pytest.approx(log_prob(beams.sequences), abs=1e-5)  # float32 scores
    assert log_prob(beams.sequences) >= log_prob(greedy)


def test_loss_is_the_next_token_cross_entropy():
    model = tiny_model("gla")
    hf = RecurlabForCausalLM.from_recurlab(model)
    ids = prompt(length=8)
    labels = ids.clone()
    labels[:, :3] = -100
    out = hf(ids, labels=labels)
    logits, _ = model(ids)
    torch.testing.assert_close(out.loss, masked_cross_entropy(logits[:, :-1], labels[:, 1:]))
    out.loss.backward()
    assert model.embedding.weight.grad is not None  # the wrapper trains the recurlab parameters themselves


@pytest.mark.parametrize("kind, changes", [("sambay", {}), ("recurrent_depth", {}), ("gla", {"tie_embeddings": True}),
                                           ("attention", {"mixer": "baseconv", "mixer_kwargs": {}})],
                         ids=["sambay", "recurrent_depth", "tied_head", "baseconv_buffers"])
def test_save_pretrained_then_auto_model_loads_the_same_model(kind, changes, tmp_path):
    """save_pretrained -> AutoModelForCausalLM.from_pretrained (no trust_remote_code): the same class and config,
    every tensor equal bit for bit and the logits equal (to float rounding: transformers leaves the loaded tensors in
    the file's memory map, whose alignment can change the order of SIMD sums)."""
    hf = RecurlabForCausalLM.from_recurlab(tiny_model(kind, **changes))
    hf.save_pretrained(tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(back) is RecurlabForCausalLM and back.config.recurlab == hf.config.recurlab
    assert back.dtype == torch.float64
    expected = hf.model.state_dict()
    assert sorted(back.model.state_dict()) == sorted(expected)
    for name, tensor in back.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    for name, buffer in back.model.named_buffers():  # non-persistent buffers (baseconv's) are rebuilt, not lost
        assert torch.equal(buffer, dict(hf.model.named_buffers())[name]), name
    ids = prompt()
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, hf(ids).logits, rtol=0, atol=1e-12)


def test_auto_config_knows_model_type_recurlab():
    config = AutoConfig.for_model("recurlab", recurlab=tiny_config("gla").to_dict())
    assert isinstance(config, RecurlabConfig)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (VOCAB, 16, 2)
    model = AutoModelForCausalLM.from_config(config)
    assert isinstance(model, RecurlabForCausalLM) and isinstance(model.model, CausalLM)


def test_config_refuses_derived_fields_that_disagree():
    with pytest.raises(ValueError, match="vocab_size=99 disagrees with the recurlab model config's vocab_size=48"):
        RecurlabConfig(recurlab=tiny_config("gla").to_dict(), vocab_size=99)
    with pytest.raises(ValueError, match="unknown token mixer"):
        RecurlabConfig(recurlab={**tiny_config("gla").to_dict(), "mixer": "nope"})


def test_what_recurlab_models_cannot_do_is_refused():
    hf = RecurlabForCausalLM.from_recurlab(tiny_model("gla"))
    ids = prompt()
    mask = torch.ones_like(ids)
    mask[0, 0] = 0
    with pytest.raises(ValueError, match="attention_mask has zeros"):
        hf(ids, attention_mask=mask)
    with pytest.raises(ValueError, match="attention_mask has zeros"):
        hf.generate(ids, attention_mask=mask, max_new_tokens=2)
    hf(ids, attention_mask=torch.ones_like(ids))  # an all-ones mask is what generate() passes: fine
    with pytest.raises(ValueError, match="inputs_embeds is not supported"):
        hf(inputs_embeds=torch.zeros(2, 5, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="takes no argument"):
        hf(ids, position_ids=torch.arange(5))
    with pytest.raises(ValueError, match="cannot drop tokens"):
        hf(ids, use_cache=True).cache.crop(1)
    with pytest.raises(ValueError, match="cache must be a RecurlabCache"):
        hf(ids, cache=object())
