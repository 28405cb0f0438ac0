"""EleutherAI's lm-evaluation-harness (``pip install recurlab[eval]``) on any recurlab model, through
:class:`recurlab.hf.RecurlabForCausalLM`, and two local tasks that need no download.

    from recurlab.hf.harness import RecurlabLM, evaluate_local
    results = evaluate_local(RecurlabLM("runs/lm-gla/model"), limit=50)     # recurlab_verse_cloze, _choice
    results["recurlab_verse_choice"]["acc,none"]

    import lm_eval                                                        # or any lm-eval task
    lm_eval.simple_evaluate(model=RecurlabLM(model_or_folder), tasks=[...], task_manager=local_task_manager())

:class:`RecurlabLM` is an lm-eval ``TemplateLM``: ``loglikelihood`` (and so multiple-choice tasks),
``loglikelihood_rolling`` (perplexity tasks, in windows of ``max_length`` tokens) and ``generate_until``
(greedy). recurlab models take no padding (their recurrent states have no mask), so requests are scored one
at a time or in batches of sequences of equal length (``batch_size``). The model is called as
``RecurlabForCausalLM(input_ids).logits`` (the Hugging Face class, whose forward runs recurlab's parallel form).

Tokens: the model's tokenizer as a ``PreTrainedTokenizerFast`` (:func:`recurlab.hf.hf_tokenizer`); no special
tokens are added. An empty context is conditioned on the tokenizer's end-of-text token, or, for recurlab's byte
and BPE tokenizers, which have none, on a newline (the default corpus' separator between verses).
The local tasks are :mod:`recurlab.hf.local_tasks` (JSONL + YAML in ``recurlab/hf/lm_eval_tasks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as exc:  # the extra is missing: say which
    raise ImportError("recurlab.hf.harness needs the 'lm-eval' package: pip install recurlab[eval]") from exc
from transformers import PreTrainedTokenizerFast

from ..models.causal_lm import CausalLM
from .local_tasks import TASK_NAMES, TASKS_DIR
from .modeling import RecurlabForCausalLM
from .tokenizer import hf_tokenizer


def _load(model, tokenizer) -> tuple[RecurlabForCausalLM, PreTrainedTokenizerFast]:
    """The Hugging Face model and fast tokenizer of a RecurlabForCausalLM, a CausalLM or a model folder."""
    if isinstance(model, (str, Path)):
        from ..convert.finetune import load_checkpoint

        model, saved = load_checkpoint(model)
        tokenizer = tokenizer if tokenizer is not None else saved
    if isinstance(model, CausalLM):
        model = RecurlabForCausalLM.from_recurlab(model)
    if not isinstance(model, RecurlabForCausalLM):
        raise ValueError(f"model must be a RecurlabForCausalLM, a recurlab CausalLM or a model folder, got "
                         f"{type(model).__name__}")
    if tokenizer is None:
        raise ValueError("tokenizer is required: the model folder has none saved (give a ByteTokenizer, "
                         "BPETokenizer or PreTrainedTokenizerFast)")
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        tokenizer = hf_tokenizer(tokenizer)
    return model, tokenizer


@register_model("recurlab")
class RecurlabLM(TemplateLM):
    """An lm-eval model: a recurlab model (object or folder) and its tokenizer, on ``device``."""

    def __init__(self, pretrained: Any, tokenizer: Any = None, batch_size: int | str = 1, max_length: int = 2048,
                 device: str = "cpu", max_gen_toks: int = 64):
        """pretrained: a RecurlabForCausalLM, a recurlab CausalLM or a model folder (recurlab's, or a Hugging Face
        Llama-family one); tokenizer: needed when ``pretrained`` is an object (recurlab's or a fast tokenizer);
        batch_size: sequences of equal length scored together; max_length: the longest sequence scored (longer
        contexts keep their last tokens; rolling windows are this long)."""
        super().__init__()
        self.model, self.tokenizer = _load(pretrained, tokenizer)
        self.model = self.model.to(torch.device(device)).eval()
        self.batch_size = int(batch_size)
        if self.batch_size < 1 or max_length < 2 or max_gen_toks < 1:
            raise ValueError(f"batch_size must be >= 1, max_length >= 2 and max_gen_toks >= 1, got {batch_size}, "
                             f"{max_length}, {max_gen_toks}")
        self.max_length, self.max_gen_toks, self._device = max_length, max_gen_toks, torch.device(device)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "RecurlabLM":
        """lm-eval's command-line route: ``--model recurlab --model_args pretrained=FOLDER,batch_size=4``."""
        from lm_eval.utils import simple_parse_args_string

        args = simple_parse_args_string(arg_string)
        args.update({k: v for k, v in (additional_config or {}).items() if k in ("batch_size", "device") and v})
        return cls(**args)

    # ------------------------------------------------------------------ tokens

    @property
    def eot_token_id(self) -> int:
        if self.tokenizer.eos_token_id is not None:
            return self.tokenizer.eos_token_id
        return self.tok_encode("\n")[0]

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer(string, add_special_tokens=False)["input_ids"]

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    # ------------------------------------------------------------------ scoring

    @torch.no_grad()
    def _log_probs(self, batch: list[list[int]]) -> torch.Tensor:
        """Equal-length token lists (B, T) -> log-probabilities (B, T, V) of the next token, in float64."""
        ids = torch.tensor(batch, dtype=torch.long, device=self.device)
        logits = self.model(input_ids=ids, use_cache=False).logits
        return F.log_softmax(logits.double(), dim=-1)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """requests: ((context, continuation) or None, context ids, continuation ids) -> (sum of the continuation's
        log-probabilities, whether greedy decoding gives the continuation), in the requests' order."""
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        windows = {}
        for index, (_, context, continuation) in enumerate(requests):
            if not continuation:
                raise ValueError("a loglikelihood request has an empty continuation")
            tokens = (list(context) + list(continuation))[-(self.max_length + 1):]
            windows.setdefault(len(tokens) - 1, []).append((index, tokens, len(continuation)))
        for length in sorted(windows):
            group = windows[length]
            for lo in range(0, len(group), self.batch_size):
                chunk = group[lo:lo + self.batch_size]
                log_probs = self._log_probs([tokens[:-1] for _, tokens, _ in chunk])
                for row, (index, tokens, n) in enumerate(chunk):
                    target = torch.tensor(tokens[-n:], device=self.device)
                    scores = log_probs[row, -n:]
                    answer = (float(scores.gather(-1, target[:, None]).sum()), bool((scores.argmax(-1) == target).all()))
                    results[index] = answer
                    if requests[index][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[index][0], answer)
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """The log-likelihood of each whole text, scored in disjoint windows of max_length tokens (lm-eval's
        rolling windows, each conditioned on the tokens before it in the window; the first on the end-of-text token)."""
        out = []
        for request in requests:
            (text,) = request.args
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                context_len=1)]
            total = sum(score for score, _ in self._loglikelihood_tokens([(None, c, t) for c, t in windows]))
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            out.append(total)
        return out

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy continuations, cut at the first of the request's ``until`` strings (at most max_gen_toks tokens)."""
        out = []
        for request in requests:
            context, gen_kwargs = request.args
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            new_tokens = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
            ids = self.tok_encode(context)[-(self.max_length - new_tokens):] or [self.prefix_token_id]
            prompt = torch.tensor([ids], dtype=torch.long, device=self.device)
            full = self.model.generate(prompt, max_new_tokens=new_tokens, do_sample=False,
                                       pad_token_id=self.eot_token_id)
            text = self.tok_decode(full[0, len(ids):].tolist())
            for stop in until:
                text = text.split(stop)[0] if stop else text
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            out.append(text)
        return out


def local_task_manager(include_defaults: bool = True):
    """An lm-eval TaskManager that knows recurlab's local tasks (and lm-eval's own unless include_defaults is False:
    indexing those takes seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=include_defaults)


def evaluate_local(model: RecurlabLM, tasks: tuple[str, ...] = TASK_NAMES, limit: int | None = None) -> dict:
    """lm-eval's results of ``model`` on recurlab's local tasks: {task: {"acc,none": ..., ...}} (``limit``: the
    first items of each task only)."""
    import lm_eval

    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown:
        raise ValueError(f"tasks must be among {', '.join(TASK_NAMES)}, got {', '.join(unknown)}")
    results = lm_eval.simple_evaluate(model=model, tasks=list(tasks), task_manager=local_task_manager(False),
                                      limit=limit, log_samples=False, bootstrap_iters=0)
    return results["results"]
