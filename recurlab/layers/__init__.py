"""Token mixers and channel mixers: a gate parametrisation plus an op from ``recurlab.ops``.

Every layer is registered by name; build one with ``build("gla", d_model=256)``
and list them with ``names()`` or ``recurlab layers``. Token mixers follow the
contract of :class:`TokenMixer` (``forward(x, state) -> (y, state)``, ``step``,
``init_state``); channel mixers are position-wise maps without state.
"""

from . import (  # noqa: F401  (importing a layer module registers it)
    attention,
    baseconv,
    cglu,
    gam,
    gla,
    gmu,
    gru,
    hyena,
    liger,
    mingru,
    minlstm,
    mlp,
    moe,
    pgn,
    rwkv,
)
from .base import ChannelMixer, TokenMixer
from .registry import LayerInfo, accepts, build, info, names, register

__all__ = ["ChannelMixer", "LayerInfo", "TokenMixer", "accepts", "build", "info", "names", "register"]
