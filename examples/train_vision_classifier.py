"""Train an image classifier of recurlab.vision, save it, load it back and classify (under a minute).

The same as the command line

    recurlab train --task vision --set model=hornet dataset=relations-square image_size=16 epochs=10 \
        max_train=4000 params_target=300000 --out runs/example-vision

HorNet (g^n Conv) on the synthetic relations-square set: where does the other shape lie relative to the
square? The square's position alone gets about half of the images right; the rest needs both positions.

    python examples/train_vision_classifier.py [OUT]
"""

import sys
import tempfile
from pathlib import Path

import torch

from recurlab.vision.data import load
from recurlab.vision.saved import load_classifier
from recurlab.vision.train import VisionTraining, train_vision

torch.set_num_threads(min(2, torch.get_num_threads()))
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "hornet"
cfg = VisionTraining(model="hornet", dataset="relations-square", image_size=16, epochs=10, max_train=4000,
                     max_test=500, params_target=300_000)
summary = train_vision(cfg, out, progress=False)
print(f"trained {summary['model']} ({summary['params']:,} parameters, {summary['mflops_per_image']:.1f} MFLOPs per "
      f"image) for {summary['epochs']} epochs: test top-1 {100 * summary['top1']:.1f}%")
print("files:", ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))))

classifier = load_classifier(out / "model")  # config.json + model.safetensors, checked against their digest
test = load("relations-square", "test", n=8, size=16)
predicted = classifier.predict(test.images)  # raw images in [0, 1]: the saved normalisation is applied
names = classifier.classes
print("predicted:", [names[i] for i in predicted.tolist()])
print("true:     ", [names[i] for i in test.labels.tolist()])
