"""Reasoning at decode time: methods that spend generated tokens on thinking, built on any recurlab model.

    parathinker.py   ParaThinker (Wen et al. 2025): P paths decoded in parallel, then a summary over them

Mechanism notes and what differs from the papers: docs/parathinker.md.
"""

from .parathinker import Examples, Markers, ParaThinker, Thought, layout, sft_examples, sft_loss, think

__all__ = ["Examples", "Markers", "ParaThinker", "Thought", "layout", "sft_examples", "sft_loss", "think"]
