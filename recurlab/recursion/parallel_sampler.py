"""The diffusion-forcing parallel sampler for recurrent-depth models, and its sequential baseline.

Geiping, Yang & Su 2025, "Efficient Parallel Samplers for Recurrent-Depth Models and Their
Connection to Diffusion Language Models" (arXiv 2510.14961; the sampler is
``generate_diffusion_style`` in seal-rg/recurrent-pretraining). Sequential decoding runs all r
core iterations of token n before token n+1 can start. The sampler instead advances "diagonally":
every model forward pass (outer step) runs a few core iterations on a *window* of not yet frozen
positions at once and decodes a new draft token at each of them, so one new position enters per
forward pass while the latents of the earlier ones keep being refined.

One outer step, on the window of positions [F-1, F-1+W) (F = number of frozen tokens; the input
token of position F-1 is frozen, the others are drafts):

1. noise:    s_p <- (1 - β_p) s_p + β_p ε,  β_p = ρ / (1 + c_p),  ε ~ s_0's distribution,
             c_p = core iterations position p has had so far, ρ = ``noise_mixing`` (0.5);
2. prelude:  e = P(x_window) from the committed prelude states; where a position already had an
             embedding in the previous outer step it is smoothed, e <- (1 - λ) e + λ e_prev
             (λ = ``embed_ema``, 0.1: the official code's default, not described in the notes);
3. core:     ``inner_steps`` iterations s <- N_c(core(A([s; e]))) on the whole window (c_p += 4);
4. decode:   coda + head at every window position; the draft of position p+1 is resampled from
             position p (greedy at temperature 0);
5. freeze:   δ_p = ||s_p - s_p'|| / ||s_p||, s_p' the latent after the previous outer step (or the
             initial latent for a position new in it). Position p is *done* when δ_p < ``threshold``
             (0.03) or c_p >= ``max_iterations``; every position up to the last done one is committed
             and its prediction (the token after it) becomes frozen;
6. grow:     one new position with a fresh s_0 is appended (its input is the last draft), unless
             the window already holds ``max_window`` (128) positions.

Mixer states. The committed (frozen) prefix keeps one state per prelude block, per coda block, and
per (inner step j, core block l) *slot*: the window's j-th core iteration of every outer step
continues slot j, like the official sampler whose KV cache is indexed by the block counter that
restarts at every outer step. After the prefill (a normal forward with r = ``num_iterations``),
slot j starts from iteration r - inner_steps + j of the prompt (the last, most refined iterations;
Huginn's default cache instead shares the latest entry of every core layer over all iterations).
Each outer step recomputes the window from the committed states (states are values, so the window's
blocks extend them without changing them: attention the cache up to the frozen point + the window;
recurrent mixers the window run from the frozen state); when
positions are committed, their block inputs recorded during the step are run once more from the
committed states to extend them (counted in the stats as ``commit_block_applications``).

Relation to sequential decoding: with ``max_window=1`` and ``inner_steps = num_iterations`` and no
noise, every outer step is one sequential decoding step (slot j = iteration j), so greedy output is
identical (tested). In general the sampler is not exact: a position's early iterations ran with
drafts and unconverged latents to its left. How often it agrees with sequential greedy decoding
is measured in the tests and reported in docs/recursion/recurrent_depth.md.

Differences from the official sampler (documented choices):

- the position whose latent converged commits *its own prediction* (the token after it); the
  official code freezes only that position's input token and keeps it in the window one step more;
- ``max_iterations`` forces a position to be done (the official latent-diff rule has no cap);
- the noise scale counts the iterations each position actually had (the official counter credits
  the first generated position with the prefill's r although its latent starts fresh);
- the embedding EMA applies only where a previous embedding exists (the official code also scales
  the newest position's embedding by 1 - λ);
- batch size 1 only (as the official code); headway (positions added per step) is 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..models import CausalLM
from ..models.generation import generate, sample_next
from .recurrent_depth import RecurrentDepth, RecurrentDepthState


@dataclass
class SamplerStats:
    """Cost of one generation call.

    Attributes:
        new_tokens: tokens generated.
        forward_passes: model forward passes: 1 prefill + one per outer step (parallel) or per token
            after the first (sequential).
        core_calls: calls of the core after the prefill, each over all positions it advances at
            once: r per token (sequential), ``inner_steps`` per outer step (parallel). On a device
            with spare parallelism this, not ``core_iterations``, sets the decoding latency.
        core_iterations: core iterations applied to single positions after the prefill (a window
            of W positions iterated 4 times counts 4W).
        prefill_core_iterations: prompt length x iteration count of the prefill.
        commit_block_applications: block applications spent re-running committed positions to
            extend the frozen states (parallel sampler only).
        wall_time_s: seconds, prefill included.
    """

    new_tokens: int
    forward_passes: int
    core_calls: int
    core_iterations: int
    prefill_core_iterations: int
    commit_block_applications: int
    wall_time_s: float


def _check_model(model) -> RecurrentDepth:
    if not isinstance(model, CausalLM) or not isinstance(model.depth, RecurrentDepth):
        raise ValueError(f"model must be a CausalLM whose depth is recurrent_depth, got {type(model).__name__}"
                         f"{'' if not isinstance(model, CausalLM) else ' with ' + type(model.depth).__name__}")
    return model.depth


def _check_prompt(prompt, vocab_size):
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.shape[0] != 1 or prompt.shape[1] < 1 \
            or prompt.dtype not in (torch.int32, torch.int64):
        got = f"{tuple(prompt.shape)} {prompt.dtype}" if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise ValueError(f"prompt must be an int64 tensor of shape (1, T) with T >= 1 (batch size 1), got {got}")
    if int(prompt.min()) < 0 or int(prompt.max()) >= vocab_size:
        raise ValueError(f"prompt ids must lie in [0, vocab_size={vocab_size})")


@torch.no_grad()
def parallel_generate(model: CausalLM, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                      threshold: float = 0.03, inner_steps: int = 4, max_window: int = 128,
                      max_iterations: int | None = None, num_iterations: int | None = None,
                      noise_mixing: float = 0.5, embed_ema: float = 0.1, seed: int | None = None
                      ) -> tuple[torch.Tensor, SamplerStats]:
    """Generate with the diffusion-forcing sampler (see the module docstring for the algorithm).

    Args:
        model: a :class:`recurlab.models.CausalLM` whose depth is a :class:`RecurrentDepth`.
        prompt: (1, T) token ids.
        max_new_tokens: number of tokens to generate (>= 0).
        temperature: 0 for greedy decoding, else sampling from softmax(logits / temperature).
        threshold: a position is done when ||s_t - s_{t-1}|| / ||s_t|| < threshold (0: never early).
        inner_steps: core iterations per outer step (1 <= inner_steps <= num_iterations).
        max_window: the most positions refined at once.
        max_iterations: a position is done at the latest after this many core iterations
            (default: ``num_iterations``, the compute sequential decoding spends per token).
        num_iterations: the prefill's iteration count (default: ``model.depth.num_iterations``).
        noise_mixing: ρ of the noise schedule β_p = ρ / (1 + c_p) (0: no noise).
        embed_ema: λ of the embedding smoothing (0: none).
        seed: seeds the sampler's noise, fresh latents (unless the depth has ``init_seed``) and
            sampling; None uses the global RNG.

    Returns:
        tokens (1, T + max_new_tokens) and :class:`SamplerStats`.
    """
    depth = _check_model(model)
    _check_prompt(prompt, model.config.vocab_size)
    r = depth.num_iterations if num_iterations is None else depth._check_iterations(num_iterations)
    max_iterations = r if max_iterations is None else max_iterations
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature!r}")
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    if not isinstance(inner_steps, int) or not 1 <= inner_steps <= r:
        raise ValueError(f"inner_steps must be an int in [1, num_iterations={r}], got {inner_steps!r}")
    if not isinstance(max_window, int) or max_window < 1:
        raise ValueError(f"max_window must be an int >= 1, got {max_window!r}")
    if not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations must be an int >= 1, got {max_iterations!r}")
    if not 0 <= noise_mixing <= 1:
        raise ValueError(f"noise_mixing must be in [0, 1], got {noise_mixing!r}")
    if not 0 <= embed_ema < 1:
        raise ValueError(f"embed_ema must be in [0, 1), got {embed_ema!r}")

    was_training = model.training
    model.eval()
    try:
        return _diffusion_forcing(model, depth, prompt, max_new_tokens, temperature, threshold, inner_steps,
                                  max_window, max_iterations, r, noise_mixing, embed_ema, seed)
    finally:
        model.train(was_training)


def _diffusion_forcing(model, depth, prompt, max_new_tokens, temperature, threshold, inner_steps, max_window,
                       max_iterations, r, noise_mixing, embed_ema, seed):
    start_time = time.perf_counter()
    T = prompt.shape[1]
    device = prompt.device
    dtype = model.embedding.weight.dtype
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    n_blocks = len(depth.prelude) + inner_steps * len(depth.core) + len(depth.coda)

    def fresh_latent(start: int, length: int) -> torch.Tensor:
        """s_0 for new positions: the depth's own (deterministic when it has init_seed), else seeded here."""
        if generator is None or depth.init_seed is not None:
            return depth.initial_latent(1, start, length, device, dtype)
        std = depth.init_std if depth.test_init_std is None else float(depth.test_init_std)
        s = torch.zeros(1, length, depth.d_model, device=device, dtype=dtype)
        return torch.nn.init.trunc_normal_(s, 0.0, std, -3 * std, 3 * std, generator=generator) if std else s

    def noise_like(length: int) -> torch.Tensor:
        std = depth.init_std if depth.test_init_std is None else float(depth.test_init_std)
        eps = torch.zeros(1, length, depth.d_model, device=device, dtype=dtype)
        return torch.nn.init.trunc_normal_(eps, 0.0, std, -3 * std, 3 * std, generator=generator) if std else eps

    # prefill: a normal forward with r iterations gives the prompt's states and the first token
    if seed is None:
        logits, state = model(prompt, depth.new_state(r, 1, device, dtype))
    else:  # the prompt's s_0 (drawn by the depth module) is seeded too, without touching the global RNG
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            logits, state = model(prompt, depth.new_state(r, 1, device, dtype))
    state: RecurrentDepthState
    first = sample_next(logits[:, -1], temperature, generator=generator)
    tokens = torch.cat([prompt, first[:, None]], 1)  # frozen tokens, then the window's drafts
    frozen = T + 1
    stats = SamplerStats(new_tokens=max_new_tokens, forward_passes=1, core_calls=0, core_iterations=0,
                         prefill_core_iterations=T * r, commit_block_applications=0, wall_time_s=0.0)
    if max_new_tokens <= 1:
        stats.wall_time_s = time.perf_counter() - start_time
        return tokens[:, : T + max_new_tokens], stats

    committed_prelude = list(state.prelude)
    committed_core = [list(state.core[r - inner_steps + j]) for j in range(inner_steps)]  # slot j
    committed_coda = list(state.coda)
    latents = fresh_latent(T, 1)  # (1, W, d): the window's latents, window = positions [frozen-1, frozen-1+W)
    previous = latents.clone()  # latents after the previous outer step (criterion)
    counts = torch.zeros(1, dtype=torch.long)  # core iterations each window position has had
    old_embeds = None  # (1, W_old, d): the previous step's embeddings of the window's first W_old positions

    while frozen < T + max_new_tokens:
        W = latents.shape[1]
        window_ids = tokens[:, frozen - 1 : frozen - 1 + W]
        # 1. noise, damped by the iterations each position has had
        if noise_mixing > 0:
            beta = (noise_mixing / (1 + counts)).to(device=device, dtype=dtype).view(1, W, 1)
            latents = (1 - beta) * latents + beta * noise_like(W)
        # 2. prelude from the committed states (recording each block's input for the commit)
        inputs_prelude, inputs_core, inputs_coda = [], [[] for _ in range(inner_steps)], []
        prelude_states = list(committed_prelude)  # states are values: the window extends copies of the list
        x = model.embedding(window_ids)
        for i, block in enumerate(depth.prelude):
            inputs_prelude.append(x)
            x, prelude_states[i] = block(x, prelude_states[i])
        e = x
        if embed_ema > 0 and old_embeds is not None and old_embeds.shape[1]:
            n = min(old_embeds.shape[1], W)
            e = e.clone()
            e[:, :n] = (1 - embed_ema) * e[:, :n] + embed_ema * old_embeds[:, :n]
        # 3. inner core iterations on the whole window, slot j continuing the committed slot j
        for j in range(inner_steps):
            core_states = list(committed_core[j])
            h = depth.adapter(torch.cat([latents, e], -1))
            for l, block in enumerate(depth.core):
                inputs_core[j].append(h)
                h, core_states[l] = block(h, core_states[l])
            latents = depth.core_norm(h)
        counts += inner_steps
        stats.core_calls += inner_steps
        stats.core_iterations += inner_steps * W
        # 4. decode every window position; position p's prediction is the draft of position p + 1
        coda_states = list(committed_coda)
        h = latents
        for i, block in enumerate(depth.coda):
            inputs_coda.append(h)
            h, coda_states[i] = block(h, coda_states[i])
        logits = model.readout(h)[0]  # (W, V)
        predictions = sample_next(logits, temperature, generator=generator)  # (W,)
        tokens = torch.cat([tokens[:, :frozen], predictions[None]], 1)
        stats.forward_passes += 1
        # 5. freeze every position up to the last converged (or maxed-out) one
        change = (latents - previous).norm(dim=-1)[0] / latents.norm(dim=-1)[0].clamp_min(1e-12)
        done = (change < threshold) | (counts >= max_iterations)
        n_commit = int(done.nonzero().max()) + 1 if bool(done.any()) else 0
        if n_commit:
            for i, block in enumerate(depth.prelude):
                _, committed_prelude[i] = block(inputs_prelude[i][:, :n_commit], committed_prelude[i])
            for j in range(inner_steps):
                for l, block in enumerate(depth.core):
                    _, committed_core[j][l] = block(inputs_core[j][l][:, :n_commit], committed_core[j][l])
            for i, block in enumerate(depth.coda):
                _, committed_coda[i] = block(inputs_coda[i][:, :n_commit], committed_coda[i])
            stats.commit_block_applications += n_blocks * n_commit
            frozen += n_commit
        latents, counts, e = latents[:, n_commit:], counts[n_commit:], e[:, n_commit:]
        previous = latents.clone()
        old_embeds = e
        # 6. one new position with a fresh latent, its input the last draft
        if latents.shape[1] < max_window:
            new_position = frozen - 1 + latents.shape[1]
            fresh = fresh_latent(new_position, 1)
            latents = torch.cat([latents, fresh], 1)
            previous = torch.cat([previous, fresh], 1)
            counts = torch.cat([counts, counts.new_zeros(1)])
        tokens = tokens[:, : frozen + latents.shape[1] - 1]
    stats.wall_time_s = time.perf_counter() - start_time
    return tokens[:, : T + max_new_tokens], stats


@torch.no_grad()
def sequential_generate(model: CausalLM, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                        num_iterations: int | None = None, seed: int | None = None
                        ) -> tuple[torch.Tensor, SamplerStats]:
    """The baseline: a parallel prefill, then ``model.step`` per token, r = ``num_iterations`` (default
    ``model.depth.num_iterations``) core iterations for every token. Returns tokens (B, T + n) and stats."""
    depth = _check_model(model)
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2:
        raise ValueError(f"prompt must be a tensor of shape (B, T), got "
                         f"{tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__}")
    r = depth.num_iterations if num_iterations is None else depth._check_iterations(num_iterations)
    saved = depth.num_iterations
    depth.num_iterations = r
    start_time = time.perf_counter()
    try:
        tokens = generate(model, prompt, max_new_tokens, temperature, seed=seed)
    finally:
        depth.num_iterations = saved
    steps = max(max_new_tokens - 1, 0)
    stats = SamplerStats(new_tokens=max_new_tokens, forward_passes=1 + steps if max_new_tokens else 0,
                         core_calls=steps * r,
                         core_iterations=steps * r * prompt.shape[0], prefill_core_iterations=prompt.numel() * r,
                         commit_block_applications=0, wall_time_s=time.perf_counter() - start_time)
    return tokens, stats
