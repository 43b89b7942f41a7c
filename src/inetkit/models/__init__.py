"""How connections run: one module per server model, one runtime interface.

Every in-daemon model is ``async def serve(listener, runtime)`` and runs until
cancelled; ``fork`` and multi-worker ``async`` run in worker processes started
by exec (``inetkit.worker``), never by forking the threaded daemon.
"""

from __future__ import annotations

MODEL_MODULES = {
    "iterative": "inetkit.models.iterative",
    "thread": "inetkit.models.threads",
    "async": "inetkit.models.aio",
    "fork": "inetkit.models.forking",
    "exec": "inetkit.models.forkexec",
    "exec-fd": "inetkit.models.forkexec",
    "wait": "inetkit.models.forkexec",
    "datagram": "inetkit.models.datagram",
}
