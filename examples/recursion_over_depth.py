"""Recursion over depth: loop two shared gla blocks, relax them with per-loop LoRA, route tokens
through a Mixture-of-Recursions, and decode each with its state (tiny sizes: runs in seconds).

    python examples/recursion_over_depth.py
"""

import torch

from recurlab.recursion import (DepthLM, MixtureOfRecursions, RecurrentDepth, Recursive, Relaxed, Stack,
                                early_exit_forward, make_block, parallel_generate, sequential_generate)

torch.manual_seed(0)
d, vocab = 64, 256
ids = torch.randint(0, vocab, (2, 32))


def blocks(n, mixer="gla"):
    return [make_block(mixer, d) for _ in range(n)]


models = {
    "stack of 6 blocks": DepthLM(vocab, Stack(blocks(6))),
    "2 blocks looped 3 times (SReT)": DepthLM(vocab, Recursive(blocks(2), n_loops=3, loop_scales=True)),
    "+ per-loop LoRA rank 8": DepthLM(vocab, Relaxed(blocks(2), n_loops=3, rank=8)),
    "Mixture-of-Recursions": DepthLM(vocab, MixtureOfRecursions(blocks(2), 2, router="expert", first=blocks(1),
                                                                last=blocks(1))),
    "recurrent depth (Huginn)": DepthLM(vocab, RecurrentDepth(blocks(1), blocks(1), blocks(1), mean_iterations=4,
                                                                         init_seed=0)),  # s_0 seeded by position
}
for name, model in models.items():
    model.eval()
    logits, state = model(ids[:, :-1])                       # parallel prefill
    step_logits, state = model.step(ids[:, -1], state)       # one decoding step with the carried state
    full, _ = model(ids)
    gap = (step_logits - full[:, -1]).abs().max().item()
    print(f"{name:32s} {model.num_parameters()['total']:>9,} params   step vs forward: {gap:.1e}")

# a Relaxed model converted from a stack (average init + SVD LoRA), and early exit per token
stack = models["stack of 6 blocks"]
relaxed = DepthLM(vocab, Relaxed.from_stack(stack.depth, n_loops=3, rank=8, scheme="average"))
relaxed.embedding.load_state_dict(stack.embedding.state_dict())
_, exit_loops, _ = early_exit_forward(relaxed.eval(), ids, threshold=0.0065)  # untrained: max prob ~ 0.006
print("early-exit loops per token (threshold 0.0065):", exit_loops[0, :12].tolist())

# recurrent depth: the diffusion-forcing sampler against sequential decoding
rd = models["recurrent depth (Huginn)"]
seq, s_stats = sequential_generate(rd, ids[:1, :8], 8, num_iterations=4)
par, p_stats = parallel_generate(rd, ids[:1, :8], 8, num_iterations=4, inner_steps=2, seed=0)
print(f"sequential: {s_stats.core_calls} core calls; parallel sampler: {p_stats.core_calls} core calls; "
      f"{int((seq == par).sum()) - 8}/8 new tokens equal")
