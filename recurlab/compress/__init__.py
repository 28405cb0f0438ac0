"""Smaller and cheaper networks (issue 18): quantisation, pruning and nested sub-models.

- ``fairy2i.py``: Fairy2i's widely-linear complex form and its phase quantiser with recursive residuals.
- ``methods.py``: every quantiser by name (fairy2i, rtn, ternary, bitnet) and the packed code format.
- ``layers.py``: straight-through quantised linear layers, their packed form, and swapping them into a model.
- ``quantize.py``: ``recurlab quantize``: quantise a saved language model, fine-tune it, save it packed.
- ``prune.py``: unstructured pruning: dead-neuron rate (DNR) tracking, magnitude masks kept through training,
  iterative magnitude pruning with rewinding, and AP (Liu et al. 2022) on top of it (docs/prune.md).
- ``int8.py``: integer linear layers (INT8 x INT8 -> int32, W4A4 simulated) for AutoNeural's comparisons
  (docs/autoneural.md).
- ``sorted.py``: SortedNet (Valipour et al. 2023): train every nested sub-model (``CausalLM.submodel``) at once
  (docs/sorted.md).

docs/compress.md, docs/prune.md, docs/sorted.md, docs/autoneural.md.
"""

from .fairy2i import fairy2i_quantize, from_widely_linear, to_widely_linear
from .int8 import IntLinear, integer_model, sqnr_db
from .layers import PackedLinear, QuantizedLinear, pack_model, quantize_model
from .methods import METHODS, get_quantizer
from .prune import (DeadNeuronTracker, Masks, PruneRound, ap_prune, iterative_prune, magnitude_prune,
                    prunable_weights, sparsity)
from .sorted import SortedTraining, nested_grid

__all__ = ["METHODS", "DeadNeuronTracker", "IntLinear", "integer_model", "sqnr_db", "Masks", "PackedLinear", "PruneRound", "QuantizedLinear", "ap_prune",
           "fairy2i_quantize", "from_widely_linear", "get_quantizer", "iterative_prune", "magnitude_prune",
           "nested_grid", "pack_model", "prunable_weights", "quantize_model", "SortedTraining", "sparsity",
           "to_widely_linear"]
