"""Quantise a small trained language model to 1-2 bits per weight: Fairy2i beside real baselines (a few minutes).

Trains a 2-layer byte-level GLA model on the default corpus for a few hundred steps, then for each method
quantises a copy of it (post-training), fine-tunes it straight-through for the same number of tokens, packs it
and prints validation bits per byte at each stage and the size of the saved file. See docs/compress.md; the
command line does the same for any saved model:

    recurlab quantize --method fairy2i --bits 2 CHECKPOINT --out runs/w2 --set finetune.tokens=100000

    python examples/quantize_fairy2i.py
"""

import copy
import tempfile
from pathlib import Path

import torch

from recurlab.compress.quantize import QuantizeConfig, QuantizeFinetune, load_quantized, quantize_and_finetune
from recurlab.train.text_finetune import text_data
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import ByteTokenizer
from recurlab.train import Trainer
from recurlab.train.config import TrainConfig

torch.manual_seed(0)
torch.set_num_threads(min(2, torch.get_num_threads()))
tokenizer = ByteTokenizer()
finetune = QuantizeFinetune(tokens=20_480, seq_len=64, batch_size=16, eval_sequences=64, eval_every=20, lr=1e-3)
data = text_data(tokenizer, finetune)  # the default corpus, the last 5% held out

model = CausalLM(ModelConfig(vocab_size=256, d_model=64, n_layers=2, mixer="gla"))
Trainer(model, data.train, data.val, TrainConfig(steps=200, batch_size=16, lr=3e-3, warmup_steps=20,
                                                   eval_every=200, progress=False)).fit()
model.eval()
print(f"trained {sum(p.numel() for p in model.parameters()):,} parameters: validation "
      f"{data.bits_per_byte(model):.3f} bits per byte")

out = Path(tempfile.mkdtemp())
print(f"{'method':<16} {'after quantising':>16} {'after fine-tuning':>18} {'packed':>8} {'file bytes':>11}")
for method, bits in [("fairy2i", 2), ("rtn", 2), ("fairy2i", 1), ("ternary", None), ("bitnet", None)]:
    s = quantize_and_finetune(copy.deepcopy(model), method, bits, out / f"{method}-{bits}",
                              QuantizeConfig(finetune=finetune), tokenizer=tokenizer, progress=False)
    print(f"{s['quantizer']:<16} {s['val_bits_per_byte_quantized']:>16.3f} {s['val_bits_per_byte_after_finetune']:>18.3f} "
          f"{s['val_bits_per_byte_packed']:>8.3f} {s['bytes_packed_file']:>11,}")

packed = load_quantized(out / "fairy2i-2" / "model")
prompt = torch.tensor([list(b"And God said")])
print("fairy2i-2bit continues 'And God said':",
      repr(bytes(packed.generate(prompt, max_new_tokens=30, temperature=0)[0, 12:].tolist()).decode("utf-8", "replace")))
