"""Hyena's decoding filter is the filter of the current weights: no cached copy can go stale."""

import torch

from tests.layers.common import D, make_mixer


def test_step_uses_weights_changed_in_place_through_data():
    """An update through ``p.data`` bumps no version counter; a cache keyed on versions kept the old filter."""
    mixer = make_mixer("hyena").eval()
    x = torch.randn(2, 6, D, dtype=torch.float64)
    with torch.no_grad():
        state = None
        for t in range(3):  # decode a few tokens with the first weights (filling any cache)
            _, state = mixer.step(x[:, t], state)
        mixer.long_filter.ffn[-1].weight.data.mul_(2.0)
        expected, _ = mixer(x)
        state, steps = None, []
        for t in range(x.shape[1]):
            y_t, state = mixer.step(x[:, t], state)
            steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), expected, rtol=1e-9, atol=1e-9)
