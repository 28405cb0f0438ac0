"""Recursion over depth: loop two shared gla blocks, relax them with per-loop LoRA, route tokens
through a Mixture-of-Recursions, and decode each with its state (tiny sizes: runs in seconds).

Every model is the one ``CausalLM``; what differs is its depth module, picked by name in the
ModelConfig (``depth=...``, with its arguments in ``depth_kwargs``).

    python examples/recursion_over_depth.py
"""

import torch

from recurlab.models import CausalLM, ModelConfig
from recurlab.recursion import early_exit_forward, parallel_generate, relax, sequential_generate

torch.manual_seed(0)
d, vocab = 64, 256
ids = torch.randint(0, vocab, (2, 32))


def model(n_layers, depth="stack", **depth_kwargs):
    """A CausalLM of n_layers distinct gla blocks, used by the depth module ``depth``."""
    return CausalLM(ModelConfig(vocab_size=vocab, d_model=d, n_layers=n_layers, mixer="gla", depth=depth,
                                depth_kwargs=depth_kwargs))


models = {
    "stack of 6 blocks": model(6),
    "2 blocks looped 3 times (SReT)": model(2, "recursive", n_loops=3, loop_scales=True),
    "+ per-loop LoRA rank 8": model(2, "relaxed", n_loops=3, rank=8),
    "Mixture-of-Recursions": model(4, "mor", n_recursions=2, router="expert", first=1, last=1),  # 1 + 2 shared + 1
    "recurrent depth (Huginn)": model(3, "recurrent_depth", prelude=1, coda=1, mean_iterations=4,
                                      init_seed=0),  # s_0 seeded by position
}
for name, lm in models.items():
    lm.eval()
    logits, state = lm(ids[:, :-1])                      # parallel prefill
    step_logits, state = lm.step(ids[:, -1], state)      # one decoding step with the carried state
    full, _ = lm(ids)
    gap = (step_logits - full[:, -1]).abs().max().item()
    print(f"{name:32s} {lm.num_parameters()['total']:>9,} params   step vs forward: {gap:.1e}")

# a Relaxed model converted from the stack (average init + SVD LoRA: embedding, norm and head copied),
# and early exit per token
relaxed = relax(models["stack of 6 blocks"], n_loops=3, rank=8, scheme="average").eval()
_, exit_loops, _ = early_exit_forward(relaxed, ids, threshold=0.0065)  # untrained: max prob ~ 0.006
print("early-exit loops per token (threshold 0.0065):", exit_loops[0, :12].tolist())

# recurrent depth: the diffusion-forcing sampler against sequential decoding
rd = models["recurrent depth (Huginn)"]
seq, s_stats = sequential_generate(rd, ids[:1, :8], 8, num_iterations=4)
par, p_stats = parallel_generate(rd, ids[:1, :8], 8, num_iterations=4, inner_steps=2, seed=0)
print(f"sequential: {s_stats.core_calls} core calls; parallel sampler: {p_stats.core_calls} core calls; "
      f"{int((seq == par).sum()) - 8}/8 new tokens equal")
