import math

import pytest
import torch
import torch.nn.functional as F

from recurlab.tasks import IGNORE
from recurlab.train.loss import masked_cross_entropy


def test_only_labelled_positions_count():
    logits = torch.randn(2, 5, 7, dtype=torch.float64)
    labels = torch.randint(0, 7, (2, 5))
    labels[0, :3] = IGNORE
    labels[1, 4] = IGNORE
    mask = labels != IGNORE
    expected = F.cross_entropy(logits[mask].float(), labels[mask], reduction="none")
    assert masked_cross_entropy(logits, labels, "sum") == pytest.approx(expected.sum().item())
    assert masked_cross_entropy(logits, labels) == pytest.approx(expected.mean().item())
    per_position = masked_cross_entropy(logits, labels, "none")
    assert per_position.shape == labels.shape and per_position.dtype == torch.float32
    assert torch.all(per_position[~mask] == 0) and torch.allclose(per_position[mask], expected)


def test_fully_labelled_and_empty_inputs():
    logits, labels = torch.zeros(3, 4), torch.tensor([0, 1, 2])
    assert masked_cross_entropy(logits, labels) == pytest.approx(math.log(4))
    assert math.isnan(masked_cross_entropy(logits, torch.full((3,), IGNORE)).item())
    assert masked_cross_entropy(logits, torch.full((3,), IGNORE), "sum").item() == 0.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="must agree"):
        masked_cross_entropy(torch.zeros(2, 3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        masked_cross_entropy(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), "avg")
