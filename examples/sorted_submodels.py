"""Many models in one: SortedNet's nested sub-models of a small language model (about a minute on 2 cores).

Trains a 2-layer byte-level GLA model on the default corpus twice for the same steps: once as usual, once with
SortedNet (every step averages the gradients of sub-models drawn from a grid of depths x channel-mixer widths).
Then scores every sub-model of both in validation bits per byte: the usual model's prefixes were never trained to
stand alone, SortedNet's were. Finally saves one sub-model as a standalone model. See docs/sorted.md; the
benchmark (`recurlab bench sorted`) adds models trained alone at every size.

    python examples/sorted_submodels.py
"""

import tempfile
from pathlib import Path

import torch

from recurlab.compress.sorted import SortedTraining, nested_grid
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import ByteTokenizer
from recurlab.train import Trainer
from recurlab.train.config import TrainConfig
from recurlab.train.text_finetune import TextFinetune, text_data

torch.set_num_threads(min(2, torch.get_num_threads()))
data = text_data(ByteTokenizer(), TextFinetune(seq_len=64, eval_sequences=64))  # the default corpus, last 5% held out
config = ModelConfig(vocab_size=256, d_model=64, n_layers=2, mixer="gla", channel_mixer="swiglu")
train = TrainConfig(steps=150, batch_size=16, lr=3e-3, warmup_steps=15, eval_every=150, progress=False)

torch.manual_seed(0)
usual = CausalLM(config)
Trainer(usual, data.train, data.val, train).fit()

torch.manual_seed(0)
nested = CausalLM(config)
grid = nested_grid(nested, depths=[1, 2], widths=[44, 176])  # 176 = the swiglu hidden size at d_model 64
Trainer(SortedTraining(nested, grid), data.train, data.val, train).fit()

usual.eval()
nested.eval()
print(f"{'depth':>5} {'width':>5} {'params':>8} {'usual model':>12} {'SortedNet':>10}")
for depth, width in reversed(grid):
    a, b = usual.submodel(depth, width), nested.submodel(depth, width)
    print(f"{depth:>5} {width:>5} {b.num_parameters()['total']:>8,} {data.bits_per_byte(a):>12.3f} "
          f"{data.bits_per_byte(b):>10.3f}")

folder = Path(tempfile.mkdtemp()) / "small"
nested.submodel(depth=1, width=44).save_pretrained(folder)  # a standalone copy of just those tensors
small = CausalLM.from_pretrained(folder)
print(f"saved the depth-1, width-44 sub-model: {small.num_parameters()['total']:,} parameters, "
      f"{data.bits_per_byte(small):.3f} bits per byte after loading")
