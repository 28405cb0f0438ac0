"""Faster decoding that keeps the target model's output distribution (docs/decoding.md).

    verify(model, state, tokens)            # score draft tokens in one call; the state after any accepted prefix
    speculative_generate(target, draft, ids, n, draft_len=4)          # chain speculative decoding
    rsd_c_generate(target, draft, ids, n, branching=(2, 2))           # RSD-C: Gumbel-top-k draft tree
    rsd_s_generate(target, draft, ids, n, beam_width=3, depth=2)      # RSD-S: stochastic beam search tree
    lud_generate(lud_model, ids, n, max_parallel=4, beta=0.9)         # Lexical Unit Decoding (docs/lud.md)

Every method decodes one sequence (batch 1) and returns the tokens and a :class:`DecodeStats`.
"""

from .common import DecodeStats, sampling_probs
from .lud import (ALPHA, BETA, LUD_FRACTION, MAX_UNIT, LexicalUnits, LudPass, continuation_bits_per_byte,
                  extend_vocabulary, lud_examples, lud_generate, lud_passes, lud_quality, lud_training_task, mark_units,
                  token_confidence, train_lud, units_from_confidence)
from .rsd import rsd_c_generate, rsd_s_generate
from .speculative import speculative_generate
from .verify import Verification, verify

__all__ = ["DecodeStats", "Verification", "rsd_c_generate", "rsd_s_generate", "sampling_probs", "speculative_generate", "verify"]
__all__ += ["ALPHA", "BETA", "LUD_FRACTION", "MAX_UNIT", "LexicalUnits", "LudPass", "continuation_bits_per_byte",
            "extend_vocabulary", "lud_examples", "lud_generate", "lud_passes", "lud_quality", "lud_training_task",
            "mark_units", "token_confidence", "train_lud", "units_from_confidence"]
