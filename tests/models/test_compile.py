"""torch.compile(fullgraph=True) of a whole CausalLM of recurrent mixers: no graph break, same numbers as eager
(issue 13: the input checks' host reads and the compiled kernel's lock used to break the graph 7 times)."""

import pytest
import torch

from recurlab.models import CausalLM, ModelConfig


@pytest.mark.parametrize("mixer", ["mingru", "gla", "rwkv", "attention"])
def test_a_causal_lm_compiles_as_one_graph_and_matches_eager(mixer):
    torch._dynamo.reset()
    torch.manual_seed(0)
    kwargs = {mixer: {"n_heads": 2}} if mixer in ("gla", "attention") else {}
    model = CausalLM(ModelConfig(vocab_size=32, d_model=16, n_layers=2, mixer=mixer, mixer_kwargs=kwargs))
    ids = torch.randint(0, 32, (2, 12))

    def loss_of(m):
        logits, _ = m(ids)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten())

    explanation = torch._dynamo.explain(model)(ids)
    assert explanation.graph_break_count == 0, [str(b.reason)[:200] for b in explanation.break_reasons]
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    eager_loss = loss_of(model)
    eager_loss.backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compiled_loss = loss_of(compiled)
    compiled_loss.backward()
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, eager_grads[name], rtol=1e-4, atol=1e-6, msg=name)
