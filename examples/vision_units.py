"""Vision units: HorNet's g^n Conv, parameter-free bottlenecks, the Activator beside a ViT, on offline
data (tiny sizes: runs in seconds).

Prints each backbone's parameters and FLOPs per image, measures g^n Conv's interaction order (the
output is a polynomial of degree order + 1 in the input), and shows what "mixes no tokens" means for
the Activator: shuffling an image's patches leaves its logits unchanged, a ViT's not.

    python examples/vision_units.py
"""

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from recurlab.vision import Activator, BottleneckResNet, GnConv, HorNet, ViT
from recurlab.vision.data import augment, load

torch.manual_seed(0)

# --- data: a synthetic set whose labels are spatial relations between two shapes (generated, no files)
data = load("relations", "train", n=64)
images, labels = augment(data.images, data.labels, "relations", generator=0)  # random crop + label-aware flip
print(f"relations: images {tuple(images.shape)}, classes {list(data.classes)}")

# --- small backbones (sizes not matched here): parameters and FLOPs per 32x32 image
backbones = {
    "HorNet (orders 2-5)": HorNet(in_chans=1, num_classes=4, dims=(16, 32, 64, 128), patch_size=2),
    "bottleneck ResNet, 3x3 conv": BottleneckResNet(num_classes=4, in_chans=1, spatial="conv"),
    "bottleneck ResNet, max-pool": BottleneckResNet(num_classes=4, in_chans=1, spatial="maxpool"),
    "Activator": Activator(image_size=32, patch_size=4, num_classes=4, dim=64, depth=4, in_chans=1),
    "ViT": ViT(image_size=32, patch_size=4, num_classes=4, dim=64, depth=4, n_heads=4, in_chans=1),
}
for name, model in backbones.items():
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        logits = model(images[:1])
    params = sum(p.numel() for p in model.parameters())
    print(f"{name:<30} params {params:>9,}  MFLOPs/image {counter.get_total_flops() / 1e6:8.2f}  "
          f"logits {tuple(logits.shape)}")

# --- g^n Conv's order: with biases at zero, y(c x) = c^(order+1) y(x)
x = torch.randn(1, 16, 8, 8, dtype=torch.float64)
for order in (1, 2, 3, 4):
    gn = GnConv(16, order=order).double()
    for module in gn.modules():
        if getattr(module, "bias", None) is not None:
            torch.nn.init.zeros_(module.bias)
    with torch.no_grad():
        degree = math.log2((gn(2 * x).norm() / gn(x).norm()).item())
    print(f"gnconv order {order}: fitted degree {degree:.3f}")

# --- the Activator mixes no tokens: rearranging whole 4x4 patches does not change its logits
patches = images[:4].unfold(2, 4, 4).unfold(3, 4, 4)                   # (B, 1, 8, 8, 4, 4)
order = torch.randperm(64)
grid = patches.reshape(4, 1, 64, 4, 4)[:, :, order].reshape(4, 1, 8, 8, 4, 4)
shuffled = grid.permute(0, 1, 2, 4, 3, 5).reshape(4, 1, 32, 32)
for name in ("Activator", "ViT"):
    model = backbones[name]
    with torch.no_grad():
        change = (model(shuffled) - model(images[:4])).abs().max().item()
    print(f"{name}: max |logits(shuffled patches) - logits| = {change:.2e}")
# (the ViT's change is small only because its position embedding starts at std 0.02; it is not zero)
