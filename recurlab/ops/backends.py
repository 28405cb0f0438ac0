"""Backend names and how ``backend="auto"`` resolves them.

Every op accepts ``backend=`` with one of its names below. ``reference`` is the
plain loop over time and the ground truth of the tests; ``chunk`` is the
pure-PyTorch parallel form meant for accelerators (and the CPU fallback);
``cpu`` is the compiled kernel; ``sdpa`` is torch's fused attention.
"""

from __future__ import annotations

import torch

from . import _cpu_ext

BACKENDS: dict[str, tuple[str, ...]] = {
    "diag_scan": ("reference", "chunk", "cpu"),
    "gla": ("reference", "chunk"),
    "causal_conv1d": ("reference", "conv"),
    "long_conv": ("reference", "fft"),
    "attention": ("reference", "sdpa"),
}


def available_backends(op: str, device: torch.device | str = "cpu") -> list[str]:
    """The backends of ``op`` that can run on ``device`` in this environment."""
    device = torch.device(device)
    names = []
    for name in BACKENDS[op]:
        if name == "cpu" and (device.type != "cpu" or not _cpu_ext.available()):
            continue
        names.append(name)
    return names


def resolve(op: str, backend: str, device: torch.device) -> str:
    """Turn a requested backend into the one that will run.

    ``auto`` picks the fastest for ``device``; ``cpu`` requested without a
    working compiler falls back to ``chunk`` (``_cpu_ext`` has already warned).
    """
    names = BACKENDS[op]
    if backend != "auto" and backend not in names:
        raise ValueError(f"backend must be one of {('auto',) + names} for {op}, got {backend!r}")
    if backend == "auto":
        if op == "diag_scan":
            return "cpu" if device.type == "cpu" and _cpu_ext.available() else "chunk"
        return names[-1]
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"backend 'cpu' runs on CPU tensors only, got tensors on {device}")
        if not _cpu_ext.available():
            return "chunk"
    return backend
