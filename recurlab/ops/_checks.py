"""Input validation shared by the ops.

Every public op validates its arguments before any backend runs, so a user gets a
``ValueError`` that names the argument and the shape, dtype or range it expected
instead of a shape error from deep inside a matmul.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def fmt_shape(shape: Sequence[int]) -> str:
    return str(tuple(int(s) for s in shape))


def check_tensor(name: str, x, *, ranks: Sequence[int], layout: str, floating: bool = True) -> None:
    """Raise ValueError unless ``x`` is a floating tensor whose rank is in ``ranks``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if x.dim() not in ranks:
        raise ValueError(f"{name} must have shape {layout}, got a {x.dim()}-d tensor of shape {fmt_shape(x.shape)}")
    if floating and x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must have a floating dtype (float16, bfloat16, float32 or float64), got {x.dtype}")


def check_shape(name: str, x: torch.Tensor, expected: Sequence[int], layout: str) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {layout} = {fmt_shape(expected)}, got {fmt_shape(x.shape)}")


def check_same_dtype(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if x.dtype != ref.dtype:
        raise ValueError(f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {x.dtype}")


def check_same_device(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if x.device != ref.device:
        raise ValueError(f"{name} must be on the device of {ref_name} ({ref.device}), got {x.device}")


def check_log_gate(name: str, log_gate: torch.Tensor) -> None:
    """Raise ValueError unless every value is finite and <= 0 (gate in (0, 1]).

    One reduction pass (aminmax propagates NaN). Skipped while torch.compile
    traces, where a data-dependent branch would break the graph.
    """
    if log_gate.numel() == 0 or _is_compiling():
        return
    lo, hi = torch.aminmax(log_gate.detach())
    if not (bool(hi <= 0) and bool(lo > float("-inf"))):
        raise ValueError(
            f"{name} must be finite and <= 0 (the gate exp({name}) lies in (0, 1]); "
            f"got values in [{lo.item():.4g}, {hi.item():.4g}]"
        )


def joined_to_inputs(out: torch.Tensor, *inputs) -> torch.Tensor:
    """``out`` unchanged in value, but on the autograd graph of every input that requires grad.

    The result of an op on empty inputs is built directly (empty tensors, or the state passed
    through) instead of by the backend, so it would not depend on the inputs, and
    ``out.sum().backward()`` would fail with "does not require grad". Adding an empty slice's sum
    (exactly 0, never NaN whatever the input holds) joins each input with a zero gradient.
    """
    if not torch.is_grad_enabled():
        return out
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.requires_grad:
            out = out + (x.narrow(0, 0, 0) if x.dim() else x[None][:0]).sum().to(out.dtype)
    return out


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())
