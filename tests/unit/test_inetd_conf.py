"""Classic inetd.conf lines run unchanged."""

from __future__ import annotations

import pytest

from inetkit.config.inetd_conf import parse_inetd_conf
from inetkit.config.validate import validate_config
from inetkit.errors import ConfigError

SAMPLE = """\
# a typical Debian inetd.conf
echo    stream  tcp   nowait  root  internal
echo    dgram   udp   wait    root  internal
daytime stream  tcp6  nowait  root  internal
127.0.0.2:time stream tcp nowait root internal
tftp    dgram   udp   wait    root  /usr/sbin/in.tftpd  in.tftpd -s /srv/tftp
7001    stream  tcp   nowait.40  nobody.nogroup  /bin/cat  cat -u
7002    stream  tcp   nowait/10/120/3  nobody:daemon  /usr/bin/env  env
[::1]:7003 stream tcp nowait root /bin/cat cat
"""


def test_sample_parses_into_services() -> None:
    config = parse_inetd_conf(SAMPLE, "inetd.conf")
    by = {(s.name, s.proto, s.port): s for s in config.services}
    echo_tcp = by[("echo", "tcp", 7)]
    assert (echo_tcp.model, echo_tcp.handler, echo_tcp.bind) == ("async", "echo", "127.0.0.1")
    assert by[("echo", "udp", 7)].model == "datagram"
    assert by[("daytime", "tcp", 13)].bind == "::"
    assert by[("time", "tcp", 37)].bind == "127.0.0.2"
    tftp = by[("tftp", "udp", 69)]
    assert (tftp.model, tftp.program, tftp.options["argv0"]) == ("wait", ("/usr/sbin/in.tftpd", "-s", "/srv/tftp"), "in.tftpd")
    cat = by[("port7001", "tcp", 7001)]
    assert (cat.model, cat.user, cat.group, cat.limits.max_connections) == ("exec", "nobody", "nogroup", 40)
    env = by[("port7002", "tcp", 7002)]
    assert env.limits.max_connections == 10 and env.limits.max_per_source == 3
    assert env.limits.rate_per_source == pytest.approx(2.0)
    assert (env.user, env.group) == ("nobody", "daemon")
    assert by[("port7003", "tcp", 7003)].bind == "::1"
    assert tftp.source == "inetd.conf:6"
    validate_config(config)


def test_default_address_lines_and_continuations() -> None:
    text = "127.0.0.3:\necho stream tcp nowait root internal\n*:\ndiscard stream tcp nowait root\n  internal\n"
    config = parse_inetd_conf(text, "c")
    assert [(s.name, s.bind) for s in config.services] == [("echo", "127.0.0.3"), ("discard", "127.0.0.1")]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("echo stream tcp nowait root", "expected: service"),
        ("echo dgram tcp nowait root internal", "does not go with"),
        ("echo stream sctp nowait root internal", "unsupported protocol"),
        ("echo stream tcp sometimes root internal", "expected 'wait' or 'nowait'"),
        ("ftp stream tcp nowait root internal", "no internal service 'ftp'"),
        ("7000 stream tcp nowait root cat cat", "absolute path"),
        ("7000 stream tcp wait root /bin/cat cat", "not supported"),
        ("7000 dgram udp nowait root /bin/cat cat", "must be 'wait'"),
        ("nosuchservicename stream tcp nowait root internal", "unknown service name"),
        ("echo stream tcp nowait.x root internal", "bad limit"),
    ],
)
def test_bad_lines_name_their_line(line: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_inetd_conf("# comment\n\n" + line + "\n", "inetd.conf")
    assert info.value.where == "inetd.conf:3"
    assert fragment in info.value.problem


def test_duplicate_names_get_distinct_keys() -> None:
    text = "0 stream tcp nowait root /bin/cat cat\n0 stream tcp nowait root /bin/cat cat\n"
    names = [s.name for s in parse_inetd_conf(text).services]
    assert len(set(names)) == 2
