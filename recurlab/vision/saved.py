"""Saved image classifiers: ``config.json`` + ``model.safetensors``, the format of recurlab's language models.

    save_classifier(model, spec, "runs/hornet/model", mean=0.13, std=0.31, classes=["0", ..., "9"])
    clf = load_classifier("runs/hornet/model")         # an ImageClassifier, eval mode
    labels = clf.predict(images)                         # images (B, C, H, W) in [0, 1]

``config.json`` holds the format (``recurlab-vision-classifier``, version 1), the model spec of
:mod:`recurlab.vision.zoo` (name and searched widths: it rebuilds the architecture without a search), the input
normalisation the model was trained with, the class names, and the SHA-256 of the weights file; loading checks
all of it (:func:`recurlab.models.pretrained.load_model_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..models.pretrained import check_dtype, load_model_files, read_config, save_model_files
from ..ops import _checks
from .zoo import build_from_spec

FORMAT = "recurlab-vision-classifier"
FORMAT_VERSION = 1


@dataclass
class ImageClassifier:
    """A trained backbone with what it needs to read raw images: inputs are normalised as
    ``(images - mean) / std`` (the training split's statistics) before the model sees them."""

    model: nn.Module
    spec: dict
    mean: float
    std: float
    classes: list[str]

    def check_images(self, images) -> None:
        size, chans = self.spec["image_size"], self.spec["in_chans"]
        _checks.check_tensor("images", images, ranks=(4,), layout="(B, C, H, W)")
        _checks.check_shape("images", images, (images.shape[0], chans, size, size), "(B, C, H, W)")

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, in_chans, image_size, image_size), values in [0, 1] -> logits (B, classes)."""
        self.check_images(images)
        param = next(self.model.parameters())
        x = (images.to(param.device, param.dtype) - self.mean) / self.std
        return self.model(x)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, in_chans, image_size, image_size) in [0, 1] -> class indices (B,) int64."""
        return self.logits(images).argmax(-1)


def save_classifier(model: nn.Module, spec: dict, directory: str | Path, *, mean: float, std: float,
                    classes: list[str]) -> Path:
    """Write ``model`` (built from ``spec``) with its input normalisation and class names to ``directory``."""
    if len(classes) != spec["classes"]:
        raise ValueError(f"classes has {len(classes)} names, the model has {spec['classes']} outputs")
    return save_model_files(model, directory, FORMAT, FORMAT_VERSION,
                            {"spec": spec, "normalisation": {"mean": float(mean), "std": float(std)},
                             "classes": [str(c) for c in classes]})


def load_classifier(directory: str | Path, map_location: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None) -> ImageClassifier:
    """The classifier saved in ``directory`` (eval mode, on ``map_location``, in ``dtype``; None: as saved)."""
    check_dtype(dtype)
    meta = read_config(directory, FORMAT, (FORMAT_VERSION,))
    model = load_model_files(build_from_spec(meta["spec"]), directory, meta, map_location, dtype)
    norm = meta["normalisation"]
    return ImageClassifier(model, meta["spec"], norm["mean"], norm["std"], list(meta["classes"]))
