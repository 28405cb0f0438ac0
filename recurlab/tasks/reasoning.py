"""Verifiable multi-step reasoning problems with step-by-step traces, for decode-time reasoning (MinD, ParaThinker).

Three seeded, offline families, each with a checkable integer answer and a solution trace:

* ``"arithmetic"``: ``12+7*3-5=?``, operators ``+ - *`` with the usual precedence (``*`` before
  ``+``/``-``, left to right within a level; Python's value of the expression). One trace step per
  operation, ``7*3=21``; the intermediate answer after it is the reduced expression ``12+21-5``.
  Intermediate and final values may be negative (``3-5*4`` = -17).
* ``"modular"``: ``(37*12+5) mod 7=?``, operators ``+ *`` with the same precedence, reduced mod m
  after every operation (valid because reduction commutes with + and *). Steps ``37*12 mod 7=3``,
  intermediate answers ``(3+5) mod 7``.
* ``"equation"``: ``2(3x+4)-6=32, x=?``: x under a chain of operations (multiply by 2..9, add or
  subtract a constant, the two kinds alternating), solved by undoing the outermost one per step:
  ``add 6: 2(3x+4)=38``, ``divide by 2: 3x+4=19``, ... ``divide by 3: x=5``; the intermediate
  answer is the equation after the step.

Difficulty knobs: ``steps`` = operations in the problem (= steps of the canonical trace) and
``digits`` = digits of every operand (exactly that many, no leading zero; the modulus too; equation
coefficients are always 2..9). :func:`generate` draws them with :class:`random.Random` (seed).

Each :class:`Problem` holds its canonical trace (``steps``, ``states``) and every *distinct* valid
solution order it has (``orders``): products right to left as well as left to right, an all-``+``
sum right to left; for equations "divide first" (``3x+12=27`` -> ``divide by 3: x+4=9``, valid when
the divisor divides the constant) and "expand first" (``2(3x+4)=38`` -> ``expand: 6x+8=38``).

Text formats (the completion after :func:`prompt_text`, ``problem.prompt + "\\n"``):

* ``cot``:        ``<think>s1\\ns2\\n...\\nsk</think><answer>A</answer>``
* ``long_cot``:   a reasoning model's chain of thought with its redundancy: the solution, then ``n_checks``
  re-derivations that check it, in one thinking block:
  ``<think>s1\n...\nsk\ncheck: s1'\n...\nsk'</think><answer>A</answer>`` (MinD's baseline, an R1-style trace)
* ``multi_turn``: the same thinking units as MinD's turns, each a thinking unit and the answer it gives to the
  question: ``<think>s1\n...\nsk</think><answer>A</answer><think>check: s1'\n...</think><answer>A</answer>...``
  (Zeng et al. 2025: every unit of a reasoning model's trace attempts the whole question, so every turn's answer
  is a candidate final answer, and later turns verify; stopping after the first turn loses nothing when it is right)
* ``parallel``:   P paths (ParaThinker), each ``<think>steps in one order</think><answer>A</answer>``,
  then the summary ``<summary>all P paths give A</summary><answer>A</answer>``.
  :func:`parallel_paths` returns the path texts and the summary separately (the model-side layout
  is built elsewhere); as one flat text (:func:`format_trace`) path i is wrapped in
  ``<path{i}>...</path{i}>`` (i from 1) and the summary follows.

:func:`check_answer` takes the content of the *last* complete ``<answer>...</answer>`` of a text
(any format) and compares it with the problem's answer as an integer after normalisation
(whitespace, leading ``+``, leading zeros, a trailing ``.0``, surrounding brackets/quotes/``$``/``*``,
a final period; for equations a leading ``x=``). No complete answer tag: False.

Tokens: bytes (:class:`recurlab.tasks.text.ByteTokenizer`, vocabulary 256); PAD = 0 (NUL) and
EOS = 4 (EOT), bytes no text here contains. :func:`sft_task` lays each problem out as
``prompt "\\n" completion EOS PAD...``, next-token prediction with labels on the completion and EOS
only (IGNORE = -100 on the prompt and padding), like :mod:`recurlab.tasks.structural`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import torch

from .base import IGNORE, SequenceTask
from .text import ByteTokenizer

FAMILIES = ("arithmetic", "modular", "equation")
FORMATS = ("cot", "long_cot", "multi_turn", "parallel")
CHECKS = 2  # re-derivations after the solution in long_cot and multi_turn (check units)
DEFAULTS = {"arithmetic": (3, 2), "modular": (2, 2), "equation": (2, 1)}  # family -> (steps, digits)
VOCAB_SIZE = 256
PAD, EOS = 0, 4
MAX_DIGITS = 9

_TOKENIZER = ByteTokenizer()


@dataclass
class Problem:
    """One problem and its solution.

    Attributes:
        prompt: the question, e.g. ``"12+7*3-5=?"``.
        steps: the canonical trace, one checkable statement per step, e.g. ``["7*3=21", "12+21=33", "33-5=28"]``.
        states: the intermediate answer after each step (same length as steps); ``states[-1] == answer``.
        answer: the final answer, an integer as a string, e.g. ``"28"``.
        family: "arithmetic", "modular" or "equation".
        difficulty: {"steps": operations, "digits": digits per operand}.
        orders: every distinct valid trace (lists of steps); ``orders[0] == steps``.
    """

    prompt: str
    steps: list[str]
    states: list[str]
    answer: str
    family: str
    difficulty: dict[str, int]
    orders: list[list[str]] = field(default_factory=list)


# ----------------------------------------------------------------------------- arithmetic and modular


def _operand(rng: random.Random, digits: int) -> int:
    """A number of exactly ``digits`` digits (1..9 for one digit)."""
    return rng.randint(10 ** (digits - 1), 10 ** digits - 1)


def _expression(nums: list[int], ops: list[str]) -> str:
    return str(nums[0]) + "".join(f"{op}{b}" for op, b in zip(ops, nums[1:]))


def _reduce(nums: list[int], ops: list[str], modulus: int | None, products: str, sums: str
            ) -> tuple[list[str], list[str]]:
    """Evaluate ``nums[0] ops[0] nums[1] ...`` one operation per step: every ``*`` first (left to right
    if products == "lr", else right to left), then ``+``/``-`` (``sums``: "lr", or "rl" for an all-``+``
    chain). With a modulus every result is reduced mod it. Returns (steps, states)."""
    nums, ops = list(nums), list(ops)
    steps, states = [], []
    while ops:
        if "*" in ops:
            where = [i for i, op in enumerate(ops) if op == "*"]
            i = where[0] if products == "lr" else where[-1]
        else:
            i = 0 if sums == "lr" else len(ops) - 1
        a, op, b = nums[i], ops[i], nums[i + 1]
        c = a * b if op == "*" else a + b if op == "+" else a - b
        if modulus is None:
            steps.append(f"{a}{op}{b}={c}")
        else:
            c %= modulus
            steps.append(f"{a}{op}{b} mod {modulus}={c}")
        nums[i : i + 2] = [c]
        ops.pop(i)
        if not ops:
            states.append(str(c))
        elif modulus is None:
            states.append(_expression(nums, ops))
        else:
            states.append(f"({_expression(nums, ops)}) mod {modulus}")
    return steps, states


def _chain_problem(rng: random.Random, family: str, steps: int, digits: int) -> Problem:
    allowed = "+-*" if family == "arithmetic" else "+*"
    nums = [_operand(rng, digits) for _ in range(steps + 1)]
    ops = [rng.choice(allowed) for _ in range(steps)]
    modulus = None
    expr = _expression(nums, ops)
    if family == "modular":
        modulus = rng.randint(max(2, 10 ** (digits - 1)), 10 ** digits - 1)
        prompt = f"({expr}) mod {modulus}=?"
    else:
        prompt = f"{expr}=?"
    strategies = [("lr", "lr"), ("rl", "lr")]
    if all(op == "+" for op in ops if op != "*"):
        strategies += [("lr", "rl"), ("rl", "rl")]  # an all-+ sum may be added in any order
    canonical_steps, canonical_states = _reduce(nums, ops, modulus, "lr", "lr")
    orders = _distinct([_reduce(nums, ops, modulus, p, s)[0] for p, s in strategies])
    return Problem(prompt, canonical_steps, canonical_states, canonical_states[-1], family,
                   {"steps": steps, "digits": digits}, orders)


def _distinct(traces: list[list[str]]) -> list[list[str]]:
    out = []
    for trace in traces:
        if trace not in out:
            out.append(trace)
    return out


# ----------------------------------------------------------------------------- linear equations

# The left-hand side is a list of operations applied to x, innermost first: ("mul", a) or ("add", b), b signed.


def _normalise(ops: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Merge adjacent operations of one kind; drop multiplications by 1 and additions of 0."""
    out: list[tuple[str, int]] = []
    for kind, v in ops:
        if out and out[-1][0] == kind:
            v = out.pop()[1] * v if kind == "mul" else out.pop()[1] + v
        if (kind, v) not in (("mul", 1), ("add", 0)):
            out.append((kind, v))
    return out


def _lhs(ops: list[tuple[str, int]]) -> str:
    s = "x"
    for kind, v in ops:
        if kind == "mul":
            s = f"{v}x" if s == "x" else f"{v}({s})"
        else:
            s = f"{s}+{v}" if v > 0 else f"{s}-{-v}"
    return s


def _apply(ops: list[tuple[str, int]], x: int) -> int:
    for kind, v in ops:
        x = x * v if kind == "mul" else x + v
    return x


def _solve(ops: list[tuple[str, int]], rhs: int, x: int, strategy: str) -> tuple[list[str], list[str]]:
    """Steps "what: equation" from ``lhs(ops)=rhs`` to ``x=...``. ``strategy``: "undo" (the outermost
    operation each step), "divide_first" (when the outermost is +b over *a with a | b, divide first:
    a*y+b -> y+b/a), "expand_first" (first expand the whole side to px+q, then undo)."""
    steps, states = [], []
    if strategy == "expand_first" and len(ops) > 1:
        q = _apply(ops, 0)
        p = _apply(ops, 1) - q  # the side is linear: p x + q
        expanded = _normalise([("mul", p), ("add", q)])
        if expanded != ops:
            ops = expanded
            steps.append(f"expand: {_lhs(ops)}={rhs}")
            states.append(f"{_lhs(ops)}={rhs}")
    while ops:
        kind, v = ops[-1]
        if strategy == "divide_first" and kind == "add" and len(ops) > 1 and v % ops[-2][1] == 0:
            a = ops[-2][1]
            ops = _normalise(ops[:-2] + [("add", v // a)])
            what, rhs = f"divide by {a}", rhs // a
        elif kind == "add":
            ops = ops[:-1]
            what, rhs = (f"subtract {v}" if v > 0 else f"add {-v}"), rhs - v
        else:
            ops = ops[:-1]
            what, rhs = f"divide by {v}", rhs // v
        steps.append(f"{what}: {_lhs(ops)}={rhs}")
        states.append(f"{_lhs(ops)}={rhs}")
    if rhs != x:
        raise AssertionError(f"internal error: solving reached x={rhs}, not {x}")
    states[-1] = str(x)
    return steps, states


def _equation_problem(rng: random.Random, steps: int, digits: int) -> Problem:
    x = _operand(rng, digits)
    kind = rng.choice(("mul", "add"))
    ops = []
    for _ in range(steps):
        if kind == "mul":
            ops.append(("mul", rng.randint(2, 9)))
        else:
            ops.append(("add", rng.choice((1, -1)) * _operand(rng, digits)))
        kind = "add" if kind == "mul" else "mul"
    rhs = _apply(ops, x)
    canonical_steps, canonical_states = _solve(ops, rhs, x, "undo")
    orders = _distinct([_solve(ops, rhs, x, s)[0] for s in ("undo", "divide_first", "expand_first")])
    return Problem(f"{_lhs(ops)}={rhs}, x=?", canonical_steps, canonical_states, str(x), "equation",
                   {"steps": steps, "digits": digits}, orders)


# ----------------------------------------------------------------------------- generation


def generate(family: str, n: int, seed: int = 0, steps: int | None = None, digits: int | None = None
             ) -> list[Problem]:
    """``n`` problems of one family, determined by ``seed``.

    Args:
        family: "arithmetic", "modular" or "equation".
        steps: operations per problem (>= 1; the canonical trace has exactly this many steps);
            None: the family's default (arithmetic 3, modular 2, equation 2).
        digits: digits of every operand, 1..9 (None: arithmetic 2, modular 2, equation 1).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    default_steps, default_digits = DEFAULTS[family]
    steps = default_steps if steps is None else steps
    digits = default_digits if digits is None else digits
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not isinstance(digits, int) or not 1 <= digits <= MAX_DIGITS:
        raise ValueError(f"digits must be an int in [1, {MAX_DIGITS}], got {digits!r}")
    rng = random.Random(seed)
    if family == "equation":
        return [_equation_problem(rng, steps, digits) for _ in range(n)]
    return [_chain_problem(rng, family, steps, digits) for _ in range(n)]


# ----------------------------------------------------------------------------- text formats


def prompt_text(problem: Problem) -> str:
    """What the model reads before its completion: the question and a newline."""
    return problem.prompt + "\n"


def _cot(steps: list[str], answer: str) -> str:
    return "<think>" + "\n".join(steps) + f"</think><answer>{answer}</answer>"


def parallel_paths(problem: Problem, n_paths: int) -> tuple[list[str], str]:
    """ParaThinker's parts: ``n_paths`` path texts (path i follows ``problem.orders[i % len(orders)]``,
    each ``<think>...</think><answer>A</answer>``) and the summary text."""
    if not isinstance(n_paths, int) or n_paths < 1:
        raise ValueError(f"n_paths must be an int >= 1, got {n_paths!r}")
    orders = problem.orders or [problem.steps]
    paths = [_cot(orders[i % len(orders)], problem.answer) for i in range(n_paths)]
    summary = f"<summary>all {n_paths} paths give {problem.answer}</summary><answer>{problem.answer}</answer>"
    return paths, summary


def thinking_units(problem: Problem, n_checks: int = CHECKS) -> list[str]:
    """The units of a trace with checks: the canonical solution, then ``n_checks`` re-derivations prefixed
    ``check: `` (check i follows ``problem.orders[i % len(orders)]``, i from 1: another valid order when the problem
    has one, else the same steps again). Each unit is its steps joined by newlines."""
    if not isinstance(n_checks, int) or n_checks < 0:
        raise ValueError(f"n_checks must be an int >= 0, got {n_checks!r}")
    orders = problem.orders or [problem.steps]
    checks = ["check: " + "\n".join(orders[i % len(orders)]) for i in range(1, n_checks + 1)]
    return ["\n".join(problem.steps)] + checks


def format_trace(problem: Problem, format: str, n_paths: int = 2, n_checks: int = CHECKS) -> str:
    """The completion text of ``problem`` in ``format`` ("cot", "long_cot", "multi_turn", "parallel"; see the
    module doc); ``n_checks``: the check units of long_cot and multi_turn."""
    if format == "cot":
        return _cot(problem.steps, problem.answer)
    if format == "long_cot":
        return f"<think>{chr(10).join(thinking_units(problem, n_checks))}</think><answer>{problem.answer}</answer>"
    if format == "multi_turn":
        return "".join(f"<think>{u}</think><answer>{problem.answer}</answer>" for u in thinking_units(problem, n_checks))
    if format == "parallel":
        paths, summary = parallel_paths(problem, n_paths)
        return "".join(f"<path{i + 1}>{p}</path{i + 1}>" for i, p in enumerate(paths)) + summary
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")


# ----------------------------------------------------------------------------- answer checking

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_INTEGER = re.compile(r"(-?)0*(\d+)(?:\.0*)?")
_DELIMITERS = "()[]{}\"'`$*"


def normalise_answer(text: str, family: str | None = None) -> str | None:
    """An answer's canonical integer string ("+007.0" -> "7", " -0 " -> "0"), or None when it is none.

    Removes all whitespace, then surrounding brackets, quotes, ``$`` and ``*`` and a final period
    (repeatedly), for equations a leading ``x=``, a leading ``+``, leading zeros and a trailing ``.0``."""
    s = re.sub(r"\s+", "", text)
    while True:
        before = s
        s = s.removesuffix(".")
        if len(s) >= 2 and s[0] in _DELIMITERS and s[-1] in _DELIMITERS:
            s = s[1:-1]
        if family == "equation" and s.startswith("x="):
            s = s[2:]
        if s == before:
            break
    s = s.removeprefix("+")
    match = _INTEGER.fullmatch(s)
    if match is None:
        return None
    sign, digits = match.groups()
    return digits if digits == "0" else sign + digits


def extract_answer(text: str) -> str | None:
    """The content of the last complete ``<answer>...</answer>`` in ``text`` (None when there is none)."""
    found = _ANSWER.findall(text)
    return found[-1] if found else None


def check_answer(text: str, problem: Problem) -> bool:
    """Whether the final answer of a model output (any of the three formats) equals ``problem.answer``."""
    found = extract_answer(text)
    if found is None:
        return False
    got = normalise_answer(found, problem.family)
    return got is not None and got == normalise_answer(problem.answer, problem.family)


# ----------------------------------------------------------------------------- tokens and SFT


def encode(text: str) -> list[int]:
    """UTF-8 bytes of ``text`` as token ids in [0, 256)."""
    return _TOKENIZER.encode(text).tolist()


def decode(ids) -> str:
    """Text of token ids up to the first EOS (exclusive), PAD ids dropped."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i != PAD:
            out.append(i)
    return _TOKENIZER.decode(out)


def sft_task(problems: list[Problem], format: str = "cot", seq_len: int | None = None, n_paths: int = 2,
             n_checks: int = CHECKS) -> SequenceTask:
    """Supervised fine-tuning data: rows ``prompt "\\n" completion EOS PAD...`` as next-token prediction.

    inputs (N, seq_len) = sequence[:-1], labels (N, seq_len) = sequence[1:], labels only on the
    completion and EOS (the label at the prompt's final newline is the first completion byte),
    IGNORE elsewhere; EOS is only ever a label (the input there is PAD). Vocabulary 256.

    Args:
        format: "cot", "long_cot", "multi_turn" (with ``n_checks`` checks) or "parallel" (``n_paths`` paths).
        seq_len: input length (None: the longest example's); a ValueError when too short.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    rows = []
    for problem in problems:
        prompt = encode(prompt_text(problem))
        completion = encode(format_trace(problem, format, n_paths, n_checks)) + [EOS]
        rows.append((prompt, completion))
    needed = max((len(p) + len(c) - 1 for p, c in rows), default=1)
    if seq_len is None:
        seq_len = needed
    elif not isinstance(seq_len, int) or seq_len < needed:
        raise ValueError(f"seq_len must be an int >= {needed} (the longest example's input length), got {seq_len!r}")
    inputs = torch.full((len(rows), seq_len), PAD, dtype=torch.long)
    labels = torch.full((len(rows), seq_len), IGNORE, dtype=torch.long)
    for r, (prompt, completion) in enumerate(rows):
        sequence = prompt + completion
        inputs[r, : len(sequence) - 1] = torch.tensor(sequence[:-1])
        start = len(prompt) - 1  # the position that reads the prompt's last byte predicts the first completion byte
        labels[r, start : len(sequence) - 1] = torch.tensor(completion)
    return SequenceTask(inputs, labels, VOCAB_SIZE)
