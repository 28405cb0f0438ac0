"""Helpers shared by the recursion tests: language models built from a ModelConfig, weights that make
every path matter, the step-vs-forward check and a small lag-copy training run."""

from __future__ import annotations

import torch

from recurlab import layers
from recurlab.models import CausalLM, ModelConfig, make_block
from tests.conftest import assert_rel_close

D = 16
MIXER_KW = {"attention": {"n_heads": 2}, "gla": {"n_heads": 2},
            "sliced_attention": {"n_heads": 2, "group_size": None}}  # ungrouped unless a loop sets groups


def config(depth: str, depth_kwargs: dict | None = None, *, vocab_size: int = 16, d_model: int = D,
           n_layers: int = 1, mixer: str | list[str] = "attention", mixer_kwargs: dict | None = None,
           channel_mixer: str | None = "swiglu", channel_kwargs: dict | None = None) -> ModelConfig:
    """A ModelConfig with the depth module ``depth``; every mixer that takes heads gets n_heads=2 unless
    ``mixer_kwargs`` (per mixer name, as in ModelConfig) says otherwise."""
    names = [mixer] if isinstance(mixer, str) else list(mixer)
    if mixer_kwargs is None:
        mixer_kwargs = {name: {"n_heads": 2} for name in set(names) if layers.accepts(name, "n_heads")}
    return ModelConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, mixer=mixer,
                       mixer_kwargs=mixer_kwargs, channel_mixer=channel_mixer, channel_kwargs=channel_kwargs or {},
                       depth=depth, depth_kwargs=depth_kwargs or {})


def causal_lm(depth: str, depth_kwargs: dict | None = None, **fields) -> CausalLM:
    """``CausalLM(config(depth, depth_kwargs, **fields))``."""
    return CausalLM(config(depth, depth_kwargs, **fields))


def widen(blocks) -> None:
    """Weights large enough that every path matters (gla starts at std 0.02): matrices N(0, (0.6/sqrt(fan_in))²),
    norm gains U(0.5, 1.5). LoRA factors are left alone (Relaxed sets them)."""
    with torch.no_grad():
        for block in blocks:
            for name, p in block.named_parameters():
                if "lora_" in name:
                    continue
                if p.dim() > 1:
                    p.normal_(0, 0.3 / p.shape[1] ** 0.5 * 2)
                elif "norm" in name:
                    p.uniform_(0.5, 1.5)


def make_blocks(mixer: str, k: int, dtype=torch.float64, seed: int = 0) -> list:
    """k distinct blocks with widened weights (see :func:`widen`)."""
    torch.manual_seed(seed)
    blocks = [make_block(mixer, D, mixer_kwargs=MIXER_KW[mixer]).to(dtype) for _ in range(k)]
    widen(blocks)
    return blocks


def check_step_equals_forward(depth, x, tol=1e-10):
    """Whole sequence vs token-by-token step vs prefix forward then steps (depth in eval mode)."""
    y, _ = depth(x)
    state, ys = None, []
    for t in range(x.shape[1]):
        y_t, state = depth.step(x[:, t], state)
        ys.append(y_t)
    assert_rel_close(torch.stack(ys, 1), y, tol, "step loop vs forward")
    cut = x.shape[1] // 2 + 1
    y_a, state = depth(x[:, :cut])
    ys = [y_a]
    for t in range(cut, x.shape[1]):
        y_t, state = depth.step(x[:, t], state)
        ys.append(y_t.unsqueeze(1))
    assert_rel_close(torch.cat(ys, 1), y, tol, "prefix forward then steps")


def train_lag_copy(model_config: ModelConfig, steps=80, seed=0, lag=2, seq_len=12) -> tuple[float, float]:
    """Train CausalLM(model_config) (built after seeding with ``seed``) to output the token seen ``lag`` steps
    back (chance: ln vocab = 2.77 for 16 tokens); returns (mean loss of the first 10 steps, of the last 10)."""
    torch.manual_seed(seed)
    model = CausalLM(model_config)
    vocab = model_config.vocab_size
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        ids = torch.randint(0, vocab, (16, seq_len), generator=g)
        labels = torch.full_like(ids, -100)
        labels[:, lag:] = ids[:, :-lag]
        logits, _ = model(ids)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:10]) / 10, sum(losses[-10:]) / 10
