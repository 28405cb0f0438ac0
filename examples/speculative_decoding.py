"""Speculative decoding with a draft model: chain (Leviathan et al. / Chen et al. 2023) and RSD-C draft
trees (Jeon et al. 2024), on a tiny target/draft pair trained for a few seconds (runs in seconds).

Both models learn the same toy language (the next token is the previous one + 1 mod 16 with probability
0.8, otherwise uniform), so the draft often guesses what the target would sample. Every method samples
exactly the target's distribution; what changes is how many tokens each target call yields.

    python examples/speculative_decoding.py
"""

import torch

from recurlab.decoding import rsd_c_generate, speculative_generate
from recurlab.models import CausalLM, ModelConfig

torch.manual_seed(0)
VOCAB = 16


def batch(n=32, length=24):
    """Sequences of the toy language (n, length)."""
    ids = torch.zeros(n, length, dtype=torch.long)
    ids[:, 0] = torch.randint(0, VOCAB, (n,))
    for t in range(1, length):
        jump = torch.rand(n) < 0.2
        ids[:, t] = torch.where(jump, torch.randint(0, VOCAB, (n,)), (ids[:, t - 1] + 1) % VOCAB)
    return ids


def trained(config, steps=150):
    model = CausalLM(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        ids = batch()
        logits, _ = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


target = trained(ModelConfig(vocab_size=VOCAB, d_model=32, n_layers=2, mixer="gla"))
draft = trained(ModelConfig(vocab_size=VOCAB, d_model=16, n_layers=1, mixer="mingru"))
print(f"target: 2-layer gla, {target.num_parameters()['total']:,} params; "
      f"draft: 1-layer mingru, {draft.num_parameters()['total']:,} params")

prompt = torch.tensor([[3, 4, 5]])
for name, rows, run in [("chain, draft_len 4", 1, lambda g: speculative_generate(target, draft, prompt, 256, 4, generator=g)),
                  ("RSD-C, branching (2, 2, 1, 1)", 4,
                   lambda g: rsd_c_generate(target, draft, prompt, 256, (2, 2, 1, 1), generator=g))]:
    ids, stats = run(torch.Generator().manual_seed(0))
    print(f"{name}: {stats.target_calls} target calls for 256 tokens, "
          f"mean accepted per call: {stats.mean_accepted:.2f} (target rows per call: {rows})")

ids, _ = speculative_generate(target, draft, prompt, 16, 4, temperature=0)
print("greedy speculative == greedy:", torch.equal(ids, target.generate(prompt, 16, temperature=0)))
