"""Fairy2i's mechanism (recurlab/compress/fairy2i.py): the widely-linear form is exact, the phase quantiser maps to
{±1, ±i} by angle sector with the documented per-tensor scales, and the recursive residual reduces the error."""

import math

import pytest
import torch

from recurlab.compress.fairy2i import (apply_widely_linear, dequantize, fairy2i_dequantize, fairy2i_quantize,
                                       from_widely_linear, phase_codes, phase_quantize, to_widely_linear)


@pytest.mark.parametrize("shape", [(2, 2), (6, 8), (64, 32)])
def test_widely_linear_form_is_the_same_map_to_float64_rounding(shape):
    torch.manual_seed(0)
    weight = torch.randn(*shape, dtype=torch.float64)
    u, w = to_widely_linear(weight)
    assert u.shape == w.shape == (shape[0] // 2, shape[1] // 2) and u.dtype == torch.complex128
    assert (from_widely_linear(u, w) - weight).abs().max() <= 1e-15
    x = torch.randn(5, 3, shape[1], dtype=torch.float64)
    assert (apply_widely_linear(u, w, x) - x @ weight.T).abs().max() < 1e-13


def test_widely_linear_form_of_a_trained_layer():
    """A layer after a few optimizer steps (not a fresh random one): still exact."""
    torch.manual_seed(1)
    layer = torch.nn.Linear(16, 12, bias=False).double()
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(20):
        x = torch.randn(32, 16, dtype=torch.float64)
        loss = (layer(x) - x[:, :12].flip(-1)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    u, w = to_widely_linear(layer.weight.detach())
    x = torch.randn(7, 16, dtype=torch.float64)
    assert (apply_widely_linear(u, w, x) - layer(x)).abs().max() < 1e-13


def test_the_halves_pair_into_complex_numbers_as_the_official_code():
    """A = [[A11, A12], [A21, A22]]: U = ((A11 + A22) + i (A21 - A12)) / 2, W = ((A11 - A22) + i (A12 + A21)) / 2."""
    a11, a12, a21, a22 = 1.0, 2.0, 3.0, 5.0
    u, w = to_widely_linear(torch.tensor([[a11, a12], [a21, a22]], dtype=torch.float64))
    assert u.item() == complex((a11 + a22) / 2, (a21 - a12) / 2)
    assert w.item() == complex((a11 - a22) / 2, (a12 + a21) / 2)


def test_phase_codes_follow_the_angle_sectors():
    angles = torch.tensor([0.0, 0.7, math.pi / 4, 1.0, 3 * math.pi / 4, 3.0, -3.0, -3 * math.pi / 4, -1.0,
                           -math.pi / 4, -0.2], dtype=torch.float64)
    codes = phase_codes(torch.cos(angles), torch.sin(angles))
    # [-π/4, π/4) -> +1 (0); [π/4, 3π/4) -> +i (1); [-3π/4, -π/4) -> -i (3); else -1 (2)
    expected = [0, 0, 1, 1, 2, 2, 2, 3, 3, 0, 0]
    boundary = [2, 4, 7, 9]  # exactly on a boundary: cos/sin rounding may land either side
    for i, (got, want) in enumerate(zip(codes.tolist(), expected)):
        if i not in boundary:
            assert got == want, (angles[i].item(), got, want)
    assert phase_codes(torch.tensor([0.0]), torch.tensor([0.0])).item() == 0  # a zero weight is +1


def test_scales_are_per_tensor_means_of_one_component_over_their_sector():
    re = torch.tensor([3.0, -1.0, 0.1, 0.2, -0.5], dtype=torch.float64)
    im = torch.tensor([0.5, 0.2, 2.0, -4.0, 0.1], dtype=torch.float64)
    codes, scales = phase_quantize(re, im)
    assert codes.tolist() == [0, 2, 1, 3, 2]
    assert scales[0].item() == pytest.approx((3.0 + 1.0 + 0.5) / 3)  # mean |re| over the ±1 entries
    assert scales[1].item() == pytest.approx((2.0 + 4.0) / 2)  # mean |im| over the ±i entries
    q_re, q_im = dequantize(codes, scales)
    assert q_re.tolist() == pytest.approx([1.5, -1.5, 0.0, 0.0, -1.5])
    assert q_im.tolist() == pytest.approx([0.0, 0.0, 3.0, -3.0, 0.0])
    # a sector with no entries gets the minimum scale
    _, only_real = phase_quantize(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 0.0]))
    assert only_real[1].item() == pytest.approx(1e-6)


def test_recursive_residual_stages_lower_the_error_and_rebuild_from_codes():
    torch.manual_seed(0)
    weight = torch.randn(32, 48)
    errors = []
    for steps in (1, 2, 3):
        quantized, codes, scales = fairy2i_quantize(weight, steps)
        assert codes.shape == (steps, 2, 16, 24) and codes.dtype == torch.uint8 and int(codes.max()) <= 3
        assert scales.shape == (steps, 2, 2)
        assert torch.equal(fairy2i_dequantize(codes, scales), quantized)
        errors.append(((quantized - weight).norm() / weight.norm()).item())
    assert errors[0] > errors[1] > errors[2]
    # stage 1 alone is the T = 1 quantisation; stage 2 quantises its residual
    one, codes1, scales1 = fairy2i_quantize(weight, 1)
    two, codes2, scales2 = fairy2i_quantize(weight, 2)
    assert torch.equal(codes2[0], codes1[0]) and torch.equal(scales2[0], scales1[0])
    u, w = to_widely_linear(weight - one)
    assert torch.equal(phase_codes(u.real, u.imag), codes2[1, 0])
    assert torch.equal(phase_codes(w.real, w.imag), codes2[1, 1])


def test_every_quantised_weight_is_a_codebook_point_times_its_scale():
    torch.manual_seed(2)
    quantized, codes, scales = fairy2i_quantize(torch.randn(8, 8, dtype=torch.float64), 1)
    u, w = to_widely_linear(quantized)
    for t, z in enumerate((u, w)):
        s_re, s_im = scales[0, t].tolist()
        points = {complex(s_re, 0), complex(-s_re, 0), complex(0, s_im), complex(0, -s_im)}
        for value in z.flatten().tolist():
            assert min(abs(value - p) for p in points) < 1e-12


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="even"):
        to_widely_linear(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="floating"):
        to_widely_linear(torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="steps"):
        fairy2i_quantize(torch.zeros(4, 4), 0)
