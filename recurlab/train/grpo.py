"""Group Relative Policy Optimization (GRPO): reinforcement learning from a reward function, no value model.

Shao et al. 2024, "DeepSeekMath" (arXiv:2402.03300), sec. 4.1; used by MinD (Zeng et al. 2025) to train
multi-turn decoding. For a prompt q, sample a group of G completions o_1..o_G from the current
policy π_old, score them with a reward function r_i = R(q, o_i) and give every token of o_i the
group-normalised advantage

    A_i = (r_i - mean(r)) / (std(r) + eps)               (std over the group, population: divide by G)

Then maximise, for μ gradient steps on the same samples (π_old fixed to the sampling policy),

    J(θ) = 1/G Σ_i 1/|o_i| Σ_t [ min(ρ_it A_i, clip(ρ_it, 1-ε, 1+ε) A_i) - β k3_it ]
    ρ_it = π_θ(o_it | q, o_i,<t) / π_old(o_it | q, o_i,<t)
    k3_it = π_ref/π_θ - log(π_ref/π_θ) - 1               (DeepSeekMath eq. 4: unbiased, >= 0)

with π_ref a frozen reference model. The loss is -J. A completion ends at the first EOS (which
counts as one of its tokens) or after ``max_new_tokens``; tokens after EOS are padding and masked.

Pure pieces, on token log-probabilities (N, T) of the sampled tokens and a mask (N, T):
:func:`group_advantages`, :func:`clipped_objective`, :func:`kl_k3`, :func:`grpo_loss`,
:func:`completion_mask`. :func:`sample_group` and :func:`token_logprobs` connect them to a
:class:`recurlab.models.CausalLM`; :func:`grpo_train` runs the whole loop.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..models.generation import sample_next

# ----------------------------------------------------------------------------- pure functions


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(r - mean(r)) / (std(r) + eps) over the last dim (the group): rewards (..., G) -> (..., G).

    The std is the population one (divides by G), so a group of one, or of equal rewards, gives zeros."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    rewards = rewards.float()
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std(-1, keepdim=True, correction=0)
    return (rewards - mean) / (std + eps)


def completion_mask(tokens: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """1.0 on each completion's tokens up to and including its first EOS, 0.0 after: tokens (N, T) -> (N, T).

    With ``eos_id`` None every token counts."""
    if eos_id is None:
        return torch.ones(tokens.shape, dtype=torch.float32, device=tokens.device)
    is_eos = (tokens == eos_id).long()
    before = is_eos.cumsum(-1) - is_eos  # EOS tokens strictly before each position
    return (before == 0).float()


def _check_shapes(mask: torch.Tensor, **tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.shape != mask.shape:
            raise ValueError(f"{name} must have the mask's shape {tuple(mask.shape)} (N, T), got {tuple(t.shape)}")


def clipped_objective(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                      mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """Per-token min(ρ A, clip(ρ, 1-ε, 1+ε) A), ρ = exp(logp_new - logp_old), 0 where mask is 0.

    logp_new, logp_old, mask (N, T); advantages (N,), one per completion, broadcast over its tokens.
    logp_old carries no gradient (it is detached). Returns (N, T), to be maximised."""
    _check_shapes(mask, logp_new=logp_new, logp_old=logp_old)
    if advantages.shape != mask.shape[:1]:
        raise ValueError(f"advantages must have shape ({mask.shape[0]},) (one per completion), got "
                         f"{tuple(advantages.shape)}")
    if not 0 <= clip_eps < 1:
        raise ValueError(f"clip_eps must be in [0, 1), got {clip_eps}")
    keep = mask != 0
    ratio = torch.exp(torch.where(keep, logp_new - logp_old.detach(), 0.0))  # padding never overflows exp
    adv = advantages.detach()[:, None].to(ratio.dtype)
    objective = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return torch.where(keep, objective * mask, 0.0)


def kl_k3(logp_new: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_θ || π_ref): exp(d) - d - 1 with d = logp_ref - logp_new; 0 where
    mask is 0. logp_new, logp_ref, mask (N, T) -> (N, T), >= 0, zero where the two agree."""
    _check_shapes(mask, logp_new=logp_new, logp_ref=logp_ref)
    keep = mask != 0
    d = torch.where(keep, logp_ref.detach() - logp_new, 0.0)  # padding never overflows exp
    return torch.where(keep, (torch.exp(d) - d - 1) * mask, 0.0)


def sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's mean over its masked tokens: values, mask (N, T) -> (N,) (0 for an empty row)."""
    return torch.where(mask != 0, values * mask, 0.0).sum(-1) / mask.sum(-1).clamp(min=1)


def grpo_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, logp_ref: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.04
              ) -> torch.Tensor:
    """-1/N Σ_i 1/|o_i| Σ_t [clipped objective - β k3]: a scalar. logp_* and mask (N, T), advantages (N,).

    N is the group (or several groups stacked); |o_i| = mask[i].sum(). ``logp_ref`` may be None when beta is 0."""
    per_token = clipped_objective(logp_new, logp_old, advantages, mask, clip_eps)
    if beta != 0:
        if logp_ref is None:
            raise ValueError(f"logp_ref must be given when beta is not 0 (beta={beta})")
        per_token = per_token - beta * kl_k3(logp_new, logp_ref, mask)
    return -sequence_mean(per_token, mask).mean()


# ----------------------------------------------------------------------------- the model side


@torch.no_grad()
def sample_group(model, prompt: torch.Tensor, group_size: int, max_new_tokens: int, temperature: float = 1.0,
                 eos_id: int | None = None, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``group_size`` completions of one prompt (T,): tokens (G, L) and their mask (G, L), L <= max_new_tokens.

    A parallel prefill then one ``model.step`` per token (:func:`recurlab.models.generation.sample_next`);
    decoding stops early once every completion has produced EOS. Positions after a completion's EOS hold
    EOS and are masked out."""
    if prompt.dim() != 1 or prompt.numel() == 0:
        raise ValueError(f"prompt must be a non-empty (T,) tensor of token ids, got shape {tuple(prompt.shape)}")
    was_training = model.training
    model.eval()
    try:
        logits, state = model.prefill(prompt[None, :].expand(group_size, -1).contiguous())
        tokens = []
        done = torch.zeros(group_size, dtype=torch.bool, device=prompt.device)
        for t in range(max_new_tokens):
            token = sample_next(logits, temperature, generator=generator)
            if eos_id is not None:
                token = torch.where(done, torch.full_like(token, eos_id), token)
                done = done | (token == eos_id)
            tokens.append(token)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            logits, state = model.step(token, state)
    finally:
        model.train(was_training)
    completions = torch.stack(tokens, 1)
    return completions, completion_mask(completions, eos_id)


def token_logprobs(model, prompt: torch.Tensor, completions: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log π(o_t | q, o_<t) of each completion token: prompt (T,), completions (G, L) -> (G, L).

    One forward over ``prompt + completion[:-1]``; logits are divided by the sampling temperature (the
    distribution the tokens were drawn from). Gradients flow when grad mode is on."""
    group = completions.shape[0]
    inputs = torch.cat([prompt[None, :].expand(group, -1), completions[:, :-1]], 1)
    logits, _ = model(inputs)
    logits = logits[:, prompt.numel() - 1 :].float()
    if temperature > 0:
        logits = logits / temperature
    return torch.log_softmax(logits, -1).gather(-1, completions[..., None]).squeeze(-1)


# ----------------------------------------------------------------------------- training


@dataclass
class GRPOConfig:
    """Settings of :func:`grpo_train`.

    Attributes:
        group_size: completions G sampled per prompt (>= 2 for a non-zero advantage).
        clip_eps: ε of the clipped ratio.
        beta: weight of the k3 KL penalty to the reference model (0: no reference needed).
        lr: AdamW's constant learning rate (no weight decay).
        steps: sampling rounds; each draws ``prompts_per_step`` prompts and G completions of each.
        max_new_tokens: the longest completion.
        temperature: sampling temperature (> 0; log-probs use the same one).
        mu: policy updates per sampled batch (π_old is the policy that sampled it).
        eos_id: the token that ends a completion (None: every completion has max_new_tokens tokens).
        prompts_per_step: prompts per sampling round (their losses are averaged).
        adv_eps: the eps of :func:`group_advantages`.
        grad_clip: the gradient-norm clip (0: none).
        seed: the prompt order and the sampling.
    """

    group_size: int = 8
    clip_eps: float = 0.2
    beta: float = 0.04
    lr: float = 1e-5
    steps: int = 100
    max_new_tokens: int = 64
    temperature: float = 1.0
    mu: int = 1
    eos_id: int | None = None
    prompts_per_step: int = 1
    adv_eps: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("group_size", "steps", "max_new_tokens", "mu", "prompts_per_step"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GRPOConfig.{name} must be an int >= 1, got {value!r}")
        if not 0 <= self.clip_eps < 1:
            raise ValueError(f"GRPOConfig.clip_eps must be in [0, 1), got {self.clip_eps!r}")
        if self.beta < 0:
            raise ValueError(f"GRPOConfig.beta must be >= 0, got {self.beta!r}")
        if not self.lr > 0:
            raise ValueError(f"GRPOConfig.lr must be > 0, got {self.lr!r}")
        if not self.temperature > 0:
            raise ValueError(f"GRPOConfig.temperature must be > 0 (GRPO samples), got {self.temperature!r}")
        if self.adv_eps < 0 or self.grad_clip < 0:
            raise ValueError(f"GRPOConfig.adv_eps and grad_clip must be >= 0, got {self.adv_eps!r}, {self.grad_clip!r}")


def _as_prompts(prompts) -> list[torch.Tensor]:
    out = []
    for i, p in enumerate(prompts):
        p = torch.as_tensor(p, dtype=torch.long)
        if p.dim() != 1 or p.numel() == 0:
            raise ValueError(f"prompts[{i}] must be a non-empty 1-D sequence of token ids, got shape {tuple(p.shape)}")
        out.append(p)
    if not out:
        raise ValueError("prompts must hold at least one prompt")
    return out


def grpo_train(policy, reference, prompts: Sequence, reward_fn: Callable[[list[int], list[int]], float],
               config: GRPOConfig, progress: bool = True) -> dict[str, list[float]]:
    """Train ``policy`` in place with GRPO; returns the history, one entry per step.

    Args:
        policy: a :class:`recurlab.models.CausalLM` (anything with ``prefill``, ``step`` and ``forward``).
        reference: the frozen reference model of the KL penalty; None: a frozen copy of the policy as it
            is now (not needed when ``config.beta`` is 0).
        prompts: token-id sequences (lists or 1-D tensors, any lengths); each step draws from them.
        reward_fn: ``reward_fn(prompt_ids, completion_ids) -> float``, the completion without its EOS
            and padding.
        progress: show a tqdm bar with the step's mean reward and KL.
    Returns:
        {"reward": mean reward, "kl": mean per-token k3 KL to the reference (sequence means averaged;
        0 when beta is 0), "length": mean completion length (tokens incl. EOS), "loss": the last update's loss}.
    """
    if not isinstance(config, GRPOConfig):
        raise ValueError(f"config must be a GRPOConfig, got {type(config).__name__}")
    prompts = _as_prompts(prompts)
    device = next(policy.parameters()).device
    if config.beta > 0 and reference is None:
        reference = copy.deepcopy(policy)
    if reference is not None:
        reference.eval()
        reference.requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    order_gen = torch.Generator().manual_seed(config.seed)
    history: dict[str, list[float]] = {"reward": [], "kl": [], "length": [], "loss": []}
    was_training = policy.training
    policy.train()
    bar = tqdm(total=config.steps, desc="grpo", unit="step", disable=not progress, leave=False, dynamic_ncols=True)
    for _ in range(config.steps):
        picks = torch.randint(len(prompts), (config.prompts_per_step,), generator=order_gen).tolist()
        batch = []  # per prompt: (prompt, completions, mask, advantages, logp_old, logp_ref)
        rewards_all, lengths = [], []
        for k in picks:
            prompt = prompts[k].to(device)
            completions, mask = sample_group(policy, prompt, config.group_size, config.max_new_tokens,
                                             config.temperature, config.eos_id, generator)
            rewards = []
            for row, m in zip(completions.tolist(), mask.tolist()):
                content = [tok for tok, keep in zip(row, m) if keep and tok != config.eos_id]
                rewards.append(float(reward_fn(prompt.tolist(), content)))
            rewards = torch.tensor(rewards, device=device)
            with torch.no_grad():
                logp_old = token_logprobs(policy, prompt, completions, config.temperature)
                logp_ref = (token_logprobs(reference, prompt, completions, config.temperature)
                            if config.beta > 0 else None)
            batch.append((prompt, completions, mask, group_advantages(rewards, config.adv_eps), logp_old, logp_ref))
            rewards_all.append(rewards)
            lengths.append(mask.sum(-1))
        kl_value = 0.0
        for update in range(config.mu):
            optimizer.zero_grad(set_to_none=True)
            losses, kls = [], []
            for prompt, completions, mask, adv, logp_old, logp_ref in batch:
                logp_new = token_logprobs(policy, prompt, completions, config.temperature)
                losses.append(grpo_loss(logp_new, logp_old, logp_ref, adv, mask, config.clip_eps, config.beta))
                if update == 0 and logp_ref is not None:
                    kls.append(sequence_mean(kl_k3(logp_new.detach(), logp_ref, mask), mask).mean())
            loss = torch.stack(losses).mean()
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            optimizer.step()
            if update == 0 and kls:
                kl_value = float(torch.stack(kls).mean())
        reward = float(torch.cat(rewards_all).mean())
        history["reward"].append(reward)
        history["kl"].append(kl_value)
        history["length"].append(float(torch.cat(lengths).float().mean()))
        history["loss"].append(float(loss.detach()))
        if not math.isfinite(history["loss"][-1]):
            bar.close()
            raise FloatingPointError(f"GRPO loss is {history['loss'][-1]} at step {len(history['loss'])}")
        bar.set_postfix(reward=f"{reward:.3f}", kl=f"{kl_value:.4f}", refresh=False)
        bar.update(1)
    bar.close()
    policy.train(was_training)
    return history
