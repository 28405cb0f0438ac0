"""Independent replay checker for the proof graphs of :mod:`recurlab.recipes.generative_logic`.

It reads only the exported JSON facts (``proofs.json``) and shares no code with the prover: terms are
parsed, instantiated and replaced by the functions below. Nothing the prover asserts is trusted except
what each step states (premise, direction, position, substitution); every step is recomputed.

A fact is accepted when
  - axiom: its id and statement are one of the four Peano definitions below, or it is the induction
    schema ``IND``;
  - rewriting: starting from the statement's left side, each step replaces, at its position, the
    instance sigma(a) of its premise's side a by sigma(b) (a -> b is the premise read in the stated
    direction), and the chain ends at the right side. A premise must be an axiom or a theorem accepted
    earlier in the list (so no fact can use itself or a later one); sigma may bind only the premise's
    variables; the term the step states must equal the recomputed one;
  - induction on v: the base chain proves P[v := 0], the step chain proves P[v := s(v)] and may also cite
    ``IH``, the statement P itself, only verbatim (empty substitution: the hypothesis is about the same v);
  - and in both cases the fact's listed premises are exactly the premises its steps cite (plus ``IND``
    for induction).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PEANO_AXIOMS = {
    "A1": "x + 0 = x",
    "A2": "x + s(y) = s(x + y)",
    "M1": "x * 0 = 0",
    "M2": "x * s(y) = (x * y) + x",
}
SCHEMA = "IND"


class CheckError(ValueError):
    pass


# ----------------------------------------------------------------------------- terms: ("v", name) | ("0",) | ("s", t) | (op, a, b)


def read_term(text: str):
    """Parse ``0``, variables, ``s(t)`` and ``a + b`` / ``a * b`` whose binary arguments are bracketed."""
    term, i = _read(text, _skip(text, 0))
    i = _skip(text, i)
    if i != len(text):
        raise CheckError(f"unexpected text at {i} in {text!r}")
    return term


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] == " ":
        i += 1
    return i


def _read(text: str, i: int):
    left, i = _read_atom(text, i)
    j = _skip(text, i)
    if j < len(text) and text[j] in "+*":
        right, k = _read_atom(text, _skip(text, j + 1))
        return (text[j], left, right), k
    return left, i


def _read_atom(text: str, i: int):
    if i >= len(text):
        raise CheckError(f"{text!r} ends too early")
    c = text[i]
    if c == "0":
        return ("0",), i + 1
    if c == "(":
        inner, i = _read(text, _skip(text, i + 1))
        i = _skip(text, i)
        if i >= len(text) or text[i] != ")":
            raise CheckError(f"missing ')' in {text!r}")
        return inner, i + 1
    if c == "s" and text[i + 1:i + 2] == "(":
        inner, i = _read(text, _skip(text, i + 2))
        i = _skip(text, i)
        if i >= len(text) or text[i] != ")":
            raise CheckError(f"missing ')' in {text!r}")
        return ("s", inner), i + 1
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    name = text[i:j]
    if not name or not name[0].isalpha() or name == "s":
        raise CheckError(f"unexpected {c!r} at {i} in {text!r}")
    return ("v", name), j


def read_equation(text: str):
    if text.count("=") != 1:
        raise CheckError(f"an equation has exactly one '=': {text!r}")
    a, b = text.split("=")
    return read_term(a.strip()), read_term(b.strip())


def _names(t, out: set) -> set:
    if t[0] == "v":
        out.add(t[1])
    else:
        for a in t[1:]:
            _names(a, out)
    return out


def _instance(t, sigma: dict):
    if t[0] == "v":
        return sigma.get(t[1], t)
    return (t[0], *(_instance(a, sigma) for a in t[1:]))


def _at(t, pos):
    for i in pos:
        if t[0] in ("v", "0") or not 0 <= i < len(t) - 1:
            raise CheckError(f"position {list(pos)} does not exist")
        t = t[1 + i]
    return t


def _put(t, pos, u):
    if not pos:
        return u
    args = list(t[1:])
    args[pos[0]] = _put(args[pos[0]], pos[1:], u)
    return (t[0], *args)


# ----------------------------------------------------------------------------- replay


@dataclass
class CheckReport:
    ok: bool
    facts: int = 0
    steps: int = 0
    errors: list[str] = field(default_factory=list)


def _replay(fid: str, start, goal, steps, known: dict, hypothesis=None) -> set:
    """Replay a chain from ``start``; it must end at ``goal``. Returns the premises it cites."""
    cur, used = start, set()
    if not isinstance(steps, list):
        raise CheckError(f"{fid}: the proof must be a list of steps")
    for k, st in enumerate(steps):
        where = f"{fid} step {st.get('id', k + 1)}"
        by = st.get("by")
        if by == "IH":
            if hypothesis is None:
                raise CheckError(f"{where}: cites IH outside the step case of an induction")
            eq, bindable = hypothesis, set()
        elif by in known and known[by] is not None:  # (the schema IND is no equation to rewrite with)
            eq, bindable = known[by]
            used.add(by)
        else:
            raise CheckError(f"{where}: premise {by!r} is not an axiom or an earlier theorem")
        direction = st.get("dir")
        if direction not in ("lr", "rl"):
            raise CheckError(f"{where}: direction must be 'lr' or 'rl', got {direction!r}")
        a, b = eq if direction == "lr" else (eq[1], eq[0])
        subst = st.get("subst", {})
        if not set(subst) <= bindable:
            raise CheckError(f"{where}: substitution binds {sorted(set(subst) - bindable)}, not variables of {by}")
        sigma = {name: read_term(text) for name, text in subst.items()}
        pos = tuple(st.get("pos", ()))
        if _at(cur, pos) != _instance(a, sigma):
            raise CheckError(f"{where}: the term at {list(pos)} is not the instance of {by}'s side")
        cur = _put(cur, pos, _instance(b, sigma))
        if "term" in st and read_term(st["term"]) != cur:
            raise CheckError(f"{where}: the stated result differs from the replayed one")
    if cur != goal:
        raise CheckError(f"{fid}: the chain ends at a term other than the goal's right side")
    return used


def check_fact(fact: dict, known: dict) -> tuple[tuple, int]:
    """Check one fact against the facts accepted before it; its equation and the number of steps replayed."""
    fid, rule = fact.get("id"), fact.get("rule")
    if fid in known:
        raise CheckError(f"{fid}: defined twice")
    if rule == "axiom":
        if fid == SCHEMA:
            return None, 0
        if fid not in PEANO_AXIOMS or read_equation(fact["statement"]) != read_equation(PEANO_AXIOMS[fid]):
            raise CheckError(f"{fid}: {fact.get('statement')!r} is not a Peano axiom")
        return read_equation(fact["statement"]), 0
    lhs, rhs = read_equation(fact["statement"])
    if rule == "rewriting":
        used = _replay(fid, lhs, rhs, fact.get("proof"), known)
        n = len(fact["proof"])
    elif rule == "induction":
        if SCHEMA not in known:
            raise CheckError(f"{fid}: induction without the schema {SCHEMA}")
        v = fact.get("var")
        if v not in _names(lhs, _names(rhs, set())):
            raise CheckError(f"{fid}: induction variable {v!r} does not occur in the statement")
        zero, succ = {v: ("0",)}, {v: ("s", ("v", v))}
        base, step = fact.get("base", {}), fact.get("step", {})
        used = _replay(f"{fid} base", _instance(lhs, zero), _instance(rhs, zero), base.get("proof"), known)
        used |= _replay(f"{fid} step", _instance(lhs, succ), _instance(rhs, succ), step.get("proof"), known,
                        hypothesis=(lhs, rhs))
        used.add(SCHEMA)
        n = len(base["proof"]) + len(step["proof"])
    else:
        raise CheckError(f"{fid}: unknown rule {rule!r}")
    listed = fact.get("premises", [])
    if sorted(set(listed)) != sorted(listed) or set(listed) != used:
        raise CheckError(f"{fid}: listed premises {sorted(listed)} differ from those its steps cite {sorted(used)}")
    return (lhs, rhs), n


def check(facts: list[dict]) -> CheckReport:
    """Replay every fact in order; a fact that fails is not available to later facts."""
    known: dict = {}
    report = CheckReport(ok=True)
    for fact in facts:
        try:
            eq, n = check_fact(fact, known)
        except (CheckError, KeyError, TypeError, IndexError) as error:
            report.ok = False
            report.errors.append(str(error) if isinstance(error, CheckError) else f"{fact.get('id')}: malformed "
                                 f"({type(error).__name__}: {error})")
            continue
        fid = fact["id"]
        known[fid] = None if eq is None else (eq, _names(eq[0], _names(eq[1], set())))
        report.facts += 1
        report.steps += n
    return report
