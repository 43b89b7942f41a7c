"""Helpers shared by the command modules: errors to stderr and exit codes."""

from __future__ import annotations

import sys

#: exit codes, in the spirit of sysexits.h
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: refused, unreachable
EXIT_TIMEOUT = 75  # EX_TEMPFAIL


def fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"inetkit: {message}", file=sys.stderr)
    return code


def service_table(rows: list[dict]) -> str:
    """name, proto, address:port, model (and error) as aligned columns."""
    from inetkit.io.addresses import format_address

    if not rows:
        return "  (no services)"
    name_w = max(len(r["name"]) for r in rows)
    addr_w = max(len(format_address(r["address"], r["port"])) for r in rows)
    out = []
    for r in rows:
        line = f"  {r['name'].ljust(name_w)}  {r['proto']}  {format_address(r['address'], r['port']).ljust(addr_w)}  {r['model']}"
        if r.get("error"):
            line += f"  FAILED: {r['error']}"
        out.append(line.rstrip())
    return "\n".join(out)
