"""Tiny attention models and a tiny text for the converter's tests (float64, seconds in total)."""

import torch

from recurlab.models import CausalLM, ModelConfig

VERSES = ["In the beginning God created the heaven and the earth.",
          "And the earth was without form, and void; and darkness was upon the face of the deep.",
          "And God said, Let there be light: and there was light.",
          "And God saw the light, that it was good: and God divided the light from the darkness."]


def tiny_text(repeats: int = 40) -> str:
    """A few verses repeated: a text a tiny model learns in a few steps."""
    return "\n".join(VERSES * repeats) + "\n"


def tiny_attention_model(dtype=torch.float64, **attention) -> CausalLM:
    """A seeded 2-layer byte-level attention LM (d_model 32, 4 query heads, 2 key/value heads by default)."""
    torch.manual_seed(0)
    options = {"n_heads": 4, "n_kv_heads": 2, **attention}
    config = ModelConfig(vocab_size=256, d_model=32, n_layers=2, mixer="attention", mixer_kwargs={"attention": options},
                         channel_kwargs={"hidden_size": 48}, tie_embeddings=False)
    return CausalLM(config).to(dtype).eval()
