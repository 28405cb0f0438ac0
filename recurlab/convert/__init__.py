"""Converting pretrained attention models into gated recurrent ones (Liger, Lan et al. 2025), with LoRA.

- :func:`convert` (``liger.py``): an attention CausalLM -> liger-gla | liger-attention | gla, weights reused;
- :class:`LoRALinear`, :func:`add_lora`, :func:`merge_lora` (``lora.py``): low-rank adapters and their merge;
- :func:`convert_and_finetune` (``finetune.py``): load, convert, LoRA fine-tune through the Trainer, merge,
  save, summarise (``recurlab convert``); :class:`ConvertConfig` / :class:`FinetuneConfig` its settings.

See docs/convert.md.
"""

from __future__ import annotations

from .finetune import ConvertConfig, FinetuneConfig, convert_and_finetune, load_checkpoint
from .liger import TARGETS, convert, converted_config
from .lora import LoRALinear, add_lora, lora_parameters, merge_lora

__all__ = ["ConvertConfig", "FinetuneConfig", "LoRALinear", "TARGETS", "add_lora", "convert", "convert_and_finetune",
           "converted_config", "load_checkpoint", "lora_parameters", "merge_lora"]
