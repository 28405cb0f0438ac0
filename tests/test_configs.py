from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from recurlab.configs import ConfigError, check_fields, describe, from_dict, merge, override, param


@dataclass
class Inner:
    d_model: int = param(64, ge=1)
    rates: list[float] = param(factory=lambda: [0.5], gt=0)

    def __post_init__(self):
        check_fields(self)


@dataclass
class Schema:
    mixer: str | list[str] = "gla"
    n_layers: int = param(2, ge=1)
    mixer_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Outer:
    steps: int = param(10, ge=1)
    lr: float = param(1e-3, gt=0)
    flag: bool = False
    name: str = param("a", choices=lambda: ["a", "b"])
    names: tuple[str, ...] = param(("a",), choices=("a", "b", "c"))
    limit: int | None = None
    mixer: str | list[str] = "gla"
    extra: dict = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)
    model: dict = param(factory=dict, schema=Schema)

    def __post_init__(self):
        check_fields(self)


def test_values_are_parsed_by_the_field_type():
    cfg = override(Outer(), ["steps=20", "lr=2e-3", "flag=true", "name=b", "names=a,c", "limit=5",
                             'extra={"k": [1, 2]}', "inner.d_model=32", "inner.rates=0.1,0.2"])
    assert (cfg.steps, cfg.lr, cfg.flag, cfg.name, cfg.names, cfg.limit) == (20, 2e-3, True, "b", ("a", "c"), 5)
    assert cfg.extra == {"k": [1, 2]} and cfg.inner == Inner(32, [0.1, 0.2])
    assert override(cfg, ["limit=none", "names=", "flag=0"]).limit is None
    assert override(cfg, ["names="]).names == () and override(cfg, ['names=["b"]']).names == ("b",)
    assert override(cfg, ["lr=3"]).lr == 3.0 and isinstance(override(cfg, ["lr=3"]).lr, float)


def test_a_str_or_list_field_takes_one_name_or_several():
    assert override(Outer(), ["mixer=attention"]).mixer == "attention"
    assert override(Outer(), ["mixer=gla,attention"]).mixer == ["gla", "attention"]
    assert override(Outer(), ['mixer=["gla"]']).mixer == ["gla"]


@pytest.mark.parametrize("assignment, message", [
    ("steps=1.5", "steps must be int, got '1.5'"),
    ("steps=0", "steps must be >= 1, got 0"),
    ("lr=fast", "lr must be float, got 'fast'"),
    ("flag=maybe", "flag must be bool, got 'maybe'"),
    ("name=z", "name must be one of a, b; got 'z'"),
    ("names=a,z", "names must be one of a, b, c; got 'z'"),
    ("limit=x", "limit must be int or None, got 'x'"),
    ("extra=[1", "extra must be dict"),
    ("inner.d_model=0", "inner.d_model must be >= 1, got 0"),
    ("inner.rates=0.1,-1", "inner.rates must be > 0, got -1.0"),
    ("inner.rates=0.1,x", "inner.rates\\[1\\] must be float, got 'x'"),
    ("model.n_layers=0", "model.n_layers must be >= 1, got 0"),
    ("model.n_layers=two", "model.n_layers must be int, got 'two'"),
])
def test_bad_values_name_the_key_and_what_was_expected(assignment, message):
    with pytest.raises(ConfigError, match=message):
        override(Outer(), [assignment])


@pytest.mark.parametrize("assignment, message", [
    ("stpes=1", "stpes is not a key of Outer; valid keys: steps, lr, flag, name, names, limit, mixer, extra, "
                "inner, model"),
    ("inner.width=1", "inner.width is not a key of inner; valid keys: d_model, rates"),
    ("model.dmodel=1", "model.dmodel is not a key of model; valid keys: mixer, n_layers, mixer_kwargs"),
    ("steps.x=1", "steps is int, which has no keys"),
    ("steps", "--set takes key=value"),
])
def test_unknown_keys_list_the_valid_ones_at_every_level(assignment, message):
    with pytest.raises(ConfigError, match=message.replace("(", "\\(")):
        override(Outer(), [assignment])


def test_schema_dicts_take_dotted_keys_and_stay_dicts():
    cfg = override(Outer(), ["model.n_layers=4", "model.mixer=gla,attention", "model.mixer_kwargs.swa.window=32"])
    assert cfg.model == {"n_layers": 4, "mixer": ["gla", "attention"], "mixer_kwargs": {"swa": {"window": 32}}}
    with pytest.raises(ConfigError, match="model.pth is not a key of model"):
        Outer(model={"pth": 1})


def test_json_values_are_checked_not_parsed():
    assert from_dict(Outer, {"steps": 3, "inner": {"d_model": 8}}).inner.d_model == 8
    with pytest.raises(ConfigError, match="steps must be int, got '64'"):
        from_dict(Outer, {"steps": "64"})
    with pytest.raises(ConfigError, match="inner.d_model must be int, got True"):
        from_dict(Outer, {"inner": {"d_model": True}})
    with pytest.raises(ConfigError, match="inner.depth is not a key of inner"):
        from_dict(Outer, {"inner": {"depth": 1}})
    partial = merge(Outer(steps=5, inner=Inner(16)), {"inner": {"rates": [2]}, "flag": True})
    assert (partial.steps, partial.flag, partial.inner) == (5, True, Inner(16, [2.0]))


def test_describe_lists_every_key_with_type_and_default():
    lines = "\n".join(describe(Outer))
    assert "steps (int; >= 1) = 10" in lines and "inner.d_model (int; >= 1) = 64" in lines
    assert "model (dict (JSON); keys: mixer, n_layers, mixer_kwargs) = {}" in lines
    assert "name (str; one of a, b) = a" in lines
