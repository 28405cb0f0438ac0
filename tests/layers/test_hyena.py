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


def test_the_filter_constants_follow_the_dtype_and_device_and_hold_no_weight():
    """features and window are kept per (dtype, device); a dtype change recomputes them at that precision."""
    import math

    from recurlab.layers.hyena import ImplicitFilter

    f = ImplicitFilter(4, 7, order=4)
    features, window = f.constants()
    assert features.dtype == window.dtype == torch.float32 and f.constants()[1] is window  # kept
    f.double()
    features64, window64 = f.constants()
    assert window64.dtype == torch.float64 and window64 is not window
    lag = 3  # t̂ = lag / (l_max - 1), δ of the last channel = the fast decay
    expected = math.exp(-lag / 6 * abs(math.log(1e-2) / 0.3))
    assert window64[lag, -1].item() == expected  # exact in float64: computed there, not cast up from float32
    assert not any(t.requires_grad for t in (features64, window64))
