"""Tiny recurlab models of every kind the Hugging Face integration is tested on (float64, seconds in total)."""

import torch

from recurlab.models import CausalLM, ModelConfig

VOCAB = 48

KINDS = {
    "attention": dict(mixer="attention", mixer_kwargs={"attention": {"n_heads": 2, "n_kv_heads": 1}}),
    "gla": dict(mixer="gla"),
    "mingru": dict(mixer="mingru"),
    "rwkv": dict(mixer="rwkv"),
    # the recurrent half of SambaY (lm-samba-gmu's layout, shortened): swa + gla self-decoder, gmu cross-decoder
    "sambay": dict(n_layers=4, mixer=["swa", "gla", "gmu", "gmu"], memory_layer=1,
                   mixer_kwargs={"swa": {"window": 4, "n_heads": 2}}),
    # Huginn's recurrent depth: prelude, a core looped twice, coda; the test-time latent seeded by position
    "recurrent_depth": dict(n_layers=3, mixer="gla", depth="recurrent_depth",
                            depth_kwargs={"mean_iterations": 2, "init_seed": 0}),
    "recursive": dict(mixer="attention", depth="recursive", depth_kwargs={"n_loops": 2},
                      mixer_kwargs={"attention": {"n_heads": 2}}),
}


def tiny_config(kind: str, **changes) -> ModelConfig:
    return ModelConfig(**{"vocab_size": VOCAB, "d_model": 16, "n_layers": 2, **KINDS[kind], **changes})


def tiny_model(kind: str, dtype=torch.float64, **changes) -> CausalLM:
    """A seeded tiny model in eval mode with an untied head (unless changes say otherwise) and zero-initialised
    matrices (rwkv's) randomised: logits differ clearly between tokens, so greedy decoding meets no ties, and a
    random model does not just repeat its last token (which a tied head with large embeddings does)."""
    torch.manual_seed(0)
    model = CausalLM(tiny_config(kind, **{"tie_embeddings": False, **changes})).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.3)
        model.embedding.weight.normal_(0, 1.0)
        if model.head is not None:
            model.head.weight.normal_(0, 1.0)
    return model


def prompt(batch: int = 2, length: int = 5) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))
