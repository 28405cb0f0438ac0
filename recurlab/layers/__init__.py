"""Token mixers and channel mixers: a gate parametrisation plus an op from ``recurlab.ops``.

Every layer is registered by name; build one with ``build("gla", d_model=256)``
and list them with ``names()`` or ``recurlab layers``. Token mixers follow the
contract of :class:`TokenMixer` (``forward(x, state) -> (y, state)``, ``step``,
``init_state``, states from :mod:`recurlab.state`); channel mixers are
position-wise maps without state.

Every module in this folder is imported here, so adding a unit is one file with a
``@register`` line on its class.
"""

import importlib
import pkgutil

from .base import ChannelMixer, StatelessMixer, TokenMixer
from .registry import LayerInfo, accepts, build, info, names, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # importing a layer module registers it

__all__ = ["ChannelMixer", "LayerInfo", "StatelessMixer", "TokenMixer", "accepts", "build", "info", "names",
           "register"]
