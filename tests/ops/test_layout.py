"""The public surface of recurlab.ops and its one-package-per-op layout."""

import importlib

from recurlab import ops

PUBLIC = {
    "BACKENDS", "KVCache", "attention", "attention_step", "available_backends", "causal_conv1d",
    "causal_conv1d_step", "diag_scan", "diag_step", "gla", "gla_prefix_states", "gla_step", "long_conv", "long_conv_step",
}

# op -> (package, {backend name: module holding it})
LAYOUT = {
    "diag_scan": ("diag_scan", {"reference": "reference", "chunk": "chunk", "cpu": "cpu"}),
    "gla": ("gla", {"reference": "reference", "chunk": "chunk"}),
    "causal_conv1d": ("conv", {"reference": "reference", "conv": "conv1d"}),
    "long_conv": ("conv", {"reference": "reference", "fft": "fft"}),
    "attention": ("attention", {"reference": "reference", "sdpa": "sdpa"}),
}


def test_public_api_is_the_functions():
    assert set(ops.__all__) == PUBLIC
    for name in PUBLIC - {"BACKENDS", "KVCache", "available_backends"}:
        assert callable(getattr(ops, name)) and not isinstance(getattr(ops, name), type(ops)), name
    assert ops.KVCache.__module__ == "recurlab.ops.attention.cache"


def test_every_backend_has_its_module_beside_a_reference():
    assert set(LAYOUT) == set(ops.BACKENDS)
    for op, (package, modules) in LAYOUT.items():
        assert set(modules) == set(ops.BACKENDS[op]), op
        for backend, module in modules.items():
            mod = importlib.import_module(f"recurlab.ops.{package}.{module}")
            assert mod.__doc__ and mod.__doc__.strip(), f"{mod.__name__} has no docstring"
            assert hasattr(mod, f"{op}_{backend}"), f"{mod.__name__} lacks {op}_{backend}"
