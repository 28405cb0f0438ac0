"""bench reasoning at a tiny size: both methods train and are evaluated in every setting, the report and plot are
written, and the training rows are laid out as each method needs."""

import json

import pytest

from recurlab.bench import harness, load
from recurlab.bench.reasoning import PATH_START, SUMMARY_START, ReasoningBenchConfig, training_rows
from recurlab.tasks.base import IGNORE


def test_a_tiny_run_reports_every_setting(tmp_path):
    cfg = ReasoningBenchConfig.quick(n_train=40, n_test=4, train_steps=4, eval_paths=(1, 2), max_path_tokens=8,
                                     max_summary_tokens=8, grpo_steps=2, grpo_group=2)
    harness.run(load("reasoning"), cfg, tmp_path, progress=False)
    data = json.loads((tmp_path / "results.json").read_text())
    settings = {(r["method"], r["setting"], r["n"]) for r in data["rows"]}
    assert settings == {("cot", "greedy", 1), ("cot", "vote", 2), ("parathinker", "paths", 1),
                        ("parathinker", "paths", 2), ("long-cot", "greedy", 1), ("mind", "greedy", 1),
                        ("mind-grpo", "greedy", 1)}
    assert all(0 <= r["accuracy"] <= 1 and 0 < r["first_answer_tokens"] <= r["tokens_per_problem"]
               for r in data["rows"])
    text = (tmp_path / "results.md").read_text()
    assert (tmp_path / "reasoning.png").exists() and "ParaThinker, P = 2" in text and "MinD SFT + GRPO" in text
    assert "GRPO reward" in text and "paths alone" in text
    paths = [r for r in data["rows"] if r["setting"] == "paths"]
    assert all(0 <= r["path_accuracy"] <= 1 and 0 <= r["path_vote_accuracy"] <= 1 for r in paths)


def test_only_the_grpo_jobs_hold_the_grpo_settings():
    """Changing a GRPO setting re-runs the mind-grpo jobs only (the others' keys do not hold it)."""
    from recurlab.bench.reasoning import jobs

    a, b = (jobs(ReasoningBenchConfig(grpo_steps=n)) for n in (10, 20))
    same = [x == y for x, y in zip(a, b)]
    assert same == [j["method"] != "mind-grpo" for j in a] and "grpo_steps" not in a[0]


def test_the_mind_reward_pays_correct_answers_and_charges_length():
    from recurlab.bench.reasoning import mind_reward, _problems
    from recurlab.tasks import reasoning

    cfg = ReasoningBenchConfig.quick(n_train=2)
    problem = _problems(cfg, "train")[0]
    reward = mind_reward(cfg, [problem])
    prompt = reasoning.encode(reasoning.prompt_text(problem))
    right = reasoning.encode(f"<answer>{problem.answer}</answer>")
    wrong = reasoning.encode(f"<answer>{int(problem.answer) + 1}</answer>")
    assert reward(prompt, right) == pytest.approx(1.1 - 0.002 * len(right))
    assert reward(prompt, wrong) == pytest.approx(0.1 - 0.002 * len(wrong))
    assert reward(prompt, reasoning.encode("no answer")) == pytest.approx(-0.002 * 9)


def test_training_rows_of_each_method():
    cfg = ReasoningBenchConfig.quick(n_train=3, train_paths=2)
    cot = training_rows(cfg, "cot")
    assert cot.inputs.shape[0] == 3 and int(cot.segments.abs().sum()) == 0
    cfg = ReasoningBenchConfig.quick(n_train=60, train_paths=2)
    text = lambda rows, i: bytes(rows.labels[i][rows.labels[i] > 0].tolist())  # noqa: E731
    mind, long_cot = training_rows(cfg, "mind"), training_rows(cfg, "long-cot")
    turns = [text(mind, i).count(b"<answer>") for i in range(60)]  # MinD: one answer per unit
    assert set(turns) == {1, 2, 3}  # the solution and 0-2 checks, drawn per problem
    # long CoT holds the same units in one thinking block: as many checks, one answer
    assert [text(long_cot, i).count(b"check: ") for i in range(60)] == [t - 1 for t in turns]
    assert all(text(long_cot, i).count(b"<answer>") == 1 for i in range(60))
    cfg = ReasoningBenchConfig.quick(n_train=3, train_paths=2)
    para = training_rows(cfg, "parathinker")
    assert para.inputs.shape[0] == 3 * (2 + 1)  # two path rows and one summary row per problem
    summary_rows = (para.inputs == SUMMARY_START).any(1)
    assert int(summary_rows.sum()) == 3 and int((para.inputs == PATH_START).sum()) == 3 * 2 + 3 * 2
    assert set(para.segments.unique().tolist()) == {0, 1, 2}
    assert bool(((para.labels != IGNORE).sum(1) > 0).all())


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="mixers must be self-contained"):
        ReasoningBenchConfig(mixers=("gmu",))
    with pytest.raises(ValueError, match="eval_paths must be at most 8"):
        ReasoningBenchConfig(eval_paths=(1, 16))
    with pytest.raises(ValueError, match="eval_paths must be at most train_paths=2"):
        ReasoningBenchConfig(eval_paths=(1, 4), train_paths=2)


def test_the_default_token_budgets_fit_every_path_and_summary():
    """A budget shorter than the texts truncates the summary before its answer: accuracy 0 whatever the model
    (what a first full run measured)."""
    from recurlab.bench.reasoning import _problems
    from recurlab.tasks import reasoning

    cfg = ReasoningBenchConfig(n_train=300)
    longest_path = longest_summary = longest_trace = longest_checked = 0
    for p in _problems(cfg, "train"):
        paths, summary = reasoning.parallel_paths(p, max(cfg.eval_paths))
        longest_path = max([longest_path] + [len(reasoning.encode(t)) for t in paths])
        longest_summary = max(longest_summary, len(reasoning.encode(summary)))
        longest_trace = max(longest_trace, len(reasoning.encode(reasoning.format_trace(p, "cot"))))
        longest_checked = max(longest_checked, *(len(reasoning.encode(reasoning.format_trace(p, f)))
                                                 for f in ("long_cot", "multi_turn")))
    assert longest_path < cfg.max_path_tokens and longest_summary < cfg.max_summary_tokens
    assert longest_trace < cfg.budget("cot") and longest_checked < cfg.budget("mind") == cfg.budget("long-cot")
