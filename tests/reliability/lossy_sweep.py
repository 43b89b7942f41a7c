"""Seeded sweep of TFTP uploads through the lossy relay (not a test: a
measurement).  ``python -m tests.reliability.lossy_sweep [FIRST LAST]``

Each seed gives one reproducible pattern of loss (5 %), duplication (5 %) and
reordering (5 %) in both directions; a 120 KB file is uploaded with blksize
1428 through it.  Prints the median, 90th percentile and slowest time and
every failure, so a regression of the retransmission logic shows at once.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path


def sweep(first: int = 100, last: int = 159) -> int:
    from inetkit.clients.tftp import put_file
    from inetkit.testing.lossy import Impairment, LossyRelay
    from inetkit.testing.running import running_service

    bad = Impairment(drop=0.05, duplicate=0.05, reorder=0.05, jitter=0.002)
    times: list[tuple[float, int]] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="inetkit-sweep-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        source = Path(tmp) / "up.bin"
        source.write_bytes(random.Random(5).randbytes(120_000))
        options = {"root": str(root), "allow_create": True, "allow_overwrite": True}
        with running_service("tftp", proto="udp", options=options) as svc:
            for seed in range(first, last + 1):
                with LossyRelay(svc.address, to_server=bad, to_client=bad, seed=seed) as relay:
                    started = time.monotonic()
                    try:
                        put_file(relay.address[0], relay.address[1], str(source), f"up{seed}.bin", blksize=1428)
                        times.append((time.monotonic() - started, seed))
                    except Exception as exc:  # reported below: the sweep measures, it does not stop
                        failures.append(f"seed {seed}: {exc}")
    times.sort()
    if times:
        print(f"{len(times)} uploads: median {times[len(times) // 2][0]:.2f}s, "
              f"p90 {times[int(len(times) * 0.9)][0]:.2f}s, slowest {times[-1][0]:.2f}s (seed {times[-1][1]})")
    print(f"{len(failures)} failed" + "".join(f"\n  {f}" for f in failures))
    return 1 if failures else 0


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    sys.exit(sweep(*args))
