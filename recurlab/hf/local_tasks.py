"""Two small evaluation tasks for lm-eval built offline from a text (by default the held-out end of recurlab's
default corpus), shipped under ``recurlab/hf/lm_eval_tasks/`` as JSONL beside their task YAML.

    recurlab_verse_cloze    (loglikelihood)    the last word of a verse given the rest: accuracy (greedy
                                                continuation) and perplexity of the word, as LAMBADA scores
    recurlab_verse_choice   (multiple_choice)  the true second half of a verse among 4 (3 from other verses):
                                                accuracy and length-normalised accuracy, as HellaSwag scores

A verse is a line of the text with at least 8 words that does not start a chapter ("Genesis 1").
The items are drawn with a fixed seed, so ``python -m recurlab.hf.local_tasks`` writes the same files again
(from the default corpus' validation split: the last 5%, which ``recurlab train`` never trains on).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"
TASK_NAMES = ("recurlab_verse_cloze", "recurlab_verse_choice")


def verses(text: str, min_words: int = 8) -> list[str]:
    """The lines of ``text`` with at least min_words words, chapter headings ("Genesis 1") left out."""
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if len(line.split()) >= min_words and not re.fullmatch(r"[\w ]+ \d+", line)]


def cloze_items(lines: list[str], n: int, seed: int = 0) -> list[dict]:
    """n items {"context": verse without its last word, "target": " " + the last word} (without its trailing
    punctuation, which is dropped; lm-eval scores a loglikelihood target as given, with no delimiter, so the
    space is the target's, as in LAMBADA's task)."""
    items = []
    for line in random.Random(seed).sample(lines, min(n, len(lines))):
        match = re.fullmatch(r"(.*\S) ([A-Za-z']+)\W*", line)
        if match:
            items.append({"context": match.group(1), "target": " " + match.group(2)})
    return items


def choice_items(lines: list[str], n: int, seed: int = 0, n_choices: int = 4) -> list[dict]:
    """n items {"context": first half of a verse's words, "choices": n_choices second halves, "gold": index of
    the true one}; the others are second halves of other verses (lm-eval puts a space before each choice)."""
    rng = random.Random(seed)
    picked = rng.sample(range(len(lines)), min(n, len(lines)))
    halves = [line.split() for line in lines]
    items = []
    for i in picked:
        words = halves[i]
        cut = len(words) // 2
        others = rng.sample([j for j in range(len(lines)) if j != i], n_choices - 1)
        choices = [" ".join(words[cut:])] + [" ".join(halves[j][len(halves[j]) // 2:]) for j in others]
        order = list(range(n_choices))
        rng.shuffle(order)
        items.append({"context": " ".join(words[:cut]), "choices": [choices[k] for k in order],
                      "gold": order.index(0)})
    return items


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def build(text: str, folder: str | Path = TASKS_DIR, n_cloze: int = 300, n_choice: int = 200, seed: int = 0) -> None:
    """Write verse_cloze.jsonl and verse_choice.jsonl into ``folder`` from ``text``."""
    lines = verses(text)
    if len(lines) < 4:
        raise ValueError(f"text must have at least 4 verses (lines of 8 words or more), got {len(lines)}")
    folder = Path(folder)
    write_jsonl(folder / "verse_cloze.jsonl", cloze_items(lines, n_cloze, seed))
    write_jsonl(folder / "verse_choice.jsonl", choice_items(lines, n_choice, seed))


if __name__ == "__main__":
    from ..tasks.text import default_corpus, split_text

    build(split_text(default_corpus(), 0.05)[1])
    print(f"wrote {TASKS_DIR}/verse_cloze.jsonl and verse_choice.jsonl")
