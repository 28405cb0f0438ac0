"""``RecurlabForCausalLM``: any recurlab :class:`CausalLM` as a Hugging Face ``PreTrainedModel``.

    import recurlab.hf                                   # registers model_type "recurlab" with the Auto classes
    model = RecurlabForCausalLM.from_recurlab(causal_lm) # wraps (shares the weights of) a recurlab model
    model.save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder) # no trust_remote_code: the class is registered
    out = model(input_ids)                               # out.logits (B, T, V); out.cache a RecurlabCache
    model.generate(input_ids, max_new_tokens=20, do_sample=False)

The wrapped network is ``model.model``, a plain recurlab CausalLM (every mixer, hybrid and depth
module), so everything recurlab does with a model works on it and the file's tensors are named
``model.<recurlab name>``. The forward runs recurlab's parallel form over the new tokens, or its
one-token ``step`` when a cache is continued by one token (what ``generate`` does after the
prompt), exactly as recurlab's own ``generate`` does, so greedy outputs agree token for token.

Not supported (each refused with a ValueError, never silently ignored): padding (an attention mask
with zeros: recurlab's states have no mask), ``inputs_embeds``, ``output_hidden_states``, and
rolling back a cache (assisted generation, which ``transformers`` refuses for stateful models).
"""

from __future__ import annotations

import torch
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..models.causal_lm import CausalLM
from ..train.loss import masked_cross_entropy
from .cache import RecurlabCache
from .configuration import RecurlabConfig

IGNORED_ARGUMENTS = ("output_attentions",)  # transformers may pass these as False; recurlab has nothing to give


class RecurlabForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = RecurlabConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _is_stateful = True  # the state absorbs tokens and cannot drop them again
    _no_split_modules = ["Block"]

    def __init__(self, config: RecurlabConfig, model: CausalLM | None = None):
        """config: a RecurlabConfig; model: an existing CausalLM of that configuration to wrap (default: a new one)."""
        super().__init__(config)
        if model is None:
            model = CausalLM(config.to_model_config())
        elif not isinstance(model, CausalLM) or model.config.to_dict() != config.recurlab:
            raise ValueError("model must be a recurlab CausalLM whose config equals config.recurlab")
        self.model = model
        self.post_init()

    @classmethod
    def from_recurlab(cls, model: CausalLM, **config_kwargs) -> "RecurlabForCausalLM":
        """Wrap a recurlab CausalLM (its parameters are shared, not copied; its dtype and train/eval mode are
        kept); config_kwargs go to RecurlabConfig (e.g. eos_token_id)."""
        if not isinstance(model, CausalLM):
            raise ValueError(f"model must be a recurlab CausalLM, got {type(model).__name__}")
        training = model.training
        wrapped = cls(RecurlabConfig.from_model_config(model.config, **config_kwargs), model)
        return wrapped.to(next(model.parameters()).dtype).train(training)

    def _init_weights(self, module) -> None:
        """Nothing: recurlab's layers initialise themselves when built (their schemes are part of each unit)."""

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the forward creates a RecurlabCache; generate() must not prepare a DynamicCache

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.model.embedding

    def get_output_embeddings(self) -> torch.nn.Linear | None:
        return self.model.head  # None when the head is tied: the embedding matrix is used directly

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                cache: RecurlabCache | None = None, labels: torch.LongTensor | None = None,
                use_cache: bool | None = None, inputs_embeds: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                logits_to_keep: int = 0, **kwargs) -> CausalLMOutputWithPast | tuple:
        """input_ids (B, T) -> logits (B, T, V) (the last ``logits_to_keep`` positions if > 0).

        cache: a RecurlabCache to continue (it is updated in place to include these tokens and returned).
        labels (B, T): the loss is the next-token cross-entropy of logits[:, :-1] against labels[:, 1:]
        (-100 ignored), plus the depth module's auxiliary loss (routers) if it has one, as recurlab's trainer adds.
        """
        unknown = [k for k, v in kwargs.items() if not (k in IGNORED_ARGUMENTS and not v)]
        if unknown:
            raise ValueError(f"RecurlabForCausalLM.forward takes no argument(s) {', '.join(unknown)}")
        if inputs_embeds is not None:
            raise ValueError("inputs_embeds is not supported by recurlab models: pass input_ids")
        if output_hidden_states:
            raise ValueError("output_hidden_states is not supported by recurlab models")
        if input_ids is None:
            raise ValueError("input_ids (B, T) is required")
        if cache is not None and not isinstance(cache, RecurlabCache):
            raise ValueError(f"cache must be a RecurlabCache (from an earlier output of this model) or None, got "
                             f"{type(cache).__name__}")
        check_attention_mask(attention_mask, input_ids)
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        state = cache.state if cache is not None else None
        T = input_ids.shape[1]
        if T == 1 and state is not None:  # one token after a prompt: recurlab's decoding step
            logits, state = self.model.step(input_ids[:, 0], state)
            logits = logits.unsqueeze(1)
        else:
            features, state = self.model.features(input_ids, state)
            if logits_to_keep and labels is None:
                features = features[:, -logits_to_keep:]
            logits = self.model.logits(features)

        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got "
                                 f"{tuple(labels.shape)}")
            loss = masked_cross_entropy(logits[:, :-1], labels[:, 1:])
            if self.model.aux_loss is not None:
                loss = loss + self.model.aux_loss
        if use_cache:
            if cache is None:
                cache = RecurlabCache(state, T)
            else:
                cache.update_state(state, T)
        else:
            cache = None
        if not return_dict:
            return tuple(v for v in (loss, logits, cache) if v is not None)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache)


def check_attention_mask(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> None:
    """A ValueError unless the mask is None or all ones (B, L): recurlab's states cannot skip padded tokens."""
    if attention_mask is None:
        return
    if attention_mask.dim() != 2 or attention_mask.shape[0] != input_ids.shape[0]:
        raise ValueError(f"attention_mask must be (B, L) with B = {input_ids.shape[0]}, got "
                         f"{tuple(attention_mask.shape)}")
    if attention_mask.numel() and not bool((attention_mask == 1).all()):
        raise ValueError("attention_mask has zeros (padding), which recurlab models cannot skip: their recurrent "
                         "states have no mask. Batch prompts of equal length, or generate one prompt at a time")
