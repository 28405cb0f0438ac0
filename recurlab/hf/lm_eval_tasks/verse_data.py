"""lm-eval's ``custom_dataset`` loaders of recurlab's local tasks: the JSONL beside this file, read offline."""

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def _test_split(name: str) -> datasets.DatasetDict:
    rows = [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def load_cloze(**kwargs) -> datasets.DatasetDict:
    """verse_cloze.jsonl as a test split ({"context", "target"} rows); lm-eval's metadata kwargs are ignored."""
    return _test_split("verse_cloze.jsonl")


def load_choice(**kwargs) -> datasets.DatasetDict:
    """verse_choice.jsonl as a test split ({"context", "choices", "gold"} rows)."""
    return _test_split("verse_choice.jsonl")
