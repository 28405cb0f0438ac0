"""Tests of the Generative Logic recipe: terms, matching and ordered rewriting, the counterexample filter,
the conjecture normalisation, the prover (every target from the axioms alone), the independent replay
checker (accepts the proofs, rejects tampered ones), the HTML anchors and links, and a tiny run."""

import copy
import json
import re

import pytest

from recurlab.recipes import generative_logic as g
from recurlab.recipes import generative_logic_check as chk

P = g.parse


@pytest.fixture(scope="module")
def small():
    """The whole loop at terms of <= 5 symbols (about 1.5 s)."""
    return g.discover(max_size=5, n_vars=3, n_values=5)


def test_parse_show_round_trip_and_errors():
    t = P("(x * y) + s(0)")
    assert t == ("+", ("*", "x", "y"), ("s", ("0",)))
    assert g.show(t) == "(x * y) + s(0)" and P(g.show(t)) == t
    assert g.size(t) == 6 and g.variables(t) == ["x", "y"]
    with pytest.raises(ValueError, match="unexpected"):
        P("x + y + z")  # binary arguments must be bracketed
    with pytest.raises(ValueError, match="missing"):
        P("s(x")


def test_match_substitute_replace_on_hand_cases():
    # x + s(y) against (a * b) + s(s(0)): x := a * b, y := s(0)
    sigma = g.match(P("x + s(y)"), P("(a * b) + s(s(0))"), {"x", "y"})
    assert sigma == {"x": P("a * b"), "y": P("s(0)")}
    assert g.substitute(P("s(x + y)"), sigma) == P("s((a * b) + s(0))")
    # non-linear pattern: both occurrences must agree
    assert g.match(P("x + x"), P("y + y"), {"x"}) == {"x": "y"}
    assert g.match(P("x + x"), P("y + z"), {"x"}) is None
    # names outside the pattern variables are constants (an induction hypothesis)
    assert g.match(P("x + y"), P("x + y"), set()) == {}
    assert g.match(P("x + y"), P("y + x"), set()) is None
    assert g.match(P("x * 0"), P("x + 0"), {"x"}) is None
    t = P("s((x + y) * z)")
    assert g.subterm(t, (0, 0, 1)) == "y"
    assert g.replace(t, (0, 0), P("y + x")) == P("s((y + x) * z)")


def test_path_order_orients_the_axioms_and_orders_commutativity():
    for text in g.AXIOMS.values():
        lhs, rhs = g.parse_eq(text)
        assert g.lpo_greater(lhs, rhs) and not g.lpo_greater(rhs, lhs), text
    assert g.lpo_greater(P("(x + y) + z"), P("x + (y + z)"))  # associativity rewrites to the right
    assert g.lpo_greater(P("y + x"), P("x + y")) and not g.lpo_greater(P("x + y"), P("y + x"))


def test_normalize_rewrites_with_the_definitions_and_records_each_step():
    rules = g.RuleSet(g._rule(n, g.parse_eq(t)) for n, t in g.AXIOMS.items())
    # 2 * 2 = 4 by the definitions alone
    nf, steps = g.normalize(P("s(s(0)) * s(s(0))"), rules)
    assert nf == P("s(s(s(s(0))))")
    assert steps[0].rule == "M2" and steps[0].direction == "lr" and steps[0].pos == ()
    assert steps[-1].term == nf
    # an equation between different normal forms is not joinable; x + s(0) = s(x) is
    assert g.join(P("0 + x"), P("x"), rules) is None
    chain = g.join(P("x + s(0)"), P("s(x)"), rules)
    assert [(st.rule, st.direction) for st in chain] == [("A2", "lr"), ("A1", "lr")]


def test_counterexample_rejects_false_conjectures_and_keeps_true_ones():
    assert g.counterexample(P("x + y"), P("x")) == {"x": 0, "y": 1}
    assert g.counterexample(P("x * y"), P("x + y")) == {"x": 0, "y": 1}
    assert g.counterexample(P("s(x) * y"), P("(x * y) + y")) is None
    assert g.evaluate(P("s(s(0)) * (x + s(0))"), {"x": 3}) == 8
    cands, stats = g.conjectures(max_size=5, n_vars=3, n_values=5)
    texts = {g.canonical(*eq)[0] for eq in cands}
    assert g.canonical(P("x + y"), P("x"))[0] not in texts  # falsified by evaluation
    assert g.canonical(P("x + y"), P("y + x"))[0] in texts
    # every candidate survives the counterexample search
    assert all(g.counterexample(*eq) is None for eq in cands)
    assert stats["candidates"] == len(cands) < stats["pairs_in_classes"]


def test_canonical_identifies_renamings_and_symmetry():
    a = g.canonical(P("y + z"), P("z + y"))
    b = g.canonical(P("x + y"), P("y + x"))
    c = g.canonical(P("(y + x) + z"), P("y + (x + z)"))
    d = g.canonical(P("x + (y + z)"), P("(x + y) + z"))
    assert a[0] == b[0] and c[0] == d[0] and a[0] != c[0]
    assert g.show_eq(d[1]) == "(x + y) + z = x + (y + z)"  # larger side first, variables renamed in order


def test_every_target_is_proven_from_the_axioms_alone(small):
    facts = small["facts"]
    assert all(small["targets"][name] for name in g.TARGETS), small["targets"]
    assert [f["id"] for f in facts if f["rule"] == "axiom"] == ["A1", "A2", "M1", "M2", "IND"]
    by_id = {f["id"]: f for f in facts}
    for name, fid in small["targets"].items():
        assert by_id[fid]["target"] == name
        assert g.canonical(*g.parse_eq(by_id[fid]["statement"]))[0] == g.canonical(*g.parse_eq(g.TARGETS[name]))[0]
    statements = {f["statement"] for f in facts}
    assert "0 + x = x" in statements and "s(x) + y = s(x + y)" in statements  # lemmas found on the way
    # premises always come earlier (the graph is acyclic and grounded in the axioms)
    seen = set()
    for f in facts:
        assert set(f["premises"]) <= seen, f["id"]
        seen.add(f["id"])


def test_replay_checker_accepts_the_proofs_and_rejects_tampering(small):
    facts = json.loads(json.dumps(small["facts"]))
    report = chk.check(facts)
    assert report.ok and report.facts == len(facts) and report.steps > 100, report.errors
    comm = next(f for f in facts if f.get("target") == "commutativity of +")

    def tampered(edit) -> str:
        bad = copy.deepcopy(facts)
        edit(next(f for f in bad if f["id"] == comm["id"]))
        r = chk.check(bad)
        assert not r.ok and r.errors[0].startswith(comm["id"]), r.errors  # the tampered fact is the first refused
        return r.errors[0]

    def change_premise(f):  # a step cites a different (true!) theorem
        st = f["step"]["proof"][0]
        st["by"] = "A1" if st["by"] != "A1" else "A2"
    tampered(change_premise)

    def change_position(f):
        st = f["base"]["proof"][0]
        st["pos"] = [0] + st["pos"]
    tampered(change_position)

    def drop_step(f):
        del f["step"]["proof"][0]
    tampered(drop_step)

    def drop_listed_premise(f):
        f["premises"] = f["premises"][1:]
    assert "listed premises" in tampered(drop_listed_premise)

    def cite_later(f):  # circular: cite a theorem proven after this one
        f["step"]["proof"][0]["by"] = facts[-1]["id"]
    assert "not an axiom or an earlier theorem" in tampered(cite_later)

    def generalise_ih(f):
        st = next(s for s in f["step"]["proof"] if s["by"] == "IH")
        st["subst"] = {f["var"]: "0"}
    assert "substitution" in tampered(generalise_ih)

    def remove_step_premise(f):
        del f["base"]["proof"][0]["by"]
    assert "premise None" in tampered(remove_step_premise)

    def ih_in_base(f):
        f["base"]["proof"][0]["by"] = "IH"
    assert "outside the step case" in tampered(ih_in_base)
    # a false "axiom" is refused, and so is everything built on it
    bad = copy.deepcopy(facts)
    bad[0]["statement"] = "x + 0 = 0"
    r = chk.check(bad)
    assert not r.ok and "not a Peano axiom" in r.errors[0] and len(r.errors) > 1


def test_checker_replays_a_hand_written_proof():
    facts = [{"id": n, "statement": t, "rule": "axiom", "premises": []} for n, t in chk.PEANO_AXIOMS.items()]
    # 0 + s(0) = s(0): A2 then A1 inside s(...)
    proof = [{"by": "A2", "dir": "lr", "pos": [], "subst": {"x": "0", "y": "0"}, "term": "s(0 + 0)"},
             {"by": "A1", "dir": "lr", "pos": [0], "subst": {"x": "0"}, "term": "s(0)"}]
    facts.append({"id": "T1", "statement": "0 + s(0) = s(0)", "rule": "rewriting", "premises": ["A1", "A2"],
                  "proof": proof})
    assert chk.check(facts).ok
    facts[-1]["proof"][1]["pos"] = []
    assert not chk.check(facts).ok


def test_html_has_an_anchor_for_every_step_and_a_link_for_every_premise(small):
    facts = small["facts"]
    page = g.proof_graph_html(facts)
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    hrefs = re.findall(r'href="#([^"]+)"', page)
    assert set(hrefs) <= ids  # every link lands on an anchor of the page
    assert "<script" not in page and "http" not in page  # self-contained
    n_steps = 0
    for f in facts:
        assert f["id"] in ids
        section = page[page.index(f'id="{f["id"]}"'):]
        section = section[:section.index("</section>")]
        for p in f["premises"]:
            assert f'href="#{p}"' in section, (f["id"], p)
        chains = [f.get("proof", [])] + [f[c]["proof"] for c in ("base", "step") if c in f]
        for st in (st for chain in chains for st in chain):
            n_steps += 1
            m = re.search(rf'<li id="{re.escape(st["id"])}">(.*?)</li>', page)
            assert m, st["id"]
            target = f"{f['id']}.ih" if st["by"] == "IH" else st["by"]
            assert f'href="#{target}"' in m.group(1), st["id"]
    assert n_steps > 100


def test_bad_config_names_the_argument():
    with pytest.raises(ValueError, match="n_vars"):
        g.conjectures(max_size=5, n_vars=0, n_values=5)
    with pytest.raises(ValueError, match="max_size"):
        g.conjectures(max_size=2, n_vars=2, n_values=5)
    with pytest.raises(ValueError, match="max_rounds"):
        g.discover(max_size=4, max_rounds=0)


def test_tiny_run_proves_targets_checks_and_is_byte_deterministic(tmp_path):
    cfg = g.Config(max_size=5)
    r1 = g.run(out_dir=tmp_path / "a", progress=False, config=cfg)
    r2 = g.run(out_dir=tmp_path / "b", progress=False, config=cfg)
    rows = {row.metric: row.ours for row in r1.rows}
    assert rows["theorems proven"] >= 20 and rows["replay check passed (all proofs)"] == 1
    assert all(rows[f"proven: {name}"] == 1 for name in g.TARGETS)
    # beats the trivial baseline: rewriting with the axioms alone proves none of the targets
    rules = g.RuleSet(g._rule(n, g.parse_eq(t)) for n, t in g.AXIOMS.items())
    assert not any(g.join(*g.parse_eq(t), rules) for t in g.TARGETS.values())
    for name in ("proofs.json", "proof_graph.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert [r.ours for r in r1.rows if "seconds" not in r.metric] == [r.ours for r in r2.rows if "seconds" not in r.metric]
    assert (tmp_path / "a" / "generative_logic_summary.png").stat().st_size > 0
    assert r1.details["check"]["ok"] and r1.details["check"]["errors"] == []
