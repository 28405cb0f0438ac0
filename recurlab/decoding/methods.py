"""The speculative decoders by name, for the command line and the benchmark.

A method is written ``NAME:SHAPE``:

    chain:4          chain speculative decoding, 4 drafted tokens per round
    rsd-c:2x2x1x1    RSD-C, branching factors per tree level (here 4 leaves of depth 4)
    rsd-s:3x4        RSD-S, beam width 3 and depth 4

:func:`parse_method` reads that form, :func:`tree_size` says what one round asks of the target, and
:func:`generate_with` runs a method. ``recurlab generate --method M --draft-len L --branching B``
builds the spec with :func:`method_spec` (chain: L tokens; rsd-c: B children at each of L levels;
rsd-s: beam width B, depth L).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .common import DecodeStats
from .rsd import rsd_c_generate, rsd_s_generate
from .speculative import speculative_generate

METHODS = ("chain", "rsd-c", "rsd-s")


@dataclasses.dataclass(frozen=True)
class Method:
    """A parsed method: its name and shape (chain: (k,); rsd-c: branching per level; rsd-s: (width, depth))."""

    name: str
    shape: tuple[int, ...]

    @property
    def spec(self) -> str:
        return f"{self.name}:{'x'.join(map(str, self.shape))}"

    @property
    def depth(self) -> int:
        """Draft length: tokens on the longest root-to-leaf path of one round's draft."""
        return self.shape[0] if self.name == "chain" else len(self.shape) if self.name == "rsd-c" else self.shape[1]


def parse_method(spec: str) -> Method:
    """``"chain:4"``, ``"rsd-c:2x2x1x1"`` or ``"rsd-s:3x4"`` as a :class:`Method`; a ValueError says what is wrong."""
    name, _, shape_text = str(spec).partition(":")
    if name not in METHODS:
        raise ValueError(f"unknown decoding method {name!r} in {spec!r}; valid methods: {', '.join(METHODS)} "
                         "(written NAME:SHAPE, e.g. chain:4, rsd-c:2x2x1x1, rsd-s:3x4)")
    try:
        shape = tuple(int(part) for part in shape_text.split("x"))
    except ValueError:
        raise ValueError(f"the shape of {spec!r} must be integers joined by 'x' (e.g. {name}:"
                         f"{ {'chain': '4', 'rsd-c': '2x2', 'rsd-s': '3x4'}[name] })") from None
    if any(n < 1 for n in shape):
        raise ValueError(f"every number in the shape of {spec!r} must be >= 1")
    if name == "chain" and len(shape) != 1:
        raise ValueError(f"chain takes one number, the draft length (e.g. chain:4), got {spec!r}")
    if name == "rsd-s" and len(shape) != 2:
        raise ValueError(f"rsd-s takes two numbers, beam width x depth (e.g. rsd-s:3x4), got {spec!r}")
    return Method(name, shape)


def method_spec(method: str, draft_len: int, branching: int) -> str:
    """The spec of ``recurlab generate --method M --draft-len L --branching B``."""
    if draft_len < 1 or branching < 1:
        raise ValueError(f"--draft-len and --branching must be >= 1, got {draft_len} and {branching}")
    if method == "chain":
        return f"chain:{draft_len}"
    if method == "rsd-c":
        return "rsd-c:" + "x".join([str(branching)] * draft_len)
    if method == "rsd-s":
        return f"rsd-s:{branching}x{draft_len}"
    raise ValueError(f"unknown decoding method {method!r}; valid methods: {', '.join(METHODS)}")


def tree_size(method: Method) -> dict[str, int]:
    """What one round asks of the target, at most: ``nodes`` (draft tokens in the tree: the budget the
    RSD paper compares at), ``leaves`` (rows of the verification call) and ``positions`` (token
    positions the verification call runs: leaves x (depth + 1), as trees are scored path by path)."""
    if method.name == "chain":
        nodes, leaves = method.shape[0], 1
    elif method.name == "rsd-c":
        widths = [math.prod(method.shape[:i + 1]) for i in range(len(method.shape))]
        nodes, leaves = sum(widths), widths[-1]
    else:
        width, depth = method.shape
        nodes, leaves = width * depth, width  # at most W nodes per level, at most W leaves
    return {"nodes": nodes, "leaves": leaves, "positions": leaves * (method.depth + 1)}


def generate_with(method: Method | str, target, draft, input_ids: torch.Tensor, max_new_tokens: int,
                  temperature: float = 1.0, top_k: int | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, DecodeStats]:
    """Run a speculative method (a :class:`Method` or its spec) on one prompt (1, T); returns (ids, stats)."""
    method = parse_method(method) if isinstance(method, str) else method
    common = dict(temperature=temperature, top_k=top_k, generator=generator)
    if method.name == "chain":
        return speculative_generate(target, draft, input_ids, max_new_tokens, draft_len=method.shape[0], **common)
    if method.name == "rsd-c":
        return rsd_c_generate(target, draft, input_ids, max_new_tokens, branching=method.shape, **common)
    width, depth = method.shape
    return rsd_s_generate(target, draft, input_ids, max_new_tokens, beam_width=width, depth=depth, **common)
