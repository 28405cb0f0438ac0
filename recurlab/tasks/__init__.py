"""Data for experiments: seeded synthetic tasks (and, later, text corpora).

Every synthetic task returns a :class:`SequenceTask` of ``inputs`` (N, L) int64
and ``labels`` (N, L) int64 with -100 wherever nothing is to be predicted.
"""

from .base import IGNORE, SequenceTask
from .mqar import MQARConfig, associative_recall, multi_query_associative_recall, selective_copying
from .structural import (binary_successor, exact_match, exact_match_accuracy, successor_splits, traversal_splits,
                         tree_traversal)

__all__ = ["IGNORE", "MQARConfig", "SequenceTask", "associative_recall", "multi_query_associative_recall",
           "selective_copying"]
__all__ += ["binary_successor", "exact_match", "exact_match_accuracy", "successor_splits", "traversal_splits",
            "tree_traversal"]
