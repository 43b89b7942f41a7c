"""The native TOML config: what it accepts, and errors that point at file:line."""

from __future__ import annotations

import pytest

from inetkit.config.toml import load_default, load_toml, parse_toml
from inetkit.config.validate import validate_config
from inetkit.errors import ConfigError


def test_full_service_table_parses() -> None:
    config = parse_toml(
        """
[daemon]
bind = "::"
grace = 3

[services.greeting]
port = 9001
model = "iterative"
handler = "echo"
[services.greeting.limits]
max_connections = 5
allow = ["127.0.0.0/8", "::1"]

[services.both]
port = "daytime"
proto = ["tcp", "udp"]
handler = "daytime"

[services.prog]
port = 7000
program = ["/bin/cat"]
user = "nobody"
""",
        "t.toml",
    )
    by_key = {s.key: s for s in config.services}
    assert set(by_key) == {"greeting/tcp", "both/tcp", "both/udp", "prog/tcp"}
    greeting = by_key["greeting/tcp"]
    assert (greeting.bind, greeting.model, greeting.limits.max_connections) == ("::", "iterative", 5)
    assert greeting.limits.allow == ("127.0.0.0/8", "::1")
    assert by_key["both/tcp"].port == 13 and by_key["both/udp"].model == "datagram"
    assert by_key["both/tcp"].model == "async"
    assert by_key["prog/tcp"].model == "exec" and by_key["prog/tcp"].program == ("/bin/cat",)
    assert config.grace == 3.0
    validate_config(config)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("[services.a]\nport = 70000\nhandler = \"echo\"\n", 2, "out of range"),
        ("[services.a]\nport = 1\nmodel = \"forking\"\n", 3, "not a tcp model"),
        ("[services.a]\nport = 1\nproto = \"sctp\"\n", 3, "proto must be"),
        ("[services.a]\nport = 1\nbogus = 1\n", 3, "unknown key 'bogus'"),
        ("[services.a]\nport = 1\nprogram = \"/bin/sh -c x\"\n", 3, "never run through a shell"),
        ("[services.a]\nport = 1\nhandler = \"echo\"\nmodel = \"datagram\"\n", 4, "not a tcp model"),
        ("[services.a]\nport = 1\nhandler = \"echo\"\nworkers = 0\n", 4, "at least 1"),
        ("[services.a]\nport = 1\nhandler = \"echo\"\nmodel = \"thread\"\nworkers = 2\n", 5, "needs model 'async'"),
        ("[services.a]\nport = 1\n[services.a.limits]\nallow = [\"10.0.0.0/33\"]\n", 3, "not an IP address"),
        ("\n\n[services.a]\nport = \"no-such-service-name\"\nhandler = \"echo\"\n", 4, "unknown service name"),
        ("[services.a]\nport = 1\n[services.a.limits]\nmax_connections = -1\n", 4, "must not be negative"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml(text, "bad.toml")
    assert info.value.where == f"bad.toml:{line}"
    assert fragment in info.value.problem


def test_syntax_error_names_the_file_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml("[services.a]\nport = = 1\n", "syn.toml")
    assert "syn.toml" in str(info.value) and "line 2" in str(info.value)


def test_unknown_handler_and_bad_options_fail_validation() -> None:
    with pytest.raises(ConfigError, match="unknown service 'nope'"):
        parse_toml("[services.nope]\nport = 1\n", "x.toml")
    config = parse_toml("[services.e]\nport = 1\nhandler = \"echo\"\n[services.e.options]\ncolour = 1\n", "x.toml")
    with pytest.raises(ConfigError, match="unknown option 'colour'") as info:
        validate_config(config)
    assert info.value.where == "x.toml:1"


def test_exec_fd_needs_fd_placeholder_and_ports_must_not_collide() -> None:
    config = parse_toml("[services.p]\nport = 1\nmodel = \"exec-fd\"\nprogram = [\"/bin/true\"]\n", "x.toml")
    with pytest.raises(ConfigError, match=r"\{fd\}"):
        validate_config(config)
    config = parse_toml(
        "[services.a]\nport = 5000\nhandler = \"echo\"\n[services.b]\nport = 5000\nhandler = \"discard\"\n", "x.toml"
    )
    with pytest.raises(ConfigError, match="already used by a") as info:
        validate_config(config)
    assert info.value.where == "x.toml:4"


def test_model_not_allowed_by_service_is_refused() -> None:
    config = parse_toml("[services.e]\nport = 1\nhandler = \"echo\"\nmodel = \"exec\"\n", "x.toml")
    with pytest.raises(ConfigError, match="needs 'program'"):
        validate_config(config)


def test_unreadable_file_is_a_config_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot read config"):
        load_toml(tmp_path / "missing.toml")


def test_embedded_default_config_is_valid_and_loopback_only() -> None:
    config = load_default()
    validate_config(config)
    assert config.services, "the default config serves something"
    assert {s.bind for s in config.services} == {"127.0.0.1"}
    keys = {(s.name, s.proto): s for s in config.services}
    assert keys[("han", "tcp")].model == "exec"
    assert keys[("bit", "tcp")].model == "exec-fd"
    for name, port in (("echo", 10007), ("discard", 10009), ("daytime", 10013), ("chargen", 10019), ("time", 10037)):
        assert keys[(name, "tcp")].port == port and keys[(name, "udp")].port == port
