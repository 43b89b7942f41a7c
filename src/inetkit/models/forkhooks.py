"""Which ``os.register_at_fork`` hooks this process has: the fork worker's
proof that it may skip them (``forkworker.ForkCall``).

``os.fork()`` runs every registered hook; the fork worker calls libc's
``fork`` directly instead (much cheaper, see ``forkworker``), which is safe
only if every hook it skips is one whose job does not apply.  Python offers
no way to list the hooks, so ``install()`` wraps ``os.register_at_fork`` and
records who registers what.  It must run first thing in a fresh worker
process, before any module that might register a hook is imported (the
worker does so); a process where that cannot be proven is "unknown" and
always uses ``os.fork``.

Hooks whose job does not apply in a single-threaded worker (the fork worker
checks for threads before every fork): ``threading``, ``logging`` and
``concurrent.futures.thread`` re-create locks another thread might have held.
``random`` reseeds its generator: the fork worker does that itself in each
child (``RESEEDED``).  Any other hook (``asyncio`` registers one from Python
3.12 on, ``inetkit.logs`` one, third-party modules theirs) makes every fork
an ``os.fork()``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

#: modules whose at-fork hooks may be skipped in a single-threaded process
SKIPPABLE = frozenset({"threading", "logging", "concurrent.futures.thread"})
#: modules whose hook the fork worker redoes in the child itself
RESEEDED = frozenset({"random"})

_installed = False
#: the module that made each ``os.register_at_fork`` call since ``install()``
registered: list[str] = []


def install() -> bool:
    """Start recording.  Returns False (and records nothing) when it is too
    late to know: a module that registers hooks, or one outside the
    standard library and inetkit, is already imported."""
    global _installed
    if _installed:
        return True
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    for name in list(sys.modules):
        top = name.partition(".")[0]
        if name in SKIPPABLE or name in RESEEDED or name in ("asyncio.events", "inetkit.logs"):
            return False
        if top not in stdlib and top not in ("inetkit", "__main__"):
            return False
    original = os.register_at_fork

    def register_at_fork(**hooks: Callable[[], Any]) -> None:
        original(**hooks)  # first: a rejected call (bad arguments) records nothing
        try:
            caller = sys._getframe(1).f_globals.get("__name__") or "?"
        except (AttributeError, ValueError):
            caller = "?"
        registered.append(caller)

    register_at_fork.__doc__ = original.__doc__
    os.register_at_fork = register_at_fork  # type: ignore[assignment]
    _installed = True
    return True


#: how many entries of ``registered`` the last ``all_skippable`` looked at, and its answer
_checked = (0, True)


def all_skippable() -> bool:
    """True when every hook registered in this process may be skipped (or is
    redone by the fork worker); False when unknown (``install`` not run).

    Asked before every burst of forks: the answer is kept and only the hooks
    registered since are looked at (``registered`` only grows), so the usual
    call allocates nothing (a generator per call was pages written between
    forks, see ``forkworker``)."""
    global _checked
    if not _installed:
        return False
    count, answer = _checked
    if count != len(registered):
        answer = answer and all(m in SKIPPABLE or m in RESEEDED for m in registered[count:])
        _checked = (len(registered), answer)
    return answer
