"""The phonebook task: every lookup asks a name of the book and is labelled with that name's number, digits only;
query_accuracy counts a lookup only when all its digits are right."""

import pytest
import torch

from recurlab.tasks import IGNORE
from recurlab.tasks.phonebook import PhonebookConfig, phonebook, query_accuracy


def _parse(row: torch.Tensor) -> tuple[dict, list]:
    text = bytes(row.tolist()).decode()
    book, queries = {}, []
    for line in text.strip(" ").split("\n"):
        if ":" in line:
            name, number = line.split(":")
            assert name not in book, "names in a book are distinct"
            book[name] = number
        elif line:
            name, number = line.split("?")
            queries.append((name, number))
    return book, queries


def test_every_lookup_asks_a_name_of_the_book_and_is_labelled_with_its_number():
    cfg = PhonebookConfig(context_len=200, name_len=3, number_len=4, n_queries=5)
    task = phonebook(6, cfg, seed=3)
    assert task.inputs.shape == task.labels.shape == (6, 200) and task.vocab_size == 256
    for inputs, labels in zip(task.inputs, task.labels):
        book, queries = _parse(inputs)  # the inputs end with the last digit (its newline is not an input)
        assert len(book) == cfg.n_entries and len(queries) == cfg.n_queries
        assert len({name for name, _ in queries}) == cfg.n_queries
        assert all(book[name] == number and len(number) == 4 and len(name) == 3 for name, number in queries)
        labelled = labels[labels != IGNORE]
        assert bytes(labelled.tolist()).decode() == "".join(number for _, number in queries)
        # each label is the byte after its position: the next-token target
        positions = (labels != IGNORE).nonzero().squeeze(1)
        assert torch.equal(inputs[positions + 1], labels[positions])


def test_the_book_fills_the_context_and_the_seed_fixes_it():
    cfg = PhonebookConfig(context_len=100, name_len=3, number_len=4, n_queries=2)
    a, b, c = phonebook(3, cfg, seed=1), phonebook(3, cfg, seed=1), phonebook(3, cfg, seed=2)
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    # 101 bytes hold 11 lines of 9: 9 entries + 2 queries, 2 leading spaces
    assert cfg.n_entries == 9 and bytes(a.inputs[0, :3].tolist()) == b"  " + bytes([a.inputs[0, 2]])
    assert a.inputs[0, 2] != ord(" ")


def test_a_lookup_counts_only_when_every_digit_is_right():
    labels = torch.full((2, 8), IGNORE)
    labels[:, 1:3] = torch.tensor([5, 6])  # query 1: digits 5 6
    labels[:, 5:7] = torch.tensor([7, 8])  # query 2: digits 7 8
    predictions = labels.clamp(min=0).clone()
    predictions[0, 2] = 0  # row 0: query 1 loses a digit
    predictions[1, 0] = 9  # row 1: a wrong unlabelled position does not count
    assert query_accuracy(predictions, labels, number_len=2).tolist() == [0.5, 1.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"context_len": 20, "n_queries": 2}, "fewer than n_queries"),
    ({"context_len": 1000, "name_len": 1}, "distinct names"),
    ({"n_queries": 0}, "n_queries must be >= 1"),
])
def test_bad_configs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        phonebook(1, PhonebookConfig(**kwargs))


def test_query_accuracy_refuses_mismatched_or_ragged_labels():
    labels = torch.full((2, 6), IGNORE)
    labels[0, :2] = 1
    with pytest.raises(ValueError, match="same number of queries"):
        query_accuracy(labels.clamp(min=0), labels, number_len=2)
    with pytest.raises(ValueError, match="must match"):
        query_accuracy(labels[:, :3], labels, number_len=2)
