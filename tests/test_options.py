"""Typed protocol options (protocol.options): strict keys and types, environment parsing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
from blindmatch.protocol import REGISTRY, OptionError, Options, OptionTypeError, option


@dataclass(frozen=True)
class _Demo(Options):
    protocol = "demo"
    count: int = option(3, "a count")
    rate: float = option(0.5, "a rate")
    on: bool = option(False, "a switch")
    mode: Literal["a", "b"] = option("a", "a choice")
    cap: int | None = option(None, "optional cap")

    def check(self) -> None:
        if self.count < 0:
            raise OptionError("count must be >= 0")


def test_from_options_is_strict() -> None:
    assert _Demo.from_options(None) == _Demo()
    assert _Demo.from_options({"rate": 1}).rate == 1.0  # an int is a fine float
    for bad in ({"count": "3"}, {"count": True}, {"on": 1}, {"mode": "c"}, {"cap": 2.5}, {"rate": "x"}):
        with pytest.raises(OptionTypeError):
            _Demo.from_options(bad)
    with pytest.raises(OptionError, match="unknown"):
        _Demo.from_options({"cuont": 3})
    with pytest.raises(OptionError, match="count"):
        _Demo.from_options({"count": -1})  # check() runs on construction
    d = _Demo(count=4)
    assert _Demo.from_options(d) is d and d.replace(cap=9).cap == 9


def test_errors_are_both_input_and_parameter_errors() -> None:
    from blindmatch.protocol import InputError, ParameterError

    with pytest.raises(InputError):
        _Demo.from_options({"nope": 1})
    with pytest.raises(ParameterError):
        _Demo.from_options({"nope": 1})
    with pytest.raises(TypeError):
        _Demo.from_options({"count": "3"})


def test_from_env_parses_strings_by_field_type() -> None:
    env = {"X_COUNT": "7", "X_RATE": "0.25", "X_ON": "yes", "X_MODE": "b", "X_CAP": "none", "OTHER": "1"}
    assert _Demo.from_env(env, "X_") == _Demo(7, 0.25, True, "b", None)
    assert _Demo.from_env({"X_CAP": "12"}, "X_").cap == 12
    with pytest.raises(OptionTypeError):
        _Demo.from_env({"X_ON": "maybe"}, "X_")
    with pytest.raises(OptionTypeError):
        _Demo.from_env({"X_MODE": "c"}, "X_")
    with pytest.raises(OptionError, match="X_COUTN"):
        _Demo.from_env({"X_COUTN": "1"}, "X_")


def test_describe_lists_documented_fields() -> None:
    info = {o.name: o for o in _Demo.describe()}
    assert info["count"].default == 3 and info["count"].doc == "a count" and info["cap"].type == "int | None"


def test_server_settings_read_tpsi_options_through_the_dataclass() -> None:
    from blindmatch.server.settings import protocol_options_from_env

    opts = protocol_options_from_env({"BLINDMATCH_TPSI_THRESHOLD": "5", "BLINDMATCH_OPRF_MODE": "oprf"})
    assert opts["tpsi"] == REGISTRY["tpsi"].server_options({"threshold": 5})
    assert opts["oprf"].to_dict()["mode"] == "oprf"
    assert opts["he"] == REGISTRY["he"].server_options()  # defaults, written once, in the dataclass


def test_protocol_env_round_trips_through_the_settings() -> None:
    from blindmatch.server.settings import protocol_env, protocol_options_from_env

    given = {"threshold": 5, "workers": None, "synthetic_rate": 0.0}
    env = protocol_env("tpsi", given)
    assert env["BLINDMATCH_TPSI_THRESHOLD"] == "5"
    assert protocol_options_from_env(env)["tpsi"] == REGISTRY["tpsi"].server_options(given)
    with pytest.raises(OptionError):
        protocol_env("tpsi", {"treshold": 5})
