"""Lexical Unit Decoding (Sun et al. 2024, arXiv:2405.15208) end to end on a tiny byte-level model: about half a
minute on CPU.

1. A 2-layer gla language model (d_model 64) learns the first 280 kB of the default corpus (300 steps).
2. ``train_lud`` marks lexical units with it (tokens predicted with probability > alpha = 0.9, at most 4 per unit),
   gives the vocabulary a placeholder token and fine-tunes a copy on unit examples mixed with plain text (200 steps).
3. ``lud_generate`` decodes held-out prompts: each pass is one model call over the last pass's tokens and 3
   placeholders; parallel tokens are kept while their probability exceeds beta.

Printed: the marking statistics, then per beta the tokens per pass, how much of the output matches the base model's
greedy output, and its bits per byte under the base model. At this scale the placeholders are poorly calibrated:
parallel tokens cost quality fast (docs/lud.md says what was measured and why).

    python examples/lexical_unit_decoding.py          # English (the King James Bible)
    python examples/lexical_unit_decoding.py --code   # Python: the standard library's own source, split by file
"""

import sys

import torch

from recurlab.decoding import lud_generate, lud_quality, train_lud
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.code import stdlib_code
from recurlab.tasks.text import ByteTokenizer, default_corpus, language_modelling_task
from recurlab.train import Trainer, TrainConfig

torch.manual_seed(0)
tokenizer = ByteTokenizer()
if "--code" in sys.argv:  # held-out prompts come from files never trained on
    train_text, held_out_text = stdlib_code(max_bytes=320_000, val_fraction=0.125)
    train_ids, held_out = tokenizer.encode(train_text)[:280_000], tokenizer.encode(held_out_text)
else:
    ids = tokenizer.encode(default_corpus()[:300_000])
    train_ids, held_out = ids[:280_000], ids[280_000:]

base = CausalLM(ModelConfig(vocab_size=256, d_model=64, n_layers=2, mixer="gla"))
Trainer(base, language_modelling_task(train_ids, 64, 256), None,
        TrainConfig(steps=300, batch_size=16, lr=5e-3, warmup_steps=20, eval_every=300, precision="fp32",
                    progress=False)).fit()
base.eval()

model, report = train_lud(base, train_ids[:60_000], steps=200, alpha=0.9, max_unit=4, seq_len=64, batch_size=16,
                          lr=3e-3, progress=False)
marking = report["marking"]
print(f"marked {marking['tokens']:,} tokens: unit lengths {marking['length_histogram']}, "
      f"{marking['fraction_in_units_of_2_or_more']:.1%} of tokens in units of 2 or more")

prompts = [held_out[None, i:i + 32] for i in range(0, 2000, 250)]
print("beta | tokens per pass | token match | prefix match | bits/byte (LUD) | bits/byte (base greedy)")
for beta in (2.0, 0.95, 0.9, 0.7):
    q = lud_quality(base, model, prompts, 48, max_parallel=4, beta=beta)
    print(f"{beta:4} | tokens per pass: {q['tokens_per_pass']:.2f} | {q['token_match']:.3f} | {q['prefix_match']:.3f} | "
          f"{q['lud_bits_per_byte']:.2f} | {q['greedy_bits_per_byte']:.2f}")

prompt = prompts[0]
ids_lud, stats = lud_generate(model, prompt, 48, max_parallel=4, beta=0.9)
print(f"prompt {tokenizer.decode(prompt[0])!r} -> {tokenizer.decode(ids_lud[0, 32:])!r} "
      f"({stats.target_calls} passes for 48 tokens)")
same = torch.equal(lud_generate(model, prompt, 48, beta=2.0)[0], model.generate(prompt, 48, temperature=0))
print("LUD at beta > 1 == greedy decoding of the tuned model:", same)
