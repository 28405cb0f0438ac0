"""The quantisers by name, the packed format, straight-through layers in a model, and ``recurlab quantize``."""

import json

import pytest
import torch

from recurlab.cli import main
from recurlab.compress import PackedLinear, QuantizedLinear, get_quantizer, pack_model, quantize_model
from recurlab.compress.methods import pack_codes, unpack_codes
from recurlab.compress.quantize import QuantizeConfig, load_quantized, load_quantized_tokenizer, quantize_and_finetune
from recurlab.configs import override
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import ByteTokenizer
from tests.convert.common import tiny_text

ALL = [("fairy2i", 1), ("fairy2i", 2), ("rtn", 2), ("rtn", 3), ("rtn", 4), ("ternary", None), ("bitnet", None)]


@pytest.mark.parametrize("code_bits", [1, 2, 4, 8])
def test_packing_round_trips(code_bits):
    torch.manual_seed(0)
    codes = torch.randint(0, 2 ** code_bits, (37,), dtype=torch.uint8)
    packed = pack_codes(codes, code_bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-37 * code_bits // 8)
    assert torch.equal(unpack_codes(packed, code_bits, 37), codes)
    if code_bits < 8:
        with pytest.raises(ValueError, match="below"):
            pack_codes(torch.tensor([2 ** code_bits]), code_bits)


def test_two_bit_codes_sit_four_to_a_byte_lowest_bits_first():
    assert pack_codes(torch.tensor([1, 2, 3, 0, 2], dtype=torch.uint8), 2).tolist() == [1 | 2 << 2 | 3 << 4, 2]


@pytest.mark.parametrize("method, bits", ALL)
def test_every_quantiser_round_trips_through_its_packed_codes(method, bits):
    q = get_quantizer(method, bits)
    torch.manual_seed(0)
    weight = torch.randn(24, 16)
    dequantized, codes, scales = q.quantize(weight)
    again = q.dequantize(unpack_codes(pack_codes(codes, q.code_bits), q.code_bits, codes.numel()), scales,
                         tuple(weight.shape))
    assert torch.equal(again, dequantized)
    assert 0 < ((dequantized - weight).norm() / weight.norm()).item() < 1


def test_real_baselines_put_weights_on_their_levels():
    weight = torch.tensor([[0.9, -0.2, 0.05, -1.0], [0.1, 0.1, -0.3, 0.2]])
    ternary, _, scales = get_quantizer("ternary").quantize(weight)
    assert scales.tolist() == pytest.approx([0.5375, 0.175])  # mean |w| per row
    assert (ternary / scales.view(-1, 1)).tolist() == [[1, 0, 0, -1], [1, 1, -1, 1]]
    bitnet, _, gamma = get_quantizer("bitnet").quantize(weight)
    assert gamma.tolist() == pytest.approx([weight.abs().mean().item()])
    assert set((bitnet / gamma).flatten().tolist()) <= {-1.0, 0.0, 1.0}
    rtn, _, delta = get_quantizer("rtn", 2).quantize(weight)
    assert delta.tolist() == pytest.approx([1.0 / 1.5, 0.3 / 1.5])  # max |w| per row / 1.5
    # levels ±0.5, ±1.5 (x delta), to the nearest; 1.0 (row 2, a tie) rounds half to even: code 2, level 0.5
    assert (rtn / delta.view(-1, 1)).flatten().tolist() == pytest.approx([1.5, -0.5, 0.5, -1.5, 0.5, 0.5, -1.5, 0.5])


def test_fairy2i_is_closer_than_real_two_bit_rounding_at_two_bits():
    """The paper's premise at the level of one matrix: at 2 bits per weight, the complex codes with residual lose
    less of a Gaussian weight than per-channel 2-bit round-to-nearest."""
    torch.manual_seed(0)
    weight = torch.randn(256, 256)
    err = {name: ((get_quantizer(*spec).quantize(weight)[0] - weight).norm() / weight.norm()).item()
           for name, spec in {"fairy2i": ("fairy2i", 2), "rtn": ("rtn", 2)}.items()}
    assert err["fairy2i"] < err["rtn"]


def test_bad_methods_and_bits_are_named():
    with pytest.raises(ValueError, match="method"):
        get_quantizer("gptq")
    with pytest.raises(ValueError, match="bits"):
        get_quantizer("ternary", 2)
    with pytest.raises(ValueError, match="bits"):
        get_quantizer("rtn", 1)
    with pytest.raises(ValueError, match="bits"):
        get_quantizer("fairy2i", 0)


def tiny_model() -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(ModelConfig(vocab_size=256, d_model=32, n_layers=2, mixer="gla",
                                channel_kwargs={"hidden_size": 48}))


def test_straight_through_layers_quantise_the_forward_and_pass_the_gradient():
    model = tiny_model()
    ids = torch.randint(0, 256, (2, 12))
    names = quantize_model(model, get_quantizer("fairy2i", 2))
    assert names and all(isinstance(model.get_submodule(n), QuantizedLinear) for n in names)
    assert not any(n.startswith(("embedding", "head")) for n in names)
    layer = model.get_submodule(names[0])
    x = torch.randn(3, layer.in_features, requires_grad=True)
    y = layer(x)
    assert torch.allclose(y, x @ layer.quantized_weight().T + (0 if layer.bias is None else layer.bias))
    y.sum().backward()
    # straight through: the weight's gradient is that of a plain linear layer at the quantised weight
    assert torch.allclose(layer.weight.grad, torch.ones(3, layer.out_features).T @ x.detach())
    with torch.no_grad():
        logits = model(ids)[0]
        pack_model(model)
        assert all(isinstance(model.get_submodule(n), PackedLinear) for n in names)
        # the packed layers rebuild the same quantised weights (w + (Q(w) - w) differs from Q(w) by rounding only)
        assert (model(ids)[0] - logits).abs().max() < 1e-5


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "verses.txt"
    path.write_text(tiny_text())
    return path


SMALL = ["finetune.seq_len=32", "finetune.batch_size=4", "finetune.eval_sequences=4", "finetune.eval_every=5"]


def test_quantize_finetune_pack_save_and_load(tmp_path, text_file):
    config = override(QuantizeConfig(), [*SMALL, f"finetune.data.path={text_file}", "finetune.tokens=1280",
                                         "finetune.lr=0.003"])
    out = tmp_path / "w2"
    summary = quantize_and_finetune(tiny_model(), "fairy2i", 2, out, config, tokenizer=ByteTokenizer(),
                                    progress=False)
    assert summary["finetune_steps"] == 10 and summary["quantizer"] == "fairy2i-2bit"
    assert summary["val_bits_per_byte_after_finetune"] < summary["val_bits_per_byte_quantized"]
    assert abs(summary["val_bits_per_byte_packed"] - summary["val_bits_per_byte_after_finetune"]) < 1e-4
    model = load_quantized(out / "model")
    assert not model.training and isinstance(model.get_submodule("depth.blocks.0.mixer.q_proj"), PackedLinear)
    assert isinstance(load_quantized_tokenizer(out / "model"), ByteTokenizer)
    # the packed file is smaller than the float32 weights (the embedding stays float32)
    assert summary["bytes_packed_file"] < summary["bytes_full_precision"] / 2
    again = quantize_and_finetune(tiny_model(), "fairy2i", 2, out, config, tokenizer=ByteTokenizer(), resume=True)
    assert again == summary  # a finished folder returns its summary
    with pytest.raises(ValueError, match="already holds"):
        quantize_and_finetune(tiny_model(), "fairy2i", 2, out, config, tokenizer=ByteTokenizer())
    with pytest.raises(ValueError, match="bits"):
        quantize_and_finetune(tiny_model(), "bitnet", 2, tmp_path / "x", config, tokenizer=ByteTokenizer())


def test_a_tampered_packed_file_is_refused(tmp_path, text_file):
    config = override(QuantizeConfig(), [*SMALL, f"finetune.data.path={text_file}"])
    quantize_and_finetune(tiny_model(), "ternary", None, tmp_path / "t", config, tokenizer=ByteTokenizer(),
                          progress=False)
    weights = tmp_path / "t" / "model" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 4
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="does not match config.json"):
        load_quantized(tmp_path / "t" / "model")


def test_the_command_line(tmp_path, text_file, capsys):
    source = tmp_path / "source"
    tiny_model().save_pretrained(source, ByteTokenizer())
    out = tmp_path / "cli"
    args = ["quantize", str(source), "--method", "rtn", "--bits", "2", "--out", str(out), "--no-progress",
            "--set", *SMALL, f"finetune.data.path={text_file}", "finetune.tokens=256"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["quantizer"] == "rtn-2bit" and printed["finetune_steps"] == 2
    assert main(["quantize", str(source), "--method", "ternary", "--bits", "2", "--out", str(tmp_path / "y")]) == 2
    assert "bits does not apply to ternary" in capsys.readouterr().err
