"""Build units by name, decode with their states, and assemble a hybrid causal LM.

Run: ./run python examples/layers_and_models.py
"""

import torch

from recurlab import layers
from recurlab.models import CausalLM, ModelConfig

torch.manual_seed(0)
B, T, d = 2, 64, 128
x = torch.randn(B, T, d)

# any unit by name; forward over the sequence, or one token at a time with the state
for name in ("mingru", "gla", "rwkv", "attention"):
    mixer = layers.build(name, d)
    y, state = mixer(x)
    y_t, state = mixer.step(torch.randn(B, d), state)
    print(f"{name:<10} {sum(p.numel() for p in mixer.parameters()):>8,} params, output {tuple(y.shape)}")

# a SambaY-style hybrid: sliding-window attention and GLA below, gated memory units above reading
# the GLA layer's memory read-out
config = ModelConfig(vocab_size=256, d_model=d, n_layers=4, mixer=["swa", "gla", "gmu", "gmu"],
                     memory_layer=1, mixer_kwargs={"swa": {"window": 32}})
model = CausalLM(config)
ids = torch.randint(0, 256, (B, T))
logits, state = model(ids)
with torch.no_grad():  # continue the sequence token by token from the carried state
    next_ids = logits[:, -1].argmax(-1)
    for _ in range(5):
        step_logits, state = model.step(next_ids, state)
        next_ids = step_logits.argmax(-1)
print(f"hybrid LM: {model.num_parameters()['total']:,} parameters; config as JSON:\n{config.to_json()}")
