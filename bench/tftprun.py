"""``python -m bench.tftprun get|put HOST PORT REMOTE LOCAL BLKSIZE WINDOWSIZE``:
one transfer with inetkit's TFTP client library, timed from the request to
the last block (the interpreter's start is left out, as a C client's ~1 ms
start is negligible).  Prints one JSON line: bytes, elapsed, retransmissions,
and cpu (the client's utime+stime during the transfer, seconds).
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main(argv: list[str]) -> int:
    from inetkit.clients.tftp import TftpError, get_file, put_file

    if len(argv) != 7 or argv[0] not in ("get", "put"):
        print(__doc__, file=sys.stderr)
        return 2
    op, host, port, remote, local, blksize, windowsize = argv
    kwargs = {"blksize": int(blksize), "windowsize": int(windowsize) if int(windowsize) > 1 else None}
    start = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        if op == "get":
            result = get_file(host, int(port), remote, local, **kwargs)
        else:
            result = put_file(host, int(port), local, remote, **kwargs)
    except (TftpError, OSError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    print(json.dumps({"bytes": result.bytes, "elapsed": elapsed, "cpu": cpu, "retransmissions": result.retransmissions,
                      "blksize": result.blksize, "windowsize": result.windowsize}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
