"""Smaller and cheaper networks (issue 18): weight quantisation first.

- ``fairy2i.py``: Fairy2i's widely-linear complex form and its phase quantiser with recursive residuals.
- ``methods.py``: every quantiser by name (fairy2i, rtn, ternary, bitnet) and the packed code format.
- ``layers.py``: straight-through quantised linear layers, their packed form, and swapping them into a model.
- ``quantize.py``: ``recurlab quantize``: quantise a saved language model, fine-tune it, save it packed.

docs/compress.md.
"""

from .fairy2i import fairy2i_quantize, from_widely_linear, to_widely_linear
from .layers import PackedLinear, QuantizedLinear, pack_model, quantize_model
from .methods import METHODS, get_quantizer

__all__ = ["METHODS", "PackedLinear", "QuantizedLinear", "fairy2i_quantize", "from_widely_linear", "get_quantizer",
           "pack_model", "quantize_model", "to_widely_linear"]
