"""Liger conversion (Lan et al. 2025) end to end on a tiny model, in well under a minute on a CPU.

1. Train a tiny attention language model for a few seconds on a few verses (the "pretrained" teacher).
2. Convert it three ways (liger-gla, liger-attention, the gla baseline): the liger variants have exactly
   the teacher's parameters; with a window covering the sequence and only its softmax branch,
   Liger Attention computes the teacher's logits.
3. LoRA-fine-tune the liger-gla model for a few hundred tokens through recurlab's Trainer, merge, save,
   and read the summary (validation bits per byte before and after).

    python examples/convert_to_liger.py
"""

import json
import tempfile
from pathlib import Path

import torch

from recurlab.configs import override
from recurlab.convert import ConvertConfig, convert, convert_and_finetune
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import ByteTokenizer, language_modelling_task
from recurlab.train import TrainConfig, Trainer

torch.manual_seed(0)
folder = Path(tempfile.mkdtemp())
text = "\n".join(["In the beginning God created the heaven and the earth.",
                  "And God said, Let there be light: and there was light.",
                  "And God saw the light, that it was good."] * 60) + "\n"
(folder / "verses.txt").write_text(text)
tokenizer = ByteTokenizer()

# 1. a tiny attention teacher --------------------------------------------------------------------------------
config = ModelConfig(vocab_size=256, d_model=64, n_layers=2, mixer="attention",
                     mixer_kwargs={"attention": {"n_heads": 4, "n_kv_heads": 2}})
teacher = CausalLM(config)
task = language_modelling_task(tokenizer.encode(text), 64, 256)
Trainer(teacher, task, None, TrainConfig(steps=60, batch_size=8, lr=3e-3, progress=False)).fit()
teacher.eval()

# 2. conversions ---------------------------------------------------------------------------------------------
ids = tokenizer.encode("And God said, Let there be light")[None]
for to in ("liger-gla", "liger-attention", "gla"):
    student = convert(teacher, to)
    print(f"{to:16s} parameters {student.num_parameters()['total']:,} (teacher {teacher.num_parameters()['total']:,})")
hybrid = convert(teacher, "liger-attention", window=ids.shape[1])
for block in hybrid.depth.blocks:
    block.mixer.mix_weight = 1.0  # the softmax branch alone
print("softmax branch = teacher:", torch.allclose(hybrid(ids)[0], teacher(ids)[0], atol=1e-5))

# 3. LoRA fine-tuning ----------------------------------------------------------------------------------------
settings = override(ConvertConfig(), ["finetune.tokens=4096", "finetune.seq_len=64", "finetune.eval_sequences=8",
                                      "finetune.lr=3e-3", f"finetune.data.path={folder / 'verses.txt'}"])
summary = convert_and_finetune(teacher, "liger-gla", folder / "liger", settings, tokenizer=tokenizer, progress=False)
print(json.dumps({k: summary[k] for k in ("params_before", "params_after", "lora_params", "finetune_tokens",
                                          "original_val_bits_per_byte", "val_bits_per_byte_before_finetune",
                                          "val_bits_per_byte_after_finetune")}, indent=1))
liger = CausalLM.from_pretrained(folder / "liger" / "model")
print(tokenizer.decode(liger.generate(tokenizer.encode("And God")[None], 30, temperature=0)[0].tolist()))
