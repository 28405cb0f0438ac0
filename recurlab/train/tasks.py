"""Named training setups for ``recurlab train``: build the task data and the model from arguments."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import CausalLM, ModelConfig
from ..tasks import MQARConfig, SequenceTask, associative_recall, multi_query_associative_recall, selective_copying

TASKS = ("mqar", "ar", "copy")


@dataclass
class SyntheticSetup:
    task: str = "mqar"
    seq_len: int = 64
    num_kv_pairs: int = 4
    vocab_size: int = 8192
    train_examples: int = 50_000
    eval_examples: int = 1_000
    data_seed: int = 0

    def build(self) -> tuple[SequenceTask, SequenceTask]:
        """(train, eval) from disjoint seeds."""
        train_seed, eval_seed = 2 * self.data_seed + 1, 2 * self.data_seed + 2
        if self.task == "mqar":
            cfg = MQARConfig(seq_len=self.seq_len, num_kv_pairs=self.num_kv_pairs, vocab_size=self.vocab_size)
            return (multi_query_associative_recall(self.train_examples, cfg, train_seed),
                    multi_query_associative_recall(self.eval_examples, cfg, eval_seed))
        if self.task == "ar":
            return (associative_recall(self.train_examples, self.seq_len, self.vocab_size, train_seed),
                    associative_recall(self.eval_examples, self.seq_len, self.vocab_size, eval_seed))
        if self.task == "copy":
            return (selective_copying(self.train_examples, self.seq_len, self.num_kv_pairs, self.vocab_size, train_seed),
                    selective_copying(self.eval_examples, self.seq_len, self.num_kv_pairs, self.vocab_size, eval_seed))
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")


def recall_model(mixer: str | list[str], d_model: int, vocab_size: int, n_layers: int = 2,
                 mixer_kwargs: dict | None = None) -> CausalLM:
    """Zoology's recall model: token mixers only (no channel mixer), 2 layers by default."""
    return CausalLM(ModelConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, mixer=mixer,
                                channel_mixer=None, mixer_kwargs=mixer_kwargs or {}))
