"""The daemon freezes its start-up heap (gc.freeze) once ready; a reload must
thaw it so what the old config leaves behind in reference cycles is freed."""

from __future__ import annotations

import asyncio
import gc
import weakref

from inetkit.testing.running import running_service


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_reload_thaws_collects_and_freezes_again() -> None:
    with running_service("echo") as svc:
        sup = svc.supervisor
        node = _Node()
        gone = weakref.ref(node)
        gc.freeze()  # as serve_forever does once every service is bound
        sup.heap_frozen = True
        try:
            del node
            gc.collect()
            assert gone() is not None  # frozen: out of the collector's sight
            future = asyncio.run_coroutine_threadsafe(sup.reload(), svc.loop)
            future.result(timeout=10)  # no config source here: refused, but thawed all the same
            assert gone() is None
            assert gc.get_freeze_count() > 0  # and frozen again
        finally:
            sup.heap_frozen = False
            gc.unfreeze()
