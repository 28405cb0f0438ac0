"""The common shape of a supervised sequence task."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100  # label of positions with nothing to predict (torch's cross-entropy ignore_index)


@dataclass
class SequenceTask:
    """inputs (N, L) int64 token ids; labels (N, L) int64, IGNORE where unlabelled; vocab_size."""

    inputs: torch.Tensor
    labels: torch.Tensor
    vocab_size: int

    def __post_init__(self):
        if self.inputs.shape != self.labels.shape or self.inputs.dim() != 2:
            raise ValueError(f"inputs and labels must both be (N, L), got {tuple(self.inputs.shape)} and {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def seq_len(self) -> int:
        return self.inputs.shape[1]

    def subset(self, index) -> "SequenceTask":
        return SequenceTask(self.inputs[index], self.labels[index], self.vocab_size)
