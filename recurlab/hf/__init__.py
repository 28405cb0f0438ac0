"""Hugging Face ``transformers`` integration (``pip install recurlab[hf]``).

Importing this package registers recurlab's classes with ``transformers``' Auto classes, so that

    import recurlab.hf
    model = AutoModelForCausalLM.from_pretrained(folder)   # a folder written by RecurlabForCausalLM.save_pretrained

works without ``trust_remote_code``: the import is what registers (model_type "recurlab"). Contents:

- :class:`RecurlabConfig` / :class:`RecurlabForCausalLM` (``configuration.py``, ``modeling.py``): any recurlab
  CausalLM as a ``PreTrainedModel`` with ``generate()``, its State carried by :class:`RecurlabCache` (``cache.py``);
- :func:`export_hf` / :func:`import_hf` (``convert.py``): recurlab's model folder <-> a Hugging Face folder
  (also ``recurlab export-hf`` / ``recurlab import-hf``);
- :func:`hf_tokenizer` / :func:`recurlab_tokenizer` (``tokenizer.py``): the byte and BPE tokenizers as
  ``PreTrainedTokenizerFast`` and back;
- :func:`load_llama` (``llama.py``): a Llama / Qwen2 / Mistral checkpoint folder as a recurlab ``attention`` model.
- ``harness.py`` (not imported here: it needs ``lm-eval``, ``pip install recurlab[eval]``): :class:`RecurlabLM`, the
  lm-eval adapter, and ``evaluate_local`` on the two local tasks built by ``local_tasks.py`` (``lm_eval_tasks/``).

See docs/hf.md.
"""

from __future__ import annotations

try:
    import transformers  # noqa: F401
except ImportError as exc:  # the extra is missing: say which
    raise ImportError("recurlab.hf needs the 'transformers' package: pip install recurlab[hf]") from exc

from transformers import AutoConfig, AutoModelForCausalLM

from .cache import RecurlabCache
from .configuration import RecurlabConfig
from .convert import export_hf, import_hf, load_hf_checkpoint
from .llama import llama_model_config, load_llama
from .modeling import RecurlabForCausalLM
from .tokenizer import hf_tokenizer, recurlab_tokenizer

AutoConfig.register(RecurlabConfig.model_type, RecurlabConfig, exist_ok=True)
AutoModelForCausalLM.register(RecurlabConfig, RecurlabForCausalLM, exist_ok=True)

__all__ = ["RecurlabCache", "RecurlabConfig", "RecurlabForCausalLM", "export_hf", "hf_tokenizer", "import_hf",
           "llama_model_config", "load_hf_checkpoint", "load_llama", "recurlab_tokenizer"]
