import re

import pytest
import torch

from recurlab.tasks.base import IGNORE
from recurlab.tasks.reasoning import (EOS, FAMILIES, PAD, VOCAB_SIZE, Problem, check_answer, decode, encode,
                                      extract_answer, format_trace, generate, normalise_answer, parallel_paths,
                                      prompt_text, sft_task)

# ----------------------------------------------------------------------------- independent checkers


def tokens_of(expr: str) -> list:
    """'12+21-5' -> [12, '+', 21, '-', 5] (a leading '-' belongs to the first number)."""
    parts = re.findall(r"^-?\d+|\d+|[+\-*]", expr)
    assert "".join(parts) == expr, expr
    return [p if p in "+-*" else int(p) for p in parts]


def check_chain_trace(steps, states, expr, modulus=None):
    """Replay a trace on the expression's token list: each step must combine two adjacent operands
    that precedence allows, its arithmetic must be right, and each state (unless states is None) must be
    the reduced expression. Returns the value the trace reaches."""
    current = tokens_of(expr)
    states = [None] * len(steps) if states is None else states
    pattern = (r"(-?\d+)([+\-*])(\d+)=(-?\d+)" if modulus is None
               else rf"(\d+)([+*])(\d+) mod {modulus}=(\d+)")
    for step, state in zip(steps, states):
        a, op, b, c = re.fullmatch(pattern, step).groups()
        a, b, c = int(a), int(b), int(c)
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        assert c == (value if modulus is None else value % modulus), step
        ops = current[1::2]
        candidates = [i for i in range(len(ops)) if current[2 * i] == a and ops[i] == op and current[2 * i + 2] == b]
        assert candidates, f"{step} does not match {current}"
        i = candidates[0]
        if "*" in ops:
            assert op == "*", f"{step}: a sum before the products"
        current = current[: 2 * i] + [c] + current[2 * i + 3 :]
        if state is None:
            continue
        if len(current) == 1:
            assert state == str(c)
        else:
            shown = "".join(str(t) for t in current)
            assert state == (shown if modulus is None else f"({shown}) mod {modulus}")
    assert len(current) == 1
    return current[0]


def python_value(lhs: str, x: int) -> int:
    """'2(3x+4)-6' at x: implicit products made explicit and evaluated by Python."""
    expr = re.sub(r"(\d)x", r"\1*x", lhs)
    expr = re.sub(r"(\d)\(", r"\1*(", expr)
    return eval(expr, {"x": x})


def check_equation_trace(prompt, steps, answer):
    lhs, rhs = re.fullmatch(r"(.+)=(-?\d+), x=\?", prompt).groups()
    x = int(answer)
    assert python_value(lhs, x) == int(rhs)
    previous = int(rhs)
    for step in steps:
        what, lhs, rhs = re.fullmatch(r"([a-z ]+(?: -?\d+)?): (.+)=(-?\d+)", step).groups()
        rhs = int(rhs)
        assert python_value(lhs, x) == rhs, step  # the answer satisfies every equation of the trace
        if what.startswith("subtract"):
            assert rhs == previous - int(what.split()[1])
        elif what.startswith("add"):
            assert rhs == previous + int(what.split()[1])
        elif what.startswith("divide by"):
            assert rhs * int(what.split()[2]) == previous
        else:
            assert what == "expand" and rhs == previous and re.fullmatch(r"\d*x([+-]\d+)?", lhs)
        previous = rhs
    assert steps[-1].endswith(f": x={x}")


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_is_determined_by_seed(family):
    a = generate(family, 20, seed=7)
    b = generate(family, 20, seed=7)
    c = generate(family, 20, seed=8)
    assert a == b
    assert [p.prompt for p in a] != [p.prompt for p in c]


@pytest.mark.parametrize("steps,digits", [(1, 1), (3, 2), (5, 3)])
def test_arithmetic_traces_reach_the_answer(steps, digits):
    for p in generate("arithmetic", 60, seed=steps, steps=steps, digits=digits):
        expr = p.prompt.removesuffix("=?")
        value = eval(expr)  # Python's precedence is the documented one
        assert p.answer == str(value) and p.states[-1] == p.answer
        assert check_chain_trace(p.steps, p.states, expr) == value
        assert p.orders[0] == p.steps and len(tokens_of(expr)) == 2 * steps + 1
        for order in p.orders:  # every alternative order is valid too
            assert len(order) == steps and check_chain_trace(order, None, expr) == value


def test_modular_traces_reach_the_answer():
    for p in generate("modular", 80, seed=1, steps=4, digits=2):
        expr, m = re.fullmatch(r"\((.+)\) mod (\d+)=\?", p.prompt).groups()
        m = int(m)
        value = eval(expr) % m
        assert p.answer == str(value)
        assert check_chain_trace(p.steps, p.states, expr, m) == value
        for order in p.orders:
            assert check_chain_trace(order, None, expr, m) == value


@pytest.mark.parametrize("steps,digits", [(1, 1), (2, 1), (4, 2)])
def test_equation_traces_reach_the_answer(steps, digits):
    for p in generate("equation", 60, seed=steps, steps=steps, digits=digits):
        assert len(p.steps) == steps and p.states[-1] == p.answer
        for order in p.orders:
            check_equation_trace(p.prompt, order, p.answer)


def test_alternative_orders_exist_where_the_family_has_them():
    eq = generate("equation", 100, seed=0, steps=3)
    assert any(len(p.orders) > 1 for p in eq)
    assert any(o[0].startswith("expand") for p in eq for o in p.orders[1:])
    two = generate("equation", 200, seed=0, steps=2)
    assert any(o[0].startswith("divide by") and o != p.steps for p in two for o in p.orders)  # divide first
    arith = generate("arithmetic", 100, seed=0, steps=4)
    assert any(len(p.orders) > 1 for p in arith)
    for p in generate("arithmetic", 50, seed=0, steps=1):
        assert len(p.orders) == 1  # one operation: one order


def test_difficulty_knobs_change_steps_and_digits():
    for family in FAMILIES:
        for steps in (1, 3, 6):
            problems = generate(family, 30, seed=2, steps=steps, digits=2)
            assert all(len(p.steps) == steps and p.difficulty == {"steps": steps, "digits": 2} for p in problems)
    for digits in (1, 2, 4):
        for family in ("arithmetic", "modular"):
            for p in generate(family, 30, seed=3, steps=3, digits=digits):
                numbers = re.findall(r"\d+", p.prompt)
                assert all(len(n) == digits for n in numbers), p.prompt
        for p in generate("equation", 30, seed=3, steps=2, digits=digits):
            assert len(p.answer) == digits
            constants = [int(c) for c in re.findall(r"[+-](\d+)", p.prompt.split("=")[0])]
            assert all(len(str(c)) == digits for c in constants)


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="family"):
        generate("calculus", 1, 0)
    with pytest.raises(ValueError, match="steps"):
        generate("arithmetic", 1, 0, steps=0)
    with pytest.raises(ValueError, match="digits"):
        generate("modular", 1, 0, digits=0)


# ----------------------------------------------------------------------------- formats and answers


def test_formats_render_the_trace_and_answer():
    p = generate("equation", 1, seed=5, steps=3)[0]
    cot = format_trace(p, "cot")
    assert cot == "<think>" + "\n".join(p.steps) + f"</think><answer>{p.answer}</answer>"
    turns = re.findall(r"<think>(.*?)</think><answer>(.*?)</answer>", format_trace(p, "multi_turn"), re.DOTALL)
    checks = ["check: " + "\n".join(p.orders[i % len(p.orders)]) for i in (1, 2)]
    assert turns == [("\n".join(p.steps), p.answer)] + [(c, p.answer) for c in checks]  # every turn answers
    assert format_trace(p, "long_cot") == ("<think>" + "\n".join(["\n".join(p.steps)] + checks)
                                           + f"</think><answer>{p.answer}</answer>")
    assert format_trace(p, "multi_turn", n_checks=0) == cot == format_trace(p, "long_cot", n_checks=0)
    paths, summary = parallel_paths(p, 4)
    assert len(paths) == 4
    for i, path in enumerate(paths):
        assert path == "<think>" + "\n".join(p.orders[i % len(p.orders)]) + f"</think><answer>{p.answer}</answer>"
    assert extract_answer(summary) == p.answer
    flat = format_trace(p, "parallel", 4)
    assert flat.startswith("<path1>" + paths[0] + "</path1><path2>") and flat.endswith(summary)
    for fmt in ("cot", "long_cot", "multi_turn", "parallel"):
        assert check_answer(prompt_text(p) + format_trace(p, fmt), p)


def test_check_answer_hand_cases():
    p = Problem("12+7*3-5=?", ["7*3=21", "12+21=33", "33-5=28"], ["12+21-5", "33-5", "28"], "28", "arithmetic",
                {"steps": 3, "digits": 2})
    for ok in ["<answer>28</answer>", "<answer> 28 </answer>", "<answer>+28</answer>", "<answer>028</answer>",
               "<answer>28.0</answer>", "<answer>(28)</answer>", "<answer>$28$</answer>", "<answer>**28**</answer>",
               "<answer>28.</answer>", "<think>x</think><answer>33-5</answer><think>y</think><answer>28</answer>",
               "<answer>1</answer><summary>..</summary><answer>\n28\n</answer>"]:
        assert check_answer(ok, p), ok
    for bad in ["<answer>29</answer>", "<answer>28</answer><answer>29</answer>", "<answer>2 8 0</answer>",
                "<answer>28.5</answer>", "<answer>-28</answer>", "28", "<think>28</think>", "<answer>28",
                "", "<answer></answer>", "<answer>x=28</answer>", "<answer>33-5</answer>"]:
        assert not check_answer(bad, p), bad
    neg = Problem("3-5*4=?", ["5*4=20", "3-20=-17"], ["3-20", "-17"], "-17", "arithmetic", {"steps": 2, "digits": 1})
    assert check_answer("<answer>- 017</answer>", neg) and not check_answer("<answer>17</answer>", neg)
    eq = Problem("3x+4=19, x=?", ["subtract 4: 3x=15", "divide by 3: x=5"], ["3x=15", "5"], "5", "equation",
                 {"steps": 2, "digits": 1})
    assert check_answer("<answer>x = 5</answer>", eq) and check_answer("<answer>5</answer>", eq)
    assert not check_answer("<answer>x=6</answer>", eq)
    assert normalise_answer("-0") == "0" and normalise_answer("+0007.00") == "7" and normalise_answer("seven") is None


# ----------------------------------------------------------------------------- tokens and SFT


def test_encode_decode_bytes():
    text = "(37*12+5) mod 7=?\n<think>a</think>"
    ids = encode(text)
    assert all(0 <= i < VOCAB_SIZE for i in ids) and len(ids) == len(text)
    assert decode(ids) == text
    assert decode(ids + [EOS] + encode("junk")) == text
    assert decode([PAD] + ids + [PAD]) == text


@pytest.mark.parametrize("fmt", ["cot", "long_cot", "multi_turn", "parallel"])
def test_sft_task_labels_only_the_completion(fmt):
    problems = generate("modular", 5, seed=0) + generate("equation", 5, seed=0)
    task = sft_task(problems, fmt, n_paths=3)
    assert task.vocab_size == VOCAB_SIZE
    for p, x, y in zip(problems, task.inputs.tolist(), task.labels.tolist()):
        prompt = encode(prompt_text(p))
        completion = encode(format_trace(p, fmt, n_paths=3))
        labelled = [i for i, v in enumerate(y) if v != IGNORE]
        # labels start at the position reading the prompt's last byte (the newline) and run without gaps
        assert labelled == list(range(len(prompt) - 1, len(prompt) + len(completion)))
        assert [y[i] for i in labelled] == completion + [EOS]
        assert x[: len(prompt)] == prompt  # the prompt is read, never predicted
        assert x[len(prompt) : len(prompt) + len(completion)] == completion
        assert all(v == PAD for v in x[len(prompt) + len(completion) :])  # EOS is only a label
        assert check_answer(decode(x[len(prompt) :]), p)
    padded = sft_task(problems, fmt, seq_len=task.seq_len + 5, n_paths=3)
    assert padded.seq_len == task.seq_len + 5 and torch.equal(padded.inputs[:, : task.seq_len], task.inputs)
    with pytest.raises(ValueError, match="seq_len"):
        sft_task(problems, fmt, seq_len=task.seq_len - 1, n_paths=3)
    with pytest.raises(ValueError, match="format"):
        sft_task(problems, "tree")
