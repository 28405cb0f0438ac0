"""Integer linear layers (recurlab/compress/int8.py): the symmetric quantiser, the int32 product, whole models."""

import math

import pytest
import torch
from torch import nn

from recurlab.compress.int8 import IntLinear, fake_quantize_linear_inputs, integer_model, quantize_symmetric, sqnr_db
from recurlab.models import CausalLM, ModelConfig


def test_the_symmetric_quantiser_uses_the_row_maximum():
    x = torch.tensor([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [-3.0, 1.0, 2.9]])
    codes, scale = quantize_symmetric(x, 8, dim=1)
    assert scale.squeeze(1).tolist() == pytest.approx([1 / 127, 1.0, 3 / 127])
    assert codes[0].tolist() == [127, -64, 32] and codes[1].tolist() == [0, 0, 0]  # round half to even: -63.5 -> -64
    assert codes[2].tolist() == [-127, 42, 123]
    codes4, scale4 = quantize_symmetric(x, 4, dim=1)
    assert codes4.abs().max() <= 7 and scale4[0].item() == pytest.approx(1 / 7)
    for bad in (1, 9, 8.0):
        with pytest.raises(ValueError, match=r"bits must be an int in \[2, 8\]"):
            quantize_symmetric(x, bad)


@pytest.mark.parametrize("bits", [8, 4])
def test_int_linear_is_the_product_of_the_codes_rescaled(bits):
    torch.manual_seed(0)
    linear = nn.Linear(24, 10)
    layer = IntLinear(linear, bits)
    x = torch.randn(3, 5, 24)
    xc, xs = quantize_symmetric(x.reshape(-1, 24), bits, dim=1)
    wc, ws = quantize_symmetric(linear.weight, bits, dim=1)
    expected = ((xc * xs) @ (wc * ws).t() + linear.bias).reshape(3, 5, 10)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    assert layer.weight_codes.dtype == torch.int8 and layer.weight_codes.abs().max() <= 2 ** (bits - 1) - 1
    torch.testing.assert_close(layer.dequantized_weight(), wc * ws)
    assert sqnr_db(linear(x).detach(), layer(x)) > (25 if bits == 8 else 5)
    with pytest.raises(ValueError, match="in_features=24"):
        layer(torch.randn(2, 23))


def test_an_integer_model_replaces_every_linear_and_stays_close():
    torch.manual_seed(0)
    model = CausalLM(ModelConfig(vocab_size=40, d_model=32, n_layers=2, mixer=["short_conv", "attention"])).eval()
    ids = torch.randint(0, 40, (2, 12))
    q8, q4 = integer_model(model, 8), integer_model(model, 4)
    assert not any(isinstance(m, nn.Linear) for m in q8.modules())
    assert sum(isinstance(m, IntLinear) for m in q8.modules()) == sum(isinstance(m, nn.Linear) for m in model.modules())
    assert any(isinstance(m, nn.Linear) for m in model.modules())  # the original is untouched
    with torch.no_grad():
        ref, a, b = model(ids)[0], q8(ids)[0], q4(ids)[0]
    assert sqnr_db(ref, a) > 30 and sqnr_db(ref, a) > sqnr_db(ref, b) + 15  # ~6 dB per bit
    with pytest.raises(ValueError, match="no nn.Linear"):
        integer_model(nn.ReLU())


def test_sqnr_is_signal_over_noise_in_decibels():
    assert sqnr_db(torch.tensor([1.0, 0.0]), torch.tensor([0.9, 0.0])) == pytest.approx(20.0)
    assert sqnr_db(torch.ones(3), torch.ones(3)) == math.inf
    with pytest.raises(ValueError, match="same shape"):
        sqnr_db(torch.ones(3), torch.ones(4))


def test_fake_quantised_convolutions_see_codes_on_the_grid():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    fake = fake_quantize_linear_inputs(net, 4)
    conv = fake[0]
    codes, scale = quantize_symmetric(net[0].weight.flatten(1), 4, dim=1)
    torch.testing.assert_close(conv.weight.flatten(1), codes * scale)
    seen = []
    conv.register_forward_pre_hook(lambda m, args: seen.append(args[0]))  # runs after the quantiser
    x = torch.randn(2, 2, 6, 6)
    fake(x)
    per_pixel = seen[0] / seen[0].abs().amax(1, keepdim=True) * 7  # each pixel's channel vector: codes of 4 bits
    torch.testing.assert_close(per_pixel, per_pixel.round(), rtol=0, atol=1e-4)
    assert not torch.allclose(net[0].weight.flatten(1), codes * scale)  # the original keeps its float weights


def test_static_per_tensor_activations_use_the_calibrated_range_and_clip():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3))
    calibration = torch.tensor([[1.0, -2.0, 0.5, 0.0]])  # max |x| = 2: scale 2 / 7 at 4 bits
    fake = fake_quantize_linear_inputs(net, 4, "tensor", calibration)
    seen = []
    fake[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    fake(torch.tensor([[0.3, -5.0, 1.1, 2.0]]))
    step = 2 / 7
    assert seen[0][0].tolist() == pytest.approx([step * 1, -2.0, step * 4, 2.0])  # -5 is clipped
    with pytest.raises(ValueError, match="calibration"):
        fake_quantize_linear_inputs(net, 4, "tensor")
    with pytest.raises(ValueError, match="activations must be one of token, tensor"):
        fake_quantize_linear_inputs(net, 4, "channel")
