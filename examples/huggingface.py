"""recurlab models in the Hugging Face ecosystem (pip install recurlab[hf]); runs in seconds.

1. A small hybrid (gla + attention) trained for a few seconds on one sentence, saved with its byte tokenizer
   as a transformers folder, loaded back with AutoModelForCausalLM / AutoTokenizer and sampled with
   transformers' generate(): the same tokens as recurlab's own generate.
2. A tiny Llama built by transformers (random weights, offline), saved, and loaded as a recurlab model:
   the logits agree.

    python examples/huggingface.py
"""

import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging

import recurlab.hf  # noqa: F401  (registers model_type "recurlab" with the Auto classes)
from recurlab.hf import RecurlabForCausalLM, hf_tokenizer, load_llama
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import ByteTokenizer

logging.disable_progress_bar()
torch.manual_seed(0)
folder = Path(tempfile.mkdtemp())
TEXT = "In the beginning God created the heaven and the earth. "

# 1. a recurlab model as a transformers model ----------------------------------------------------------------
tokenizer = ByteTokenizer()
model = CausalLM(ModelConfig(vocab_size=256, d_model=32, n_layers=2, mixer=["gla", "attention"],
                             mixer_kwargs={"attention": {"n_heads": 2}}))
ids = tokenizer.encode(TEXT * 4)[None]
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(60):
    logits, _ = model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained 60 steps: loss {loss.item():.3f}")

RecurlabForCausalLM.from_recurlab(model.eval()).save_pretrained(folder / "hybrid")
hf_tokenizer(tokenizer).save_pretrained(folder / "hybrid")   # `recurlab export-hf` does both from a saved model
hf_model = AutoModelForCausalLM.from_pretrained(folder / "hybrid")
hf_tok = AutoTokenizer.from_pretrained(folder / "hybrid")
print(f"loaded {type(hf_model).__name__} with {type(hf_tok).__name__} from {sorted(p.name for p in (folder / 'hybrid').iterdir())}")

prompt = hf_tok("In the beginning", return_tensors="pt")["input_ids"]
ours = model.generate(prompt, 30, temperature=0)
theirs = hf_model.generate(prompt, max_new_tokens=30, do_sample=False)
print(f"transformers generate: {hf_tok.decode(theirs[0])!r}")
print(f"transformers generate == recurlab generate: {torch.equal(ours, theirs)}")

# 2. a Llama checkpoint as a recurlab model ------------------------------------------------------------------
llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2)).double().eval()
llama.save_pretrained(folder / "llama")
ours = load_llama(folder / "llama")
x = torch.randint(0, 64, (2, 16))
with torch.no_grad():
    gap = (ours(x)[0] - llama(x).logits).abs().max().item()
print(f"Llama loaded as recurlab {ours.config.mixers} with {ours.config.mixer_kwargs['attention']['n_kv_heads']} "
      f"key/value heads; max |logits - transformers'| = {gap:.1e} (float64; transformers computes RMSNorm and RoPE "
      f"in float32)")
shutil.rmtree(folder)
