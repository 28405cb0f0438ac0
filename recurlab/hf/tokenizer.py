"""recurlab's tokenizers as ``transformers`` fast tokenizers, and back.

    hf_tok = hf_tokenizer(ByteTokenizer())        # a PreTrainedTokenizerFast: ids are the UTF-8 byte values
    hf_tok = hf_tokenizer(bpe)                    # the same ``tokenizers`` BPE model recurlab trained
    tok = recurlab_tokenizer(hf_tok)              # ByteTokenizer or BPETokenizer again

Both are built with the ``tokenizers`` library, offline. The byte tokenizer becomes a BPE model
without merges over the 256 byte-level symbols (GPT-2's printable stand-ins for the bytes: the
byte-level pre-tokenizer maps each byte to its symbol, the vocabulary maps the symbol to the byte's
value), so ``encode`` gives exactly ``ByteTokenizer.encode``'s ids and ``decode`` of ids that are not
valid UTF-8 gives the replacement character, as ``ByteTokenizer.decode`` does.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from ..tasks.text import BPETokenizer, ByteTokenizer


def byte_symbols() -> list[str]:
    """The byte-level pre-tokenizer's symbol of each byte 0..255 (GPT-2's table): bytes that are printable
    Latin-1 characters ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68, in increasing order,
    take the characters 256, 257, ... so that no symbol is whitespace or a control character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def byte_level_tokenizer() -> Tokenizer:
    """A ``tokenizers`` Tokenizer whose ids are the UTF-8 bytes of the text (recurlab's ByteTokenizer)."""
    vocab = {symbol: byte for byte, symbol in enumerate(byte_symbols())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def hf_tokenizer(tokenizer: ByteTokenizer | BPETokenizer) -> PreTrainedTokenizerFast:
    """The ``PreTrainedTokenizerFast`` of a recurlab tokenizer (same ids for the same text)."""
    if isinstance(tokenizer, ByteTokenizer):
        backend = byte_level_tokenizer()
    elif isinstance(tokenizer, BPETokenizer):
        backend = Tokenizer.from_str(tokenizer.to_dict()["json"])
    else:
        raise ValueError(f"tokenizer must be a recurlab ByteTokenizer or BPETokenizer, got {type(tokenizer).__name__}")
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def is_byte_level(tokenizer_json: str) -> bool:
    """Whether a ``tokenizers`` JSON is the byte tokenizer (a BPE model of the 256 byte symbols, no merges)."""
    spec = json.loads(tokenizer_json)
    model = spec.get("model") or {}
    expected = {symbol: byte for byte, symbol in enumerate(byte_symbols())}
    return (model.get("type") == "BPE" and model.get("vocab") == expected and not model.get("merges")
            and not spec.get("added_tokens"))


def recurlab_tokenizer(tokenizer: PreTrainedTokenizerFast) -> ByteTokenizer | BPETokenizer:
    """The recurlab tokenizer of a fast tokenizer: ByteTokenizer if it is the byte tokenizer, otherwise a
    BPETokenizer wrapping its ``tokenizers`` model (any fast tokenizer, e.g. a Llama checkpoint's)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise ValueError(f"tokenizer must be a fast tokenizer (with a `tokenizers` backend), got "
                         f"{type(tokenizer).__name__}")
    text = backend.to_str()
    return ByteTokenizer() if is_byte_level(text) else BPETokenizer.from_json(text)
