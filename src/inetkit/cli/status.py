"""``inetkit status``: a running daemon's services, connections and counters,
asked over its control socket."""

from __future__ import annotations

import argparse
import json
from typing import Any

from inetkit.cli.common import EXIT_FAILURE, EXIT_UNAVAILABLE, fail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Lists every service (state, model, address), its counters (accepted, refused, errors, "
        "bytes), the looping guard of exec services, and each live connection with its peer and "
        "the PID of the process serving it. --json prints the daemon's answer as it is."
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON status")
    parser.add_argument("--socket", metavar="PATH",
                        help="the daemon's control socket (default: as `inetkit serve` chooses it)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the daemon (default 10)")


def _format(status: dict[str, Any]) -> str:
    from inetkit.io.addresses import format_address

    lines = [f"inetkit pid {status.get('pid')}, up {status.get('uptime', 0):.0f}s, "
             f"config {status.get('config')}, reloads {status.get('generation', 0)}"]
    last = status.get("last_reload")
    if last and not last.get("ok"):
        lines.append(f"  last reload REFUSED: {last.get('error')}")
    for svc in status.get("services", []):
        c = svc.get("counters", {})
        head = (f"{svc['name']:<12} {svc['proto']} {format_address(svc['address'], svc['port']):<22} "
                f"{svc['model']:<9} {svc.get('state', '?'):<8} live={len(svc.get('connections', []))} "
                f"accepted={c.get('accepted', 0)} refused={c.get('refused', 0)} errors={c.get('errors', 0)} "
                f"in={c.get('bytes_in', 0)} out={c.get('bytes_out', 0)}")
        lines.append(head)
        if svc.get("error"):
            lines.append(f"    FAILED: {svc['error']}")
        looping = svc.get("looping")
        if looping and (looping.get("engaged") or looping.get("failures")):
            state = f"throttled for {looping['throttled_for']:.1f}s" if looping.get("engaged") else "not throttled"
            lines.append(f"    looping guard: {looping['failures']} quick failures in a row, {state}")
        workers = [f"{k}={v}" for k, v in sorted(svc.get("stats", {}).items()) if k.startswith("worker_pid")]
        if workers:
            lines.append(f"    workers: {' '.join(workers)}")
        for conn in svc.get("connections", []):
            host, port = conn["peer"]
            pid = f" pid={conn['pid']}" if conn.get("pid") else ""
            lines.append(f"    {format_address(host, port)}  {conn.get('age', 0):.1f}s{pid}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from inetkit.control import default_control_path, request

    path = args.socket or default_control_path()
    try:
        reply = request(path, "status", timeout=args.timeout)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return fail(f"cannot reach the daemon at {path}: {reason} (is `inetkit serve` running? --socket PATH)",
                    EXIT_UNAVAILABLE)
    if not reply.get("ok"):
        return fail(f"the daemon refused: {reply.get('error')}", EXIT_FAILURE)
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        print(_format(reply))
    return 0
